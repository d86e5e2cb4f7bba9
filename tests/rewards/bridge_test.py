"""The io_callback host bridge: scoring, novelty, noise, and where rewards land."""

import json

import numpy as np
import pytest

from r1jax.rewards import SCORE_FIELDS, RewardConfig, TaskScorer
from r1jax.rewards.bridge import HostReward, Placement
from r1jax.rewards.noise import RewardNoise
from r1jax.tasks import ArithmeticTask, Problem
from r1jax.tokenizer import EOS_ID, CharTokenizer

TOK = CharTokenizer()
T = 40
COL = {k: i for i, k in enumerate(SCORE_FIELDS)}


TASK = ArithmeticTask()


def _batch(prompts, completions, answers):
    """(prompts, completion tokens, problems): one row per completion."""
    c, _ = TOK.encode_right_padded(completions, T)
    return prompts, c, [Problem(q, a, "", 1, 1) for q, a in zip(prompts, answers)]


def _call(h, batch, step, key=0):
    """The callback on `batch`, its references registered under `key` first."""
    prompts, tokens, problems = batch
    return h(tokens, h.register(key, problems, prompts), step)


def _bridge(cfg=None, group_size=2, **kw):
    return HostReward(TaskScorer(TASK, cfg or RewardConfig()), TOK, group_size=group_size, **kw)


GOOD = "3+4=7\n7*2=14\n#### 14"
BAD = "3+4=7\n7*2=15\n#### 15"


def test_outcome_lands_on_eos_and_rows_sum_to_total():
    h = _bridge(RewardConfig(w_novelty=0.0))
    scores, rewards = _call(h, _batch(["q1", "q1"], [GOOD, BAD], ["14", "14"]), 0)
    assert scores.shape == (2, len(SCORE_FIELDS)) and rewards.shape == (2, T)
    assert scores[0, COL["answer_correct"]] == 1 and scores[1, COL["total"]] == 0
    assert np.flatnonzero(rewards[0]).tolist() == [len(GOOD)]  # the EOS token
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]], rtol=1e-6)


def test_dense_mix_moves_step_credit_onto_step_ends_keeping_the_sum():
    cfg = RewardConfig(w_novelty=0.0)
    h = _bridge(cfg, placement=Placement(dense_mix=1.0))
    scores, rewards = _call(h, _batch(["q1", "q1"], [GOOD, BAD], ["14", "14"]), 0)
    ends = [GOOD.index("=7") + 1, GOOD.index("14") + 1]
    per_step = cfg.w_correctness * cfg.step_weight / 2
    np.testing.assert_allclose(rewards[0, ends], [per_step, per_step], rtol=1e-6)
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]], rtol=1e-6)
    assert not rewards[1].any()  # wrong answer: no step credit (gated), outcome 0


def test_dense_mix_puts_nothing_on_an_idle_step():
    """``1=1`` and a final check earn no step credit (``composite.score``), so no dense
    reward lands on them either: the credit goes to the steps that make progress."""
    cfg = RewardConfig(w_novelty=0.0)
    h = _bridge(cfg, placement=Placement(dense_mix=1.0))
    padded, checked = "1=1\n3+4=7\n7*2=14\n#### 14", "3+4=7\n7*2=14\n14-7=7\n#### 14"
    scores, rewards = _call(h, _batch(["q1", "q1"], [padded, checked], ["14", "14"]), 0)
    per_step = cfg.w_correctness * cfg.step_weight / 2  # two steps matter in each
    for row, text, idle in ((0, padded, "1=1"), (1, checked, "14-7=7")):
        ends = [text.index("3+4=7") + 4, text.index("7*2=14") + 5]
        np.testing.assert_allclose(rewards[row, ends], [per_step, per_step], rtol=1e-6)
        assert rewards[row, text.index(idle) + len(idle) - 1] == 0.0
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]], rtol=1e-6)
    assert scores[0, COL["correctness"]] == pytest.approx(1.0)  # an idle step is neutral


