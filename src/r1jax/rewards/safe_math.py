"""Exact, whitelisted evaluation of arithmetic written by the model.

Model output is hostile (DESIGN.md, convention 12). Nothing here calls ``eval``,
``exec``, ``sympy.sympify`` or ``sympy.parse_expr``. Text goes through three gates:

1. Cheap string prefilters, O(len) and before any parsing: a length cap
   (``MAX_EXPR_CHARS``), thousands separators ``1,200`` removed, a character whitelist
   (digits, space, ``. + - * / ( ) ^``), and a parenthesis-depth cap. So ``'a' * 10**6``,
   ``__import__('os')``, ``1e309``, names, calls and attribute access never reach the
   parser.
2. ``ast.parse(mode="eval")`` of the filtered text.
3. A recursive AST walk that accepts only ``Expression``, ``BinOp`` (``+ - * /`` and
   ``**``), ``UnaryOp`` (``-``, ``+``) and int/float ``Constant`` nodes, bounds the tree
   depth (``MAX_DEPTH``), every intermediate magnitude and denominator
   (``MAX_ABS``, ``MAX_DENOMINATOR``), and powers (integer exponent with
   ``|e| <= MAX_EXPONENT``). ``9**9**9`` and ``10**100000`` are refused before any big
   number is built.

Arithmetic is done with ``fractions.Fraction`` (exact, and far cheaper than sympy
numbers); ``safe_eval`` converts the result to ``sympy.Rational`` at the end, and imports
sympy lazily so hot paths (the verifier, which compares ``Fraction``s) never pay for it.
Float literals are converted exactly from their source text (``0.1`` -> ``1/10``), never
through a binary float. ``^`` means power (the usual meaning in maths text, not XOR).
"""

from __future__ import annotations

import ast
import math
import re
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import sympy

__all__ = [
    "MAX_ABS",
    "MAX_DENOMINATOR",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_EXPR_CHARS",
    "parens_ok",
    "parse_answer",
    "parse_answer_fraction",
    "safe_eval",
    "safe_eval_fraction",
]

MAX_EXPR_CHARS = 200  # longest expression (after trimming) we agree to look at
MAX_DEPTH = 30  # deepest AST (and parenthesis nesting) accepted
MAX_ABS = 10**30  # largest |value| of any literal or intermediate result
MAX_DENOMINATOR = 10**30  # largest denominator of any literal or intermediate result
MAX_EXPONENT = 8  # largest |e| in b**e; e must evaluate to an integer

_ALLOWED_CHARS = frozenset("0123456789 \t.+-*/()^")
# A comma between a digit and exactly three digits: "1,200,000" -> "1200000".
# "1,2" or "f(1,2)" keep their comma and are then refused by the charset.
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Leading zeros of an integer part ("007" -> "7"), which Python's parser rejects;
# not zeros after a digit or a decimal point ("100", "0.05").
_LEADING_ZEROS_RE = re.compile(r"(?<![\d.])0+(?=\d)")


class _Reject(Exception):
    """Internal: the expression is outside the whitelist or the bounds."""


def _check(value: Fraction) -> Fraction:
    if abs(value.numerator) > MAX_ABS * value.denominator:
        raise _Reject("magnitude")
    if value.denominator > MAX_DENOMINATOR:
        raise _Reject("denominator")
    return value


def _prefilter(expr: str) -> str | None:
    """Cheap string gates; returns parser-ready text or None."""
    if not isinstance(expr, str) or len(expr) > 4 * MAX_EXPR_CHARS:
        return None  # refuse huge inputs before even scanning them
    text = expr.strip()
    if not text or len(text) > MAX_EXPR_CHARS:
        return None
    if "," in text:
        text = _THOUSANDS_RE.sub("", text)
    if not _ALLOWED_CHARS.issuperset(text):
        return None
    if not parens_ok(text, MAX_DEPTH):
        return None
    text = text.replace("^", "**")
    if "0" in text:
        text = _LEADING_ZEROS_RE.sub("", text)
    return text


