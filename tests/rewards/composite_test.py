"""Tests for r1jax.rewards.composite: weights, efficiency modes, gating, validation."""

import dataclasses
import functools
import pickle

import pytest

from r1jax.rewards import composite
from r1jax.rewards.composite import (
    REWARD_PARTS,
    SCORE_FIELDS,
    RewardConfig,
    score,
    score_vector,
    split_reference,
    subgoal_credit,
    with_subgoals,
)
from r1jax.rewards.verifier import EquationVerifier, Verdict

CORRECT4 = "7*4=28\n28-5=23\n3*6=18\n23+18=41\n#### 41"  # 4 valid steps, right answer
ONE_BAD = "7*4=28\n28-5=24\n3*6=18\n24+18=42\n#### 42"  # 3 of 4 valid, wrong answer
BARE = "#### 41"


def test_field_names():
    assert REWARD_PARTS == ("correctness", "efficiency", "novelty", "format", "subgoal")
    assert SCORE_FIELDS == (
        "total",
        "correctness",
        "efficiency",
        "novelty",
        "format",
        "subgoal",
        "answer_correct",
        "num_steps",
        "valid_steps",
        "has_answer",
    )
    assert set(score(CORRECT4, "41")) == set(SCORE_FIELDS)


def test_correct_solution_default_config():
    s = score(CORRECT4, "41", RewardConfig())
    assert s["answer_correct"] == 1.0
    assert s["num_steps"] == 4.0 and s["valid_steps"] == 4.0
    assert s["correctness"] == pytest.approx(1.0)
    assert s["efficiency"] == pytest.approx(1 / 5)
    assert s["novelty"] == 0.0
    assert s["total"] == pytest.approx(0.6 * 1.0 + 0.3 * 0.2 + 0.1 * 0.0)
    assert all(isinstance(v, float) for v in s.values())


def test_wrong_answer_gets_nothing_by_default():
    s = score(ONE_BAD, "41")
    assert s["answer_correct"] == 0.0 and s["valid_steps"] == 3.0
    assert s["correctness"] == 0.0 and s["efficiency"] == 0.0 and s["total"] == 0.0


def test_truncating_a_wrong_solution_does_not_pay_with_the_gate():
    truncated = "7*4=28\n#### 28"  # one safe step, then a wrong answer
    assert score(truncated, "41")["total"] == score(ONE_BAD, "41")["total"] == 0.0
    ungated = RewardConfig(step_weight=0.2, step_credit_requires_correct=False)
    # What the gate protects against: fewer (valid) steps score more.
    assert score(truncated, "41", ungated)["total"] > score(ONE_BAD, "41", ungated)["total"]


def test_wrong_answer_gets_step_credit_without_the_gate():
    s = score(ONE_BAD, "41", RewardConfig(step_weight=0.2, step_credit_requires_correct=False))
    assert s["answer_correct"] == 0.0
    assert s["valid_steps"] == 3.0
    assert s["correctness"] == pytest.approx(0.2 * 3 / 4)
    assert s["efficiency"] == 0.0  # gated on a correct answer
    assert s["total"] == pytest.approx(0.6 * 0.15)


def test_default_ordering_concise_verbose_bare_wrong():
    concise, verbose, bare = "7+5=12\n#### 12", "7+5=12\n12-5=7\n#### 12", "#### 12"
    t = [score(x, "12")["total"] for x in (concise, verbose, bare, "7+5=13\n#### 13")]
    assert t == sorted(t, reverse=True) and len(set(t)) == 4
    assert t[0] == pytest.approx(0.75) and t[2] == pytest.approx(0.66)


def test_efficiency_gate_can_be_disabled():
    cfg = RewardConfig(
        step_weight=0.2, step_credit_requires_correct=False, efficiency_requires_correct=False
    )
    s = score(ONE_BAD, "41", cfg)
    assert s["efficiency"] == pytest.approx(1 / 5)
    assert s["total"] == pytest.approx(0.6 * 0.15 + 0.3 * 0.2)


def test_short_wrong_answer_hack_is_not_rewarded():
    gated = score("#### 0", "41")
    assert gated["total"] == 0.0
    ungated = score("#### 0", "41", RewardConfig(efficiency_requires_correct=False))
    assert ungated["total"] == pytest.approx(0.3)  # what the gate protects against


def test_no_steps_earns_no_step_credit():
    s = score(BARE, "41")
    assert s["num_steps"] == 0.0
    assert s["correctness"] == pytest.approx(0.6)
    assert s["efficiency"] == pytest.approx(1.0)
    assert s["total"] == pytest.approx(0.6 * 0.6 + 0.3 * 1.0)
    assert score("no answer at all", "41")["total"] == 0.0


