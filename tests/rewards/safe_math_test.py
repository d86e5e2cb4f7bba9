"""Tests for r1jax.rewards.safe_math: exact values, hostile input, a property test."""

import builtins
import time
from fractions import Fraction

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from r1jax.rewards import safe_math
from r1jax.rewards.safe_math import parse_answer, safe_eval, safe_eval_fraction


@pytest.mark.parametrize(
    "expr, want",
    [
        ("7*4", sympy.Rational(28)),
        ("28-5", sympy.Rational(23)),
        ("0.1+0.2", sympy.Rational(3, 10)),  # exact, not 0.30000000000000004
        ("1/3", sympy.Rational(1, 3)),
        ("1/3*3", sympy.Rational(1)),
        ("2^3", sympy.Rational(8)),  # ^ is power
        ("2**-2", sympy.Rational(1, 4)),
        ("(-2)^3", sympy.Rational(-8)),
        ("-2^2", sympy.Rational(-4)),  # Python precedence: -(2**2)
        ("2.5**2", sympy.Rational(25, 4)),
        ("2**(3-1)", sympy.Rational(4)),
        ("2**2.0", sympy.Rational(4)),  # an exponent equal to an integer is fine
        ("1,200+1", sympy.Rational(1201)),
        ("1,234,567", sympy.Rational(1234567)),
        ("007", sympy.Rational(7)),
        ("0.05", sympy.Rational(1, 20)),
        ("1.", sympy.Rational(1)),
        (".5", sympy.Rational(1, 2)),
        ("  ( 3 + 4 ) * 2 ", sympy.Rational(14)),
        ("--5", sympy.Rational(5)),
        ("+5", sympy.Rational(5)),
        ("((((1))))", sympy.Rational(1)),
        ("1" + "0" * 30, sympy.Rational(10**30)),  # MAX_ABS itself is allowed
    ],
)
def test_exact_values(expr, want):
    got = safe_eval(expr)
    assert isinstance(got, sympy.Rational)
    assert got == want
    assert safe_eval_fraction(expr) == Fraction(int(want.p), int(want.q))


@pytest.mark.parametrize(
    "expr",
    [
        "1/0",
        "1/(2-2)",
        "0**-1",
        "4**0.5",  # non-integer exponent
        "2**9",  # |exponent| > MAX_EXPONENT
        "1" + "0" * 30 + "*10",  # intermediate magnitude
        "1" + "0" * 31,  # literal magnitude
        "1/" + "1" + "0" * 31,  # denominator bound
        "",
        "   ",
        "1 2",
        "3//2",
        "3%2",
        "1,2",  # not a thousands separator
        "...",
        "()",
        "(1",
        "1)",
        "1=1",
        "x",
        "1+x",
    ],
)
def test_rejected(expr):
    assert safe_eval(expr) is None
    assert safe_eval_fraction(expr) is None


HOSTILE = [
    "__import__('os')",
    "__import__('os').system('true')",
    "(lambda: 1)()",
    "9**9**9",
    "9**9**9**9",
    "10**100000",
    "2**10**10",
    "a" * 10**6,
    "9" * 10**6,
    "1e309",
    "1e5",
    "1j",
    "0x10",
    "1_000",
    "(" * 10000 + "1" + ")" * 10000,
    "(" * 60 + "1" + ")" * 60,
    "-" * 150 + "1",
    "(1).__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "x.y",
    "abs(-1)",
    "[1]",
    "{1: 2}",
    "'1'",
    "b'1'",
    "1 if 1 else 2",
    "1 < 2",
    "not 1",
    "~1",
    "1 << 1000000",
    "1\x002",
    "\u0663\u0664",  # Arabic-Indic digits
    "１２",  # full-width digits
    "1\n+1",
    "True",
    "None",
]


@pytest.mark.parametrize("expr", HOSTILE)
def test_hostile_inputs_return_none_quickly(expr):
    start = time.perf_counter()
    assert safe_eval(expr) is None
    assert parse_answer(expr) is None
    assert time.perf_counter() - start < 2.0  # rejected before any work (no blow-up)


def test_nesting_bounds():
    depth = safe_math.MAX_DEPTH
    assert safe_eval("(" * depth + "1" + ")" * depth) == 1
    assert safe_eval("(" * (depth + 1) + "1" + ")" * (depth + 1)) is None
    assert safe_eval("-" * 20 + "1") == 1
    assert safe_eval("-" * (depth + 5) + "1") is None


def test_never_calls_eval_exec_or_sympify(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("forbidden evaluator called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(sympy, "sympify", forbidden)
    monkeypatch.setattr(sympy, "parse_expr", forbidden)
    assert safe_eval("3*(4+5)/2") == sympy.Rational(27, 2)
    assert parse_answer("$1,200") == 1200
    for expr in HOSTILE:
        assert safe_eval(expr) is None


@pytest.mark.parametrize(
    "text, want",
    [
        ("$1,200", sympy.Rational(1200)),
        ("12.", sympy.Rational(12)),
        (" 3/4 ", sympy.Rational(3, 4)),
        ("-5", sympy.Rational(-5)),
        ("-$5", sympy.Rational(-5)),
        ("1.50", sympy.Rational(3, 2)),
        ("41", sympy.Rational(41)),
        ("50%", None),  # ambiguous: refused
        ("", None),
        ("forty-one", None),
        ("41 apples", None),
    ],
)
def test_parse_answer(text, want):
    assert parse_answer(text) == want


# ----------------------------------------------------------------- property test
# A random expression tree, rendered fully parenthesised, evaluated with Fraction
# under the same bounds the evaluator documents; the two must agree exactly.

_Node = tuple  # (text, value or None, height)


def _bounded(value):
    if value is None:
        return None
    if abs(value) > safe_math.MAX_ABS or value.denominator > safe_math.MAX_DENOMINATOR:
        return None
    return value


def _binop(args):
    (ta, va, ha), op, (tb, vb, hb) = args
    value = None
    if va is not None and vb is not None:
        if op == "+":
            value = va + vb
        elif op == "-":
            value = va - vb
        elif op == "*":
            value = va * vb
        elif vb != 0:
            value = va / vb
    return (f"({ta}{op}{tb})", _bounded(value), 1 + max(ha, hb))


def _neg(child):
    text, value, height = child
    return (f"(-{text})", None if value is None else -value, 1 + height)


def _power(args):
    (text, value, height), exponent, caret = args
    value = None if value is None else _bounded(value**exponent)
    return (f"({text}{'^' if caret else '**'}{exponent})", value, 1 + max(height, 0))


_leaves = st.integers(0, 99).map(lambda n: (str(n), Fraction(n), 0))
_exprs = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.tuples(children, st.sampled_from("+-*/"), children).map(_binop),
        children.map(_neg),
        st.tuples(children, st.integers(0, 3), st.booleans()).map(_power),
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(_exprs)
def test_property_matches_fraction_arithmetic(node):
    text, want, height = node
    if height > safe_math.MAX_DEPTH or len(text) > safe_math.MAX_EXPR_CHARS:
        want = None
    got = safe_eval(text)
    if want is None:
        assert got is None
    else:
        assert got == sympy.Rational(want.numerator, want.denominator)
