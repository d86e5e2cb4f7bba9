"""Tests for r1jax.rewards.noise: reward noise, verdict-preserving surface perturbation,
and policy-independent exploits earning nothing under the composite reward."""

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1jax.rewards import safe_math
from r1jax.rewards.composite import RewardConfig, score
from r1jax.rewards.noise import (
    STREAM_REWARD,
    STREAM_SURFACE,
    RewardNoise,
    add_reward_noise,
    derive_rng,
    perturb_surface,
)
from r1jax.rewards.verifier import parse_solution, verify

SEEDS = range(40)

# (solution, reference answers to verify against)
CORPUS = [
    ("7*4=28\n28-5=23\n3*6=18\n23+18=41\n#### 41", ["41", "42"]),
    ("7*4=28\n28-5=24\n3*6=18\n24+18=42\n#### 42", ["41", "42"]),
    ("Let me think.\n  7 * 4 = 28  \nSo 28 apples.\n28 - 5 = 23\n#### 23\n1+1=3\n", ["23"]),
    ("1200+300=1500\n1,500*2=3,000\n3000/4=750\n#### 750", ["750", "3000"]),
    ("1,234,567-1,234,000=567\n12,345+1=12346\n#### 12,346", ["12346", "12,346"]),
    ("1,2000+1=12001\n1200,5=1\n12,3456=123456\n#### 1,2000", ["12000", "12001"]),
    ("0.5*4=2\n2.50+.5=3\n1.=1.0\n3.14159*2=6.28318\n#### 6.28318", ["6.28318"]),
    ("2^3=8\n2**3=8.0\n2^10=1024\n2**-1=0.5\n(-2)^3=-8\n2* *3=8\n#### 8", ["8"]),
    ("2^12=4096\n2^3.5=11\n0^-1=0\n1/0=1\n#### 4096", ["4096"]),
    ("(3+4)*2=14\n( 3 + 4 ) * 2 = 14\n((1))=1\n3+4)=7\n#### 14", ["14"]),
    ("007+1=8\n08*1=8\n0.0=0\n00=0\n#### 008", ["8"]),
    ("10-3=7\n--5=5\n-5+-5=-10\n#### -10", ["-10", "10"]),
    ("5*2=10\n#### $10", ["10"]),
    ("5*2=10\n#### $1,200.", ["1200"]),
    ("#### -$5", ["-5"]),
    ("#### 0.$5", ["0.5", "5"]),
    ("#### 5$1200", ["51200"]),
    ("#### 1200$5", ["12005"]),
    ("#### 1,200$5", ["12005"]),
    ("#### 12 .", ["12"]),
    ("#### 12..", ["12"]),
    ("#### 50%", ["50", "0.5"]),
    ("####12", ["12"]),
    ("####-12", ["-12"]),
    ("#####5", ["5"]),
    ("####", ["0"]),
    ("x = 5 apples\n5 = 5\n1 2=12\n1 .5=1.5\n1\t+2=3\n1\u00a0+2=3\n#### 3", ["3"]),
    ("3×4=12\n٣+1=4\n1e3=1000\n#### 12", ["12"]),
    ("1=1==1\n=3\n3=\n4=4=4\n#### 4", ["4"]),
    ("no steps at all, only prose\n#### 7", ["7"]),
    ("1+1=2\r\n2+2=4\r\n#### 4\r\n", ["4"]),
    ("1+1=2\x0b2+2=4\x0c#### 4\u2028", ["4"]),
    ("", ["0"]),
]