@pytest.mark.parametrize("n", [0, 1, 4, 10])
def test_efficiency_modes(n):
    inverse = RewardConfig(efficiency_mode="inverse")
    decay = RewardConfig(efficiency_mode="time_decay", decay=0.8)
    flat = RewardConfig(efficiency_mode="time_decay", decay=1.0)
    assert composite.efficiency(n, True, inverse) == pytest.approx(1 / (1 + n))
    assert composite.efficiency(n, True, decay) == pytest.approx(0.8**n)
    assert composite.efficiency(n, True, flat) == 1.0
    assert composite.efficiency(n, False, decay) == 0.0


def test_time_decay_in_score():
    s = score(CORRECT4, "41", RewardConfig(efficiency_mode="time_decay", decay=0.5))
    assert s["efficiency"] == pytest.approx(0.5**4)


def test_fewer_valid_steps_score_higher_when_correct():
    two = "7*4-5=23\n3*6+23=41\n#### 41"
    assert score(two, "41")["total"] > score(CORRECT4, "41")["total"]


def test_weights():
    cfg = RewardConfig(w_correctness=1.0, w_efficiency=0.0, w_novelty=0.0)
    assert score(CORRECT4, "41", cfg)["total"] == pytest.approx(1.0)
    cfg = RewardConfig(w_correctness=0.0, w_efficiency=2.0, w_novelty=0.0)
    assert score(CORRECT4, "41", cfg)["total"] == pytest.approx(2.0 * 0.2)
    cfg = RewardConfig(step_weight=0.0, step_credit_requires_correct=False)
    assert score(ONE_BAD, "41", cfg)["correctness"] == 0.0
    cfg = RewardConfig(step_weight=1.0, step_credit_requires_correct=False)
    assert score(ONE_BAD, "41", cfg)["correctness"] == pytest.approx(0.75)


def test_novelty_is_given_and_counts_only_when_correct():
    cfg = RewardConfig(w_novelty=0.5)
    base = score(CORRECT4, "41", cfg)["total"]
    assert score(CORRECT4, "41", cfg, novelty=0.8)["total"] == pytest.approx(base + 0.4)
    assert score(CORRECT4, "41", cfg, novelty=0.8)["novelty"] == 0.8
    wrong = score(ONE_BAD, "41", cfg, novelty=1.0)
    assert wrong["novelty"] == 0.0 and wrong["total"] == 0.0


def test_format_part_only_when_weighted():
    r1 = "<think>7*4=28\n28+13=41</think> <answer>#### 41</answer>"
    assert score(r1, "41")["format"] == 0.0  # w_format defaults to 0
    cfg = RewardConfig(w_format=0.2)
    on = score(r1, "41", cfg)
    assert on["format"] == 1.0
    assert on["total"] == pytest.approx(score(r1, "41")["total"] + 0.2)
    assert score(CORRECT4, "41", cfg)["format"] == 0.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"w_correctness": -0.1}, "w_correctness"),
        ({"w_efficiency": float("nan")}, "w_efficiency"),
        ({"w_novelty": float("inf")}, "w_novelty"),
        ({"w_novelty": "0.1"}, "w_novelty"),
        ({"w_subgoal": -0.1}, "w_subgoal"),
        ({"step_weight": 1.5}, "step_weight"),
        ({"step_weight": -0.1}, "step_weight"),
        ({"efficiency_mode": "linear"}, "efficiency_mode"),
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.1}, "decay"),
        ({"efficiency_requires_correct": 1}, "efficiency_requires_correct"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"RewardConfig.{field}="):
        RewardConfig(**kwargs)


def test_config_is_frozen_and_hashable():
    cfg = RewardConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.w_novelty = 0.5  # type: ignore[misc]
    assert hash(cfg) == hash(RewardConfig())


def test_score_vector_matches_score_in_field_order():
    cfg = RewardConfig(efficiency_mode="time_decay")
    for text in (CORRECT4, ONE_BAD, BARE, ""):
        d = score(text, "41", cfg)
        assert score_vector(text, "41", cfg) == tuple(d[k] for k in SCORE_FIELDS)


def test_score_vector_partial_pickles():
    fn = functools.partial(score_vector, cfg=RewardConfig(decay=0.9))
    clone = pickle.loads(pickle.dumps(fn))
    assert clone(CORRECT4, "41") == fn(CORRECT4, "41")


class _LenientVerifier(EquationVerifier):
    """Counts every step as valid (to check that a custom verifier is used)."""

    def check_step(self, step):
        return True


def test_custom_verifier_plugs_in():
    s = score(
        ONE_BAD,
        "41",
        RewardConfig(step_weight=0.2, step_credit_requires_correct=False),
        verifier=_LenientVerifier(),
    )
    assert s["valid_steps"] == 4.0
    assert s["correctness"] == pytest.approx(0.2)


def test_any_object_with_verify_works():
    class Always:
        def verify(self, completion, reference):
            return Verdict(answer_correct=True, num_steps=0, valid_steps=0, has_answer=True)

    s = score("anything", "1", verifier=Always())
    assert s["answer_correct"] == 1.0
    assert s["total"] == pytest.approx(0.6 * 0.6 + 0.3 * 1.0)