def test_dense_credit_counts_unchecked_steps_as_the_score_does():
    """Steps past ``MAX_CHECKED_STEPS`` are invalid for the score; the dense share per
    credited step counts them too (it was 52 times the score's step credit)."""
    from r1jax.rewards.verifier import MAX_CHECKED_STEPS

    cfg = RewardConfig(w_novelty=0.0)
    text = "3+4=7\n" + "1=1\n" * MAX_CHECKED_STEPS + "2+2=5\n" * 50 + "#### 7"
    tok, T_long = CharTokenizer(), len(text) + 2
    h = HostReward(TaskScorer(TASK, cfg), tok, group_size=1, placement=Placement(dense_mix=1.0))
    c, _ = tok.encode_right_padded([text], T_long)
    scores, rewards = h(c, h.register(0, [Problem("q", "7", "", 1, 1)], ["q"]), 0)
    step_part = scores[0, COL["correctness"]] - (1 - cfg.step_weight)
    # 1 credited; 51 invalid: the 1,001st step (unchecked) and the 50 wrong ones
    assert step_part == pytest.approx(cfg.step_weight / 52, rel=1e-5)
    assert rewards[0, text.index("=7") + 1] == pytest.approx(
        cfg.w_correctness * step_part, rel=1e-5
    )
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]], rtol=1e-5)


def test_step_shaping_adds_minus_alpha_once_per_completion():
    h = _bridge(RewardConfig(w_novelty=0.0), placement=Placement(step_shaping=0.25))
    scores, rewards = _call(h, _batch(["q1", "q1"], [GOOD, BAD], ["14", "14"]), 0)
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]] - 0.25, rtol=1e-6)
    assert rewards[1, BAD.index("15") + 1] == pytest.approx(-0.25)


def test_novelty_rewards_new_correct_paths_and_decays_on_repeats():
    cfg = RewardConfig()
    h = _bridge(cfg)
    other = "7*2=14\n#### 14"
    batch = _batch(["q1", "q1"], [GOOD, other], ["14", "14"])
    first, _ = _call(h, batch, 0)
    assert first[:, COL["novelty"]].tolist() == [1.0, 1.0]
    for step in range(1, 6):
        again, _ = _call(h, batch, step)
    assert (again[:, COL["novelty"]] < 1.0).all()
    np.testing.assert_allclose(
        first[:, COL["total"]] - again[:, COL["total"]],
        cfg.w_novelty * (first[:, COL["novelty"]] - again[:, COL["novelty"]]),
        rtol=1e-5,
    )
    # A different prompt has its own tree; a wrong answer earns none.
    fresh, _ = _call(h, _batch(["q2", "q2"], [GOOD, BAD], ["14", "14"]), 6)
    assert fresh[:, COL["novelty"]].tolist() == [1.0, 0.0]


def test_state_dict_round_trip_reproduces_future_rewards():
    batch = _batch(["q1", "q1"], [GOOD, "7*2=14\n#### 14"], ["14", "14"])
    a = _bridge()
    _call(a, batch, 0)
    b = _bridge()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    np.testing.assert_array_equal(_call(a, batch, 1)[0], _call(b, batch, 1)[0])


def test_noise_is_seeded_by_step_and_keeps_verdicts():
    noise = RewardNoise(reward_std=0.1, perturb_prob=1.0, seed=3)
    batch = _batch(["q1", "q1"], [GOOD, BAD], ["14", "14"])
    clean, _ = _call(_bridge(RewardConfig(w_novelty=0.0)), batch, 5)
    s1, _ = _call(_bridge(RewardConfig(w_novelty=0.0), noise=noise), batch, 5)
    s2, _ = _call(_bridge(RewardConfig(w_novelty=0.0), noise=noise), batch, 5)
    s3, _ = _call(_bridge(RewardConfig(w_novelty=0.0), noise=noise), batch, 6)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1[:, COL["total"]], s3[:, COL["total"]])
    assert not np.array_equal(s1[:, COL["total"]], clean[:, COL["total"]])
    np.testing.assert_array_equal(s1[:, COL["answer_correct"]], clean[:, COL["answer_correct"]])


def test_truncated_completion_gets_its_outcome_on_the_last_token():
    h = _bridge(RewardConfig(w_novelty=0.0))
    long = "1+1=2\n" * 10  # 60 chars > T: no EOS, no answer
    c = np.array([TOK.encode(long)[:T], TOK.encode(GOOD) + [EOS_ID] * (T - len(GOOD))])
    problems = [Problem("q", "2", "", 1, 1), Problem("q", "14", "", 1, 1)]
    scores, rewards = h(c, h.register(0, problems, ["q", "q"]), 0)
    assert scores[0, COL["total"]] == 0 and not rewards[0].any()
    assert rewards[1, len(GOOD)] == pytest.approx(scores[1, COL["total"]])


@pytest.mark.parametrize("kw", [dict(dense_mix=1.5), dict(step_shaping=-1.0), dict(dense_mix="x")])
def test_placement_validates(kw):
    with pytest.raises(ValueError, match="reward."):
        Placement(**kw)