def _eval_node(node: ast.AST, src: str, depth: int) -> Fraction:
    if depth > MAX_DEPTH:
        raise _Reject("depth")
    if isinstance(node, ast.Constant):
        value = node.value
        if type(value) is int:  # not bool (a subclass of int)
            if abs(value) > MAX_ABS:
                raise _Reject("literal magnitude")
            return Fraction(value)
        if type(value) is float:
            # Exact conversion from the literal's own text, not from the binary float.
            token = src[node.col_offset : node.end_col_offset]
            if len(token) > MAX_EXPR_CHARS:  # pragma: no cover  (bounded by prefilter)
                raise _Reject("literal length")
            return _check(Fraction(token))
        raise _Reject("constant type")  # Ellipsis ("..."), complex, str, ...
    if isinstance(node, ast.UnaryOp):
        operand = _eval_node(node.operand, src, depth + 1)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        raise _Reject("unary op")
    if isinstance(node, ast.BinOp):
        op = node.op
        if not isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            raise _Reject("binary op")
        left = _eval_node(node.left, src, depth + 1)
        right = _eval_node(node.right, src, depth + 1)
        if isinstance(op, ast.Add):
            return _check(left + right)
        if isinstance(op, ast.Sub):
            return _check(left - right)
        if isinstance(op, ast.Mult):
            return _check(left * right)
        if isinstance(op, ast.Div):
            if right == 0:
                raise _Reject("division by zero")
            return _check(left / right)
        # Pow: integer exponent, bounded; base already bounded by _check, so the
        # result is at most MAX_ABS**MAX_EXPONENT before its own check.
        if right.denominator != 1 or abs(right.numerator) > MAX_EXPONENT:
            raise _Reject("exponent")
        if left == 0 and right < 0:
            raise _Reject("zero to a negative power")
        return _check(left ** int(right))
    raise _Reject(type(node).__name__)  # Name, Call, Attribute, Lambda, ...


def parens_ok(text: str, max_depth: int) -> bool:
    """True iff the parentheses balance and nesting stays within ``max_depth``.

    A linear scan run before ``ast.parse``, whose own recursion limit must never be hit.
    """
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
            if depth > max_depth:
                return False
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def safe_eval_fraction(expr: str) -> Fraction | None:
    """Evaluates whitelisted arithmetic exactly; ``None`` for anything else.

    The workhorse behind ``safe_eval``; returns a ``fractions.Fraction`` so callers that
    only compare values skip sympy entirely.
    """
    text = _prefilter(expr)
    if text is None:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    if not isinstance(tree, ast.Expression):  # pragma: no cover
        return None
    try:
        return _eval_node(tree.body, text, 0)
    except (_Reject, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _to_rational(value: Fraction | None) -> sympy.Rational | None:
    if value is None:
        return None
    import sympy  # lazy: only callers that want sympy numbers pay its import

    return sympy.Rational(value.numerator, value.denominator)


def safe_eval(expr: str) -> sympy.Rational | None:
    """Evaluates whitelisted arithmetic to an exact ``sympy.Rational``.

    Accepts integers and decimals (``0.1`` is exactly 1/10), ``1,200``-style thousands
    separators, ``+ - * /``, unary ``-``/``+``, parentheses and powers written ``**`` or
    ``^`` with an integer exponent of magnitude at most ``MAX_EXPONENT``. Returns ``None``
    for division by zero, anything out of bounds and anything not on the whitelist.
    """
    return _to_rational(safe_eval_fraction(expr))


# A final answer is a number written out: an integer or decimal (thousands separators
# allowed) or a fraction a/b in lowest terms, with an optional sign. Not an expression:
# "26 - 7 + 3" or "8/4" would let a policy copy the question's arithmetic after "####"
# instead of doing it, and be scored correct (found in review).
_ANSWER_RE = re.compile(
    r"(?:[+-][ \t]*)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"  # 41, - 1,200, 1.50
    r"|(?:[+-][ \t]*)?(\d+)[ \t]*/[ \t]*(\d+)"  # 3/4, -5 / 6
)


def _normalize_answer(text: str) -> str | None:
    if not isinstance(text, str) or len(text) > 4 * MAX_EXPR_CHARS:
        return None
    s = text.strip()
    if "%" in s:
        return None  # "50%": 50 or 1/2? Ambiguous, so refused.
    s = s.replace("$", "")  # currency: "$1,200", "-$5"
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]  # sentence-final period: "12." -> "12"
    return s


def parse_answer_fraction(text: str) -> Fraction | None:
    """``parse_answer`` returning a ``Fraction`` (no sympy)."""
    s = _normalize_answer(text)
    if s is None or len(s) > MAX_EXPR_CHARS:
        return None
    m = _ANSWER_RE.fullmatch(s)
    if m is None:
        return None
    num, den = m.group(1), m.group(2)
    if den is not None:  # a fraction: in lowest terms, and not a whole number
        n, d = int(num), int(den)
        if d < 2 or math.gcd(n, d) != 1:
            return None
    return safe_eval_fraction(s)


def parse_answer(text: str) -> sympy.Rational | None:
    """Parses a final answer such as ``"$1,200"``, ``"12."``, ``" 3/4 "``, ``"-5"``, ``"1.50"``.

    Removes currency signs and a sentence-final period; what is left must be a number
    written out (an integer or decimal, or a fraction in lowest terms), which
    ``safe_eval`` then reads exactly. An expression (``"14+7-5"``, ``"8/4"``) is refused
    (``None``): the answer states the result, it does not restate the computation.
    Percentages (``"50%"``) are refused too: whether they mean 50 or 1/2 depends on the
    question, which a later, fuller verifier can take into account.
    """
    return _to_rational(parse_answer_fraction(text))