def _cap_corpus():
    """Steps and answers whose sides sit right at safe_math.MAX_EXPR_CHARS."""
    cap = safe_math.MAX_EXPR_CHARS
    out = []
    for extra in (-2, -1, 0, 1, 2):
        side = "1" + "+1" * ((cap + extra) // 2 - 1)  # length around the cap
        value = side.count("1")
        out.append((f"{side}={value}\n#### {value}", [str(value)]))
        spaced = " + ".join(["1"] * ((cap + extra) // 4))
        out.append((f"{spaced}={spaced.count('1')}\n#### {spaced}", [str(spaced.count("1"))]))
    out.append(("1+1=2\n" + "1" * 999 + "=1\n#### 2", ["2"]))
    out.append(("+".join(["1"] * 400) + "=400\n#### 400", ["400"]))
    return out


@pytest.mark.parametrize("text, refs", CORPUS + _cap_corpus())
def test_perturbation_preserves_verdicts_on_corpus(text, refs):
    for seed in SEEDS:
        new = perturb_surface(text, derive_rng(seed, 0, 0))
        for ref in refs:
            assert verify(new, ref) == verify(text, ref), (seed, text, new, ref)


def test_perturbation_actually_varies_the_surface():
    text = "7*4=28\n28-5=23\n1200+300=1500\n#### 1500"
    outs = {perturb_surface(text, derive_rng(s, 0, 0)) for s in range(100)}
    assert len(outs) > 30
    assert any("1,200" in o for o in outs) and any(" * " in o for o in outs)
    assert any(".0" in o for o in outs) and any("####1" in o for o in outs)
    assert all(parse_solution(o).answer.replace(",", "").startswith("1500") for o in outs)


def test_perturbation_leaves_prose_and_text_after_the_answer():
    text = "We have 1200 apples (and 3 pears) + more.\n1+1=2\n#### 2\n1200 + 1 = 1201\n"
    for seed in SEEDS:
        lines = perturb_surface(text, derive_rng(seed, 0, 0)).splitlines()
        assert lines[0] == "We have 1200 apples (and 3 pears) + more."
        assert lines[3] == "1200 + 1 = 1201"


def test_perturbation_keeps_the_space_after_a_list_marker():
    # "-9 * 2 = 18" would be a sign, and a wrong step: the marker's space stays.
    from r1jax.rewards.steps import check_steps

    text = "Eggs:\n- 9 * 2 = 18 dollars\n  * 18 + 2 = 20\n+ 20 - 5 = 15\n#### 15"
    rewrites = {perturb_surface(text, np.random.default_rng(s)) for s in range(40)}
    assert len(rewrites) > 5
    for new in rewrites:
        assert [c.status for c in check_steps(new).steps] == ["verified"] * 3, new
    # ... and a sign first on a line keeps touching its number: "- 3" would be a marker.
    text = "5 - 8 = -3\n-3 + 10 = 7\n  -7 * 2 = -14\n#### -14"
    rewrites = {perturb_surface(text, np.random.default_rng(s)) for s in range(60)}
    assert len(rewrites) > 5
    for new in rewrites:
        assert [c.status for c in check_steps(new).steps] == ["verified"] * 3, new


def test_perturbation_is_deterministic_given_the_rng():
    text = CORPUS[3][0]
    a = [perturb_surface(text, derive_rng(7, 3, i)) for i in range(10)]
    b = [perturb_surface(text, derive_rng(7, 3, i)) for i in range(10)]
    assert a == b and len(set(a)) > 1


@pytest.mark.parametrize(
    "text",
    ["1+1=2\n" * 20_000, "1+" * 2_000_000 + "1=2\n#### 2", "#### " + "1" * 5_000_000, "x" * 10**7],
)
def test_perturbation_of_hostile_long_input_is_fast_and_safe(text):
    start = time.perf_counter()
    new = perturb_surface(text, derive_rng(0, 0, 0))
    assert time.perf_counter() - start < 10.0  # no blow-up (a loaded CI core is slow)
    assert verify(new, "2") == verify(text, "2")


@pytest.mark.parametrize("value", [None, 5, b"1=1"])
def test_perturb_surface_passes_non_strings_through(value):
    assert perturb_surface(value, derive_rng(0, 0, 0)) is value


_ATOMS = st.sampled_from(
    list("0123456789 +-*/^=().,$#%\tx\n")
    + ["####", "#### ", "1,200", "1,234,567", "12.5", "**", "\u00a0", "\u0663", "\r\n", "0.0"]
)


@st.composite
def _solutions(draw):
    """Random mostly-arithmetic lines, some true, some false, then an answer."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        a, b = draw(st.integers(0, 99_999)), draw(st.integers(1, 9_999))
        op = draw(st.sampled_from("+-*/"))
        value = safe_math.safe_eval_fraction(f"{a}{op}{b}")
        shown = str(value) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
        if draw(st.booleans()):
            shown = f"{shown}+1"  # a false step
        lines.append(f"{a}{draw(st.sampled_from(['', ' ']))}{op}{b}={shown}")
    noise = st.lists(_ATOMS.filter(lambda s: "\n" not in s), max_size=8).map("".join)
    answer = draw(st.one_of(st.integers(-(10**6), 10**6).map(str), noise))
    return "\n".join(lines + [f"#### {answer}"])


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.lists(_ATOMS, max_size=40).map("".join), _solutions()),
    extra_ref=st.sampled_from(["0", "1200", "12.5", "-1"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_perturbation_preserves_verdicts_property(text, extra_ref, seed):
    own = parse_solution(text).answer or "0"
    for i in range(5):
        new = perturb_surface(text, derive_rng(seed, 0, i))
        for ref in (own, extra_ref):
            assert verify(new, ref) == verify(text, ref), (text, new, ref)


def test_add_reward_noise_statistics():
    rng = np.random.default_rng(0)
    rewards = np.full(200_000, 0.75)
    noisy = add_reward_noise(rewards, 0.1, rng)
    assert noisy.shape == rewards.shape and noisy.dtype == np.float64
    assert abs(float(np.mean(noisy - rewards))) < 0.002  # 5 standard errors
    assert float(np.std(noisy - rewards)) == pytest.approx(0.1, rel=0.01)
    np.testing.assert_array_equal(rewards, 0.75)  # input untouched


def test_add_reward_noise_zero_std_and_dtypes():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    rewards = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    out = add_reward_noise(rewards, 0.0, rng)
    np.testing.assert_array_equal(out, rewards)
    assert out is not rewards and out.dtype == np.float32
    assert rng.bit_generator.state == state  # nothing drawn
    assert add_reward_noise(rewards, 0.5, rng).dtype == np.float32
    assert add_reward_noise(np.array([1, 0]), 0.5, rng).dtype == np.float64
    for bad in (-0.1, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError):
            add_reward_noise(rewards, bad, rng)


def test_reward_noise_is_reproducible_by_seed_step_and_index():
    cfg = RewardNoise(reward_std=0.2, seed=3)
    rewards = np.linspace(0, 1, 16)
    a = cfg.noisy_rewards(rewards, step=5, index=1)
    np.testing.assert_array_equal(
        a, RewardNoise(reward_std=0.2, seed=3).noisy_rewards(rewards, 5, 1)
    )
    for other in (cfg.noisy_rewards(rewards, 6, 1), cfg.noisy_rewards(rewards, 5, 2)):
        assert not np.array_equal(a, other)
    other_seed = dataclasses.replace(cfg, seed=4).noisy_rewards(rewards, 5, 1)
    assert not np.array_equal(a, other_seed)
    np.testing.assert_array_equal(RewardNoise().noisy_rewards(rewards, 5, 1), rewards)


def test_derive_rng_streams_and_validation():
    x = derive_rng(1, 2, 3, STREAM_REWARD).random(4)
    np.testing.assert_array_equal(x, derive_rng(1, 2, 3, STREAM_REWARD).random(4))
    assert not np.array_equal(x, derive_rng(1, 2, 3, STREAM_SURFACE).random(4))
    assert not np.array_equal(derive_rng(1, 2, 3).random(4), derive_rng(1, 3, 2).random(4))
    derive_rng(np.int64(1), np.int32(2), 3)
    for bad in ((-1, 0, 0), (0, -1, 0), (0, 0, 1.5), (True, 0, 0)):
        with pytest.raises(ValueError):
            derive_rng(*bad)


def test_reward_noise_perturb_probability():
    text = "7*4=28\n28-5=23\n1200+300=1500\n#### 1500"
    assert all(RewardNoise().perturb(text, 0, i) == text for i in range(50))
    always = RewardNoise(perturb_prob=1.0, seed=1)
    assert sum(always.perturb(text, 0, i) != text for i in range(200)) > 150
    half = RewardNoise(perturb_prob=0.5, seed=1)
    changed = sum(half.perturb(text, 0, i) != text for i in range(400))
    assert 120 < changed < 210  # about 0.5 * (share of rewrites that change something)
    assert [half.perturb(text, 2, i) for i in range(20)] == [
        RewardNoise(perturb_prob=0.5, seed=1).perturb(text, 2, i) for i in range(20)
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reward_std": -1.0},
        {"reward_std": float("inf")},
        {"perturb_prob": 1.5},
        {"perturb_prob": -0.1},
        {"seed": -1},
        {"seed": 1.0},
    ],
)
def test_reward_noise_validation(kwargs):
    with pytest.raises(ValueError):
        RewardNoise(**kwargs)


EXPLOITS = [
    "#### 0" + " " * 50,
    "1=1\n" * 20 + "#### 7",
    "",
    "I think the answer is clear from the problem statement.",
    "2+2=4\n" * 50,  # valid steps, no answer
    "#### 7\n#### 41",  # only the first answer line counts
    "#### 7 41",
    "#### 41?",
    "1000000=1000000\n#### 1,000,000",
    "7*4=28\n" * 3 + "####",
]


@pytest.mark.parametrize("completion", EXPLOITS)
@pytest.mark.parametrize("reference", ["41", "23", "12.5", "-3"])
def test_policy_independent_exploits_earn_nothing(completion, reference):
    cfg = RewardConfig()
    assert score(completion, reference, cfg)["total"] == 0.0
    noise = RewardNoise(perturb_prob=1.0, seed=11)
    for i in range(20):
        perturbed = noise.perturb(completion, step=1, index=i)
        assert score(perturbed, reference, cfg)["total"] == 0.0, perturbed


def test_a_correct_solution_keeps_its_reward_under_perturbation():
    text = "7*4=28\n28-5=23\n3*6=18\n23+18=41\n#### 41"
    want = score(text, "41")
    noise = RewardNoise(perturb_prob=1.0, seed=2)
    for i in range(50):
        assert score(noise.perturb(text, step=0, index=i), "41") == want
