"""Tests for r1jax.rewards.symbolic: sympy building and bounds, equivalence, the pool.

``answers.settle`` runs the sympy comparison in this process (what a worker runs); the
pool tests go through ``verify_answer``/``verify_answers`` and worker processes.
"""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from r1jax.rewards import answers, symbolic, verify_answer, verify_answers

SLOW = ("(a+b+c+d)^{100}", "(a+b+c+d)^{99}a+(a+b+c+d)^{99}(b+c+d)")  # expand: minutes


@pytest.mark.parametrize(
    "text",
    ["x**99999999", "9**9**9**9", "2**(10**30)", "(1+x)**(1/1000)", "1/0", "x/(1-1)", "root(2,1)"]
    + ["root(2,x)", "1" * 61]
    # Fuzz review (session 29): the tiny as well as the huge (sympy evaluated exp(-999!)
    # in full: seconds), and roots of large numbers (sympy factors them: seconds).
    + ["exp(-factorial(999))", "exp(-30000)", "sqrt(10**1999+1)"]
    + ["root(factorial(999)+1000,3)", "sqrt(10**101)"],
)
def test_to_sympy_refuses_out_of_bounds(text):
    with pytest.raises(symbolic.Refused):
        symbolic.to_sympy(text)


@pytest.mark.parametrize("text", ["sqrt(10**100)", "sqrt(2)/10**1500", "exp(-1000)"])
def test_to_sympy_builds_what_an_answer_may_hold(text):
    assert symbolic.to_sympy(text) != 0


def test_values_past_a_floats_range_are_compared_not_skipped():
    # A factor over 1e308 made the numeric test "cannot tell" (a Python complex is inf),
    # so the pair went on to expand/simplify (8 s); now the values differ and that is
    # the verdict.
    import sympy

    big = symbolic.to_sympy("10**309*(a+b+c+d)**20")
    at = {s: sympy.Rational(3, 7) + i for i, s in enumerate(sorted(big.free_symbols, key=str))}
    value = symbolic._numeric(big, sympy, at)
    assert value is not None and symbolic._mp().isfinite(value)
    assert not symbolic._close(value, symbolic._numeric(sympy.Integer(18), sympy))
    assert symbolic._close(value, value * (1 + symbolic._mp().mpf("1e-15")))
    assert not answers.settle("10^{309}(a+b+c+d)^{20}", "18")
    assert answers.settle("10^{309}(a+b)", "10^{309}a+10^{309}b")


def test_to_sympy_builds_exactly():
    import sympy

    x = sympy.Symbol("x")
    assert symbolic.to_sympy("2**10") == 1024
    assert symbolic.to_sympy("0.1") == sympy.Rational(1, 10)
    assert symbolic.to_sympy("x**100") == x**100
    assert symbolic.to_sympy("2*sqrt(2)") == 2 * sympy.sqrt(2)
    assert symbolic.to_sympy("root(8,3)") == 2
    assert symbolic.to_sympy("pi/4") == sympy.pi / 4
    assert symbolic.to_sympy("-oo") == -sympy.oo
    assert symbolic.to_sympy("ln(x)+abs(x)") == sympy.log(x) + sympy.Abs(x)


@pytest.mark.parametrize(
    "pred, ref",
    [
        ("2(x+1)", "2x+2"),
        ("x^2 - 1", "(x-1)(x+1)"),
        ("\\frac{x^2-1}{x-1}", "x+1"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("\\dfrac{\\pi}{4}", "\\pi/4"),
        ("\\pi r^2", "r^2 \\cdot \\pi"),
        ("\\sin(x)^2+\\cos(x)^2", "1"),
        ("\\log(8)", "3\\log(2)"),
        ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}"),
        ("\\sqrt{\\sqrt{\\sqrt{2}}}", "2^{1/8}"),
        ("2^{10}", "1024"),
        ("1.414", "\\sqrt{2}"),  # a decimal against an irrational: rounded or truncated
        ("3.14", "\\pi"),
        ("\\left( 2\\sqrt{2}, \\pi \\right)", "(\\sqrt{8}, \\pi)"),
        ("\\{\\sqrt{2}, -\\sqrt{2}\\}", "\\{-\\sqrt{2}, \\sqrt{2}\\}"),
        ("1 \\pm \\sqrt{2}", "1-\\sqrt{2}, 1+\\sqrt{2}"),
        ("[0, \\infty)", "[0,\\infty)"),
        ("(-\\infty, \\sqrt{4}]", "(-\\infty, 2]"),
        ("x^2+2x+1=0", "(x+1)^2=0"),
        ("y = 2x + 1", "y - 2x = 1"),
        ("2x = 4", "x = 2"),
        ("x^2+y^2=1", "2x^2+2y^2=2"),
        ("x = 2, y = 3", "(2, 3)"),
        ("50\\%", "\\frac{1}{2}"),
        ("\\alpha + \\beta", "\\beta + \\alpha"),
        ("3.1", "\\pi"),  # two significant digits: a rounded value
        ("0.014", "\\frac{\\sqrt{2}}{100}"),
        ("x^2\\frac{1}{2}", "x^2/2"),  # \\frac after a power multiplies
        ("x^{2}\\frac{1}{2}", "\\frac{x^2}{2}"),
        ("2\\frac{x}{2}", "x"),
        ("5 = x", "x = 5"),
        ("2x + 1 = y", "y = 2x + 1"),
        ("2x + 1 = y", "y - 2x = 1"),
    ],
)
def test_symbolic_equal(pred, ref):
    assert answers.decide(pred, ref) in (True, None)
    assert answers.settle(pred, ref)