# -- the subgoal (process) part ------------------------------------------------------

SUB = RewardConfig(w_subgoal=0.1)
REF = with_subgoals("41", ("28", "23", "18"))  # CORRECT4's intermediate values


def test_reference_round_trip_and_errors():
    assert REF == "41|28,23,18"
    assert split_reference(REF) == ("41", ("28", "23", "18"))
    assert split_reference("41") == ("41", ()) and with_subgoals("41", ()) == "41"
    assert split_reference("1,000") == ("1,000", ())  # commas in a plain answer stay
    for answer, goals in (("4|1", ("2",)), ("41", ("2,3",)), ("41", ("",)), ("41", ("a|b",))):
        with pytest.raises(ValueError, match="subgoal"):
            with_subgoals(answer, goals)


def test_subgoal_credit_for_a_wrong_answer_with_correct_intermediate_steps():
    s = score(ONE_BAD, REF, SUB)  # reaches 28 and 18; 28-5=24 is a slip
    assert s["answer_correct"] == 0.0 and s["correctness"] == 0.0
    assert s["subgoal"] == pytest.approx(2 / 3)
    assert s["total"] == pytest.approx(0.1 * 2 / 3)
    # A slip in the first step reaches nothing the later steps can recover as a subgoal.
    assert score("7*4=29\n29-5=24\n#### 24", REF, SUB)["subgoal"] == 0.0
    # The answer is checked without the subgoals: a correct one gets the full part.
    right = score(CORRECT4, REF, SUB)
    assert right["answer_correct"] == 1.0 and right["subgoal"] == 1.0
    assert right["total"] == pytest.approx(score(CORRECT4, "41")["total"] + 0.1)


def test_correct_answer_by_another_route_gets_the_full_subgoal_part():
    other = "3*6=18\n7*4=28\n18+28=46\n46-5=41\n#### 41"  # misses 23
    assert score(other, REF, SUB)["subgoal"] == 1.0


def test_subgoal_part_is_not_farmable():
    half = score("7*4=28\n#### 28", REF, SUB)["subgoal"]  # stop after one safe step
    assert half == pytest.approx(1 / 3)
    assert half < score(ONE_BAD, REF, SUB)["subgoal"]  # going on reaches more
    # Enumerating true equations to hit the values pays little: credit / steps written.
    spray = "\n".join(f"{v}={v}" for v in range(2, 40)) + "\n#### 0"
    assert score(spray, REF, SUB)["subgoal"] == pytest.approx(3 / 37)
    # Invalid steps reach nothing, whatever their right-hand side.
    assert score("7*4=23\n1+1=18\n#### 0", REF, SUB)["subgoal"] == 0.0
    # Each value counts once.
    assert score("7*4=28\n4*7=28\n14+14=28\n#### 0", REF, SUB)["subgoal"] == pytest.approx(1 / 3)


def test_subgoal_part_is_off_by_default_and_without_subgoals():
    assert score(ONE_BAD, REF)["subgoal"] == 0.0 and score(ONE_BAD, REF)["total"] == 0.0
    assert score(ONE_BAD, "41", SUB)["subgoal"] == 0.0


def test_hostile_steps_are_never_evaluated(monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("model text reached eval")

    monkeypatch.setattr(builtins, "eval", boom)
    text = "__import__('os').system('true')=28\n28**28**28=28\n(lambda: 1)()=23\n#### 0"
    assert score(text, REF, SUB)["subgoal"] == 0.0


def test_subgoal_credit_directly():
    assert subgoal_credit(("2+3=5", "5*2=10"), ("5",)) == 1.0
    assert subgoal_credit(("2+3=5", "5*2=10", "10-1=9"), ("5",)) == 0.5  # 1 / (3 - 1)
    assert subgoal_credit(("2+3=5",), ()) == 0.0
    assert subgoal_credit(("2+3=5",), ("x",)) == 0.0  # a subgoal that does not parse
    assert subgoal_credit(("10/4=5/2",), ("2.5",)) == 1.0  # exact rationals


class _CountingVerifier:
    """A user's verifier that says nothing of progress steps (``credited_steps`` None)."""

    def __init__(self, credited=None):
        self.credited = credited

    def verify(self, completion, reference):
        return Verdict(True, 4, 3, True, self.credited)


def test_step_credit_counts_credited_steps_when_the_verifier_gives_them():
    legacy = score("x", "1", verifier=_CountingVerifier())
    assert legacy["correctness"] == pytest.approx(0.6 + 0.4 * 3 / 4)  # valid / n
    two = score("x", "1", verifier=_CountingVerifier(credited=2))  # one valid step idle
    assert two["correctness"] == pytest.approx(0.6 + 0.4 * 2 / 3)  # of the steps that matter
    none = score("x", "1", verifier=_CountingVerifier(credited=0))
    assert none["correctness"] == pytest.approx(0.6)
    assert legacy["efficiency"] == two["efficiency"] == none["efficiency"] == pytest.approx(0.2)
