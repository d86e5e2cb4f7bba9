"""Hostile model output through extract_answer/verify_answer: no code runs, no hang, no
exception, and the verifier (and its worker pool) still works afterwards.

Some inputs reach the sympy workers (``symbolic.DEADLINE_S`` per pair); each call must
return within that deadline plus a margin for a busy machine.
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1jax.rewards import answers, extract_answer, symbolic, verify_answer, verify_answers

MARGIN_S = 10.0  # a shared, busy machine: generous


def _hostile(canary: str) -> list[str]:
    return [
        f"__import__('os').system('touch {canary}')",
        f"#### __import__('os').system('touch {canary}')",
        f"\\boxed{{__import__('os').system('touch {canary}')}}",
        f"The answer is exec(\"open('{canary}', 'w')\")",
        f"#### ().__class__.__bases__[0].__subclasses__()[0]('touch {canary}')",
        "#### ().__class__.__bases__[0].__subclasses__()",
        "#### lambda: 1",
        "#### x.__class__",
        "#### 9**9**9**9",
        "The answer is 10**10**10",
        "#### 2^{2^{2^{2^{2}}}}",
        "#### " + "(" * 10000 + "1" + ")" * 10000,
        "#### " + "(" * 35 + "1" + ")" * 35,
        "#### " + "9" * 1_000_000,
        "9" * 1_000_000,
        "\\boxed{" * 10000 + "1" + "}" * 10000,
        "<answer>" * 10000,
        "#### 1\x002",
        "\x00" * 1000,
        "#### \u0663\u0664",
        "\\frac{x^{99999999}}{x}",
        "#### \\frac{x^{99999999}}{x^{99999998}}",
        "\\boxed{" + "\\sqrt{" * 10000 + "2" + "}" * 10000 + "}",
        "\\boxed{" + "\\sqrt{" * 35 + "2" + "}" * 35 + "}",
        "\\boxed{e^{e^{e^{e^{99}}}}}",
        "\\boxed{\\exp(\\exp(\\exp(\\exp(99))))}",  # sympy evaluates for ever
        "\\boxed{(a+b+c+d)^{100}}",
        "\\boxed{\\frac{1}{0}}",
        "\\boxed{" + "x+" * 5000 + "x}",
        "#### " + "1/" * 100 + "0",
        "A: " + " " * 100_000 + "x",
        "The answer is " * 10000,
    ]


@pytest.fixture(scope="module", autouse=True)
def warm_pool():
    symbolic.cache_clear()
    symbolic.default_pool().start()  # worker start-up is not part of any deadline
    yield
    symbolic.cache_clear()


def test_hostile_inputs(tmp_path):
    canary = tmp_path / "CANARY"
    limit = symbolic.DEADLINE_S + MARGIN_S
    for text in _hostile(str(canary)):
        for ref in ("2", "18", text):
            t0 = time.monotonic()
            got = verify_answer(text, ref)
            assert got is True or got is False
            if ref != text:
                assert got is False, text[:80]
            assert time.monotonic() - t0 < limit, text[:80]
        t0 = time.monotonic()
        for fallback in (False, True):
            got = extract_answer(text, fallback=fallback)
            assert got is None or (isinstance(got, str) and len(got) <= answers.MAX_ANSWER_CHARS)
        assert time.monotonic() - t0 < 2.0, text[:80]
        assert not canary.exists(), text[:80]
    assert verify_answer("#### 18", "18")
    assert verify_answer("\\boxed{2\\sqrt{2}}", "\\sqrt{8}")  # the pool still works


def test_hostile_inputs_in_process_sympy(tmp_path):
    """What a worker runs, run here: refused before sympy can loop (none of these hang)."""
    canary = tmp_path / "CANARY"
    for text in _hostile(str(canary)):
        if "\\exp(" in text or "(a+b+c+d)" in text:
            continue  # these are the deadline's job, tested through the pool above
        answer = extract_answer(text, fallback=True)
        if answer is not None:
            assert answers.settle(answer, "2") is False
    assert not canary.exists()


def test_sympy_that_never_ends_is_false_within_the_deadline():
    slow = "(a+b+c+d)^{99}a+(a+b+c+d)^{99}(b+c+d)"  # equal, but expand() takes minutes
    pool = symbolic.default_pool()
    timeouts = pool.stats["timeouts"]
    t0 = time.monotonic()
    assert verify_answer("\\boxed{(a+b+c+d)^{100}}", slow) is False
    assert time.monotonic() - t0 < symbolic.DEADLINE_S + MARGIN_S
    assert pool.stats["timeouts"] == timeouts + 1
    t0 = time.monotonic()
    assert verify_answer("\\boxed{(a+b+c+d)^{100}}", slow) is False  # cached: no new wait
    assert time.monotonic() - t0 < 1.0
    assert verify_answer("#### 18", "18")
    assert verify_answer("\\boxed{2\\sqrt{2}}", "\\sqrt{8}")


def test_hostile_batch_keeps_order_and_pool():
    texts = _hostile("/nonexistent/CANARY")
    pairs = [(t, "2") for t in texts] + [("#### 18", "18"), ("\\boxed{x^2-1}", "(x-1)(x+1)")]
    got = verify_answers(pairs)
    assert got == [False] * len(texts) + [True, True]


@pytest.mark.parametrize(
    "text, candidates",
    [
        ("#### 5 or 6", ["5", "6"]),
        ("#### 5 or six", ["5", "6"]),
        ("#### 5 and 6", ["5", "6", "11", "56"]),
        ("\\boxed{5 = 6}", ["5", "6"]),
        ("\\boxed{x = 5 = 6}", ["5", "6"]),  # a chain whose numbers differ: no answer
        ("#### 12 minus 3", ["12", "9"]),
        ("#### 1 2", ["12", "1", "2"]),
        ("#### 1 1/2", ["11/2"]),
        ("#### 0.0", ["1/30", "1/40", "-1/30"]),  # half a unit of slack on every side
        ("#### 0.1", ["1/7", "1/9", "2/19"]),
    ],
)
def test_hedges_and_near_misses_never_pay(text, candidates):
    for ref in candidates:
        assert verify_answer(text, ref) is False, (text, ref)


def test_unicode_digits_are_not_numbers():
    assert not verify_answer("#### \u0663\u0664", "34")  # Arabic-Indic 3 4
    assert not verify_answer("#### \uff11\uff18", "18")  # full-width 1 8
    assert not verify_answer("#### 1\x008", "18")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["18", "x+1", "\\frac{1}{2}", "(1, 2)"]))
def test_property_never_raises(text, ref):
    assert verify_answer(text, ref) in (True, False)
    assert verify_answer(ref, text) in (True, False)