@pytest.mark.parametrize(
    "pred, ref",
    [
        ("2(x+1)", "2x+1"),
        ("\\sin(x)^2", "1"),
        ("\\sqrt{x^2}", "x"),
        ("3", "\\pi"),
        ("1.42", "\\sqrt{2}"),
        ("3.15", "\\pi"),
        ("x^2+y^2=1", "x^2+y^2=2"),
        ("2x = 4", "x = 3"),
        ("(\\sqrt{2}, 1)", "(1, \\sqrt{2})"),
        ("[0, \\infty)", "(0, \\infty)"),
        ("\\frac{1}{0}", "\\frac{2}{0}"),
        ("2^{10000}", "2^{10000}+1"),
        ("x", "18"),
        ("0.0", "\\frac{\\sqrt{2}}{100}"),  # under two significant digits: exact only
        ("0.01", "\\frac{\\sqrt{2}}{100}"),
        ("3.0", "\\pi"),
        ("x^2\\frac{1}{2}", "x^2 + 1/2"),
        ("x^2\\frac{1}{2}", "x^{5/2}"),
    ],
)
def test_symbolic_unequal(pred, ref):
    assert not answers.settle(pred, ref)


@pytest.mark.parametrize(
    "pred, ref, want",
    [
        ("#### 0.0", "\\frac{\\sqrt{2}}{100}", False),
        ("#### 0.014", "\\frac{\\sqrt{2}}{100}", True),
        ("\\boxed{x^2\\frac{1}{2}}", "x^2/2", True),
        ("\\boxed{5 = x}", "5", True),
        ("\\boxed{7 = 5}", "5", False),
    ],
)
def test_review_verdicts_through_verify_answer(pred, ref, want):
    assert verify_answer(pred, ref) is want


@pytest.mark.parametrize(
    "decimal, places, value, want",
    [
        ("0.33", 2, (1, 3), True),
        ("0.333", 3, (1, 3), True),
        ("0.66", 2, (2, 3), True),  # truncated
        ("3.3", 1, (10, 3), True),
        ("0.0", 1, (1, 30), False),  # fewer than two significant digits
        ("0.1", 1, (1, 7), False),
        ("0.3", 1, (1, 3), False),
        ("0.05", 2, (1, 19), False),
        ("0.34", 2, (1, 3), False),
    ],
)
def test_decimal_close_needs_two_significant_digits(decimal, places, value, want):
    from fractions import Fraction

    assert symbolic.decimal_close(Fraction(decimal), places, Fraction(*value)) is want


def test_pool_path_and_cache():
    symbolic.cache_clear()
    assert verify_answer("The answer is $2\\sqrt{2}$.", "\\sqrt{8}")
    assert not verify_answer("#### 2x+1", "2(x+1)")
    pool = symbolic.default_pool()
    items = pool.stats["items"]
    assert verify_answer("\\boxed{2\\sqrt{2}}", "\\sqrt{8}")  # same answers: cached
    assert pool.stats["items"] == items
    pairs = [("\\boxed{x^2-1}", "(x-1)(x+1)"), ("#### 18", "18"), ("x", "y"), ("#### 17", "18")]
    assert verify_answers(pairs) == [True, True, False, False]
    assert verify_answers(pairs, fast_path=False) == [True, True, False, False]


def test_stuck_worker_is_killed_and_replaced():
    symbolic.cache_clear()
    with symbolic.make_pool(num_workers=1, deadline_s=1.0) as pool:
        pool.start()
        pid = pool.worker_pids[0]
        t0 = time.monotonic()
        assert verify_answers([SLOW, ("2(x+1)", "2x+2")], pool) == [False, True]
        assert time.monotonic() - t0 < 30
        assert pool.stats["timeouts"] == 1 and pool.stats["restarts"] == 1
        assert pool.worker_pids[0] != pid
        assert verify_answers([("x+1", "1+x"), ("#### 18", "18")], pool) == [True, True]
    symbolic.cache_clear()


def test_inside_another_reward_pool_worker():
    """A reward worker (a daemon: no children) settles sympy itself, under its deadline."""
    from r1jax.rewards import RewardPool

    with RewardPool(verify_answers, num_workers=1, deadline_s=60.0, num_fields=2) as pool:
        rows = pool.score_batch([([("2(x+1)", "2x+2"), ("\\sqrt{8}", "3")],)])
    assert rows.tolist() == [[1.0, 0.0]]


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        input=textwrap.dedent(script),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_workers_do_not_outlive_the_interpreter():
    r = _run_script(
        """
        from r1jax.rewards import symbolic, verify_answer
        assert verify_answer("2(x+1)", "2x+2")
        print(*symbolic.default_pool().worker_pids)
        """,
        "-",  # the script on stdin: its __main__ has no file, which spawn must survive
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    pids = [int(p) for p in r.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    assert not any(_running(p) for p in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_shutdown_stops_workers_and_a_new_pool_starts():
    assert verify_answer("\\sqrt{4}", "2")
    pids = symbolic.default_pool().worker_pids
    symbolic.shutdown()
    assert not any(_running(p) for p in pids if os.path.exists(f"/proc/{p}"))
    symbolic.cache_clear()
    assert verify_answer("\\sqrt{9}", "3")
