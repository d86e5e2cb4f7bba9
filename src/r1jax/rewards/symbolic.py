"""Equivalence of parsed answers: exact numbers in-process, sympy in worker processes.

``compare`` walks two parsed answers (``latex.Num``/``Expr``/``Equation``/``Seq``/
``Interval``): tuples and intervals in order, sets and bare lists as sets, a list against
a tuple in order, a one-element collection against its element; a named equation
(``x = 3``) is its right side unless the other answer is an equation such as ``2x = 6``.

More structure: a ``Based`` numeral equals one of the same value in any base, and a
plain integer written with the same digits (``204`` answers ``204_5``, ``54`` does not);
``Relation``s (inequalities, chains) are read left to right after ``a > b > c`` is turned
into ``c < b < a``, and equal term by term with the same relations, or (one relation,
in sympy) when ``lhs - rhs`` differ by a positive factor (``-x > -1`` is ``x < 1``). A
one-variable relation reference takes its interval (``x >= 3`` is answered by
``[3, oo)``, ``(-oo, 2)`` by a pair ``(-oo, 2)``), but an interval reference is not
answered by a relation (Math-Verify's rule: the interval is what was asked). A set and a
tuple compare in order (``(3, 1)`` is not ``{1, 3}``); matrices only match matrices,
ratios only ratios; lists of named equations pair up by name in any order.

* ``FastLeaves`` (in-process, no sympy): ``Fraction`` equality; a ``%`` on one side also
  matches the value / 100. The precision policy for decimals against exact values has
  two rules, and no other tolerance:
  - *Rounding to the written digits*: a decimal with p places matches a value with no
    finite decimal expansion if it is that value rounded or truncated to p places and
    has at least two significant digits (``decimal_close``: 0.33, 0.333, 0.67, 0.66 for
    1/3 and 2/3, not 0.34; 3.14 and 3.1416 for pi, not 3.15; 0.0 is not 1/30 nor 0.1
    1/7). In sympy the same rule holds against irrationals.
  - *Float noise*: a decimal of more significant digits than ``FLOAT_DIGITS`` (15, what
    a binary float holds exactly: a longer one is a float printed in full) matches a
    value within ``REL_TOL`` (4 float64 epsilons, a few roundings) relative distance:
    0.30000000000000004 is 3/10 and 2.9999999999999996 is 3, while 142857143.0 is not
    10**9/7, nor 100000000000099.0 10**14 (digits a float holds are never noise).
  Otherwise two decimals, or a decimal and a terminating value, must be equal (0.5 is
  0.50; 0.33 is not 0.333). Identical expression texts are equal; anything else raises
  ``NeedsSympy``.
* ``SympyLeaves`` (in a worker): ``to_sympy`` builds sympy objects node by node from a
  tree ``latex.parse_tree`` whitelisted (no ``sympify``/``parse_expr``). Literals are
  exact (``0.1`` -> 1/10) and at most ``MAX_LITERAL_DIGITS`` long; a power is refused
  before it is built if a rational base would give over ``MAX_RESULT_DIGITS`` digits
  (``9**9**9**9``) or another base an exponent over ``MAX_EXPONENT`` (``x^{99999999}``),
  and a root of a rational over ``MAX_ROOT_DIGITS`` digits (``\\sqrt{10^{1999}+1}``:
  sympy would factor it); ``zoo``/``nan`` refuse. Each part of a number, as it is built,
  and each part of an expression at the test points below is sized first (``_sized``:
  mpmath at low precision, bottom-up) and refused beyond ``10**MAX_VALUE_DIGITS`` in
  magnitude, or below its inverse (``\\exp(-999!)``; 0 is fine): no
  sympy evaluation can then need unbounded precision (``\\exp(\\exp(\\exp(100)))``,
  ``\\pi^{\\pi^{\\pi^{9}}}``, ``e^{e^{e^{100}}}`` at x = 13/4), so such towers cost
  microseconds, not a worker's deadline. Equal when ``a - b`` is 0 after sympy's automatic
  simplification, ``expand``, ``simplify`` or ``equals(0)``, after a numeric test at
  fixed rational points (30 digits, evaluated there rather than substituted, compared in
  mpmath: ``10^{309}`` is no float overflow) has cheaply rejected unequal pairs. The decimal rule
  holds against irrationals too (3.14 vs pi). Equations are equal if ``l1 - r1`` and
  ``l2 - r2`` differ by a nonzero constant factor.

The pool: ``default_pool()``, a lazy ``host.RewardPool`` (min(2, CPUs) workers, closed
at exit), gives each pair ``DEADLINE_S``: a stuck worker is killed and replaced and the
verdict is False. Its ``score_fn`` imports and warms sympy while being unpickled in the
worker, before it reports ready, so the import eats no deadline and the parent never
imports sympy. Verdicts, timeouts too (a repeated hostile answer costs one deadline), go
to a bounded LRU cache keyed by the pair of extracted answers. A ``__main__`` file that
does not exist (``python -``) is hidden from ``spawn``, which would re-run it. Inside a
daemon process (a pool worker, which may not have children) sympy runs in-process,
under that pool's deadline.
"""

from __future__ import annotations

import ast
import atexit
import collections
import functools
import math
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Sequence
from fractions import Fraction

from r1jax.rewards import latex
from r1jax.rewards.host import RewardPool
from r1jax.rewards.latex import Based, Equation, Interval, Num, Relation, Seq

__all__ = [
    "CACHE_SIZE",
    "DEADLINE_S",
    "FastLeaves",
    "NeedsSympy",
    "Refused",
    "SympyLeaves",
    "cache_clear",
    "compare",
    "decimal_close",
    "default_pool",
    "equal_many",
    "make_pool",
    "shutdown",
    "to_sympy",
]

DEADLINE_S = 3.0  # seconds one sympy comparison may take before its worker is killed
CACHE_SIZE = 1 << 16  # verdicts kept (LRU)
MAX_LITERAL_DIGITS = 60  # longest number literal
MAX_EXPONENT = 100  # largest |n| in b**n for a base that is not a rational number
MAX_RESULT_DIGITS = 2000  # largest exact rational power, in digits
MAX_ROOT_INDEX = 100  # largest n in root(a, n) and largest q in b**(p/q)
FLOAT_DIGITS = 15  # significant digits a float64 holds exactly; a longer decimal is noisy
REL_TOL = Fraction(4, 2**52)  # ... and within this relative distance of a value, it is it
MAX_BINOM = 1000  # largest n and k in binom(n, k) (integers only)
MAX_VALUE_DIGITS = 10_000  # largest magnitude, in digits, of a number sympy evaluates
# (and smallest: a nonzero value below 10**-MAX_VALUE_DIGITS is refused too)
MAX_ROOT_DIGITS = 100  # largest rational, in digits, whose root is taken (sympy factors it)
_POINTS = ((3, 7), (-5, 11), (13, 4))  # fixed rational test points (num, den)


class NeedsSympy(Exception):
    """The fast path cannot settle this pair."""


class Refused(Exception):
    """The expression is outside the bounds we agree to build."""


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "!=": "!="}


def _ascending(r: Relation) -> Relation:
    """``a > b > c`` read from the right: ``c < b < a``."""
    if all(op in (">", ">=") for op in r.ops):
        return Relation(r.terms[::-1], tuple(_FLIP[op] for op in r.ops[::-1]))
    return r


_CONSTANTS_RE = re.compile(r"pi|oo|sqrt|root|exp|log|ln|abs|sin|cos|tan|cot|sec|csc|arc")


def _variable(t) -> bool:
    """Whether a term of an inequality is its unknown (``x``, ``f(x)``, ``|z|``), not a
    number (``3``, ``sqrt(2)``, ``-oo``)."""
    return isinstance(t, latex.Expr) and any(c.isalpha() for c in _CONSTANTS_RE.sub("", t.text))


def _as_interval(r: Relation) -> Interval | None:
    """A one-variable inequality as its interval: ``x >= 3`` is ``[3, oo)``."""
    terms, ops = _ascending(r)
    if not all(op in ("<", "<=") for op in ops):
        return None
    low, high = latex.Expr("-oo"), latex.Expr("oo")
    if len(terms) == 2 and _variable(terms[0]) and not _variable(terms[1]):
        return Interval(low, terms[1], False, ops[0] == "<=")
    if len(terms) == 2 and _variable(terms[1]) and not _variable(terms[0]):
        return Interval(terms[0], high, ops[0] == "<=", False)
    if len(terms) == 3 and _variable(terms[1]) and not (_variable(terms[0]) or _variable(terms[2])):
        return Interval(terms[0], terms[2], ops[0] == "<=", ops[1] == "<=")
    return None


def _open_pair(a, other):
    """``(lo, hi)`` is an open interval where the other answer is an interval or an
    inequality (``(-oo, 2)`` against ``x < 2``); elsewhere it stays a pair."""
    pair = isinstance(a, Seq) and a.kind == "tuple" and len(a.items) == 2
    leaves = pair and all(isinstance(t, (Num, latex.Expr)) for t in a.items)
    if leaves and isinstance(other, (Interval, Relation)):
        return Interval(a.items[0], a.items[1], False, False)
    return a


def _based_equal(a: Based, b) -> bool:
    if isinstance(b, Based):
        return int(a.digits, a.base) == int(b.digits, b.base)
    if isinstance(b, Num) and b.places is None and not b.percent and b.value.denominator == 1:
        return str(b.value.numerator) == a.digits  # "204" for 204_5: the digits asked for
    return False


def compare(a, b, leaves) -> bool:
    """Structural equality of two parsed answers; ``leaves`` compares leaves/equations."""
    if isinstance(a, Based) or isinstance(b, Based):
        return _based_equal(a, b) if isinstance(a, Based) else _based_equal(b, a)
    a, b = _open_pair(a, b), _open_pair(b, a)
    if isinstance(a, Relation) and isinstance(b, Interval):
        return False  # an interval is asked for: "x >= 3" is not "[3, oo)" (Math-Verify's rule)
    if isinstance(b, Relation) and isinstance(a, Interval):
        b = _as_interval(b) or b  # the reference "x >= 3" takes "[3, oo)"
    if isinstance(a, Relation) or isinstance(b, Relation):
        if not (isinstance(a, Relation) and isinstance(b, Relation)):
            return False
        a, b = _ascending(a), _ascending(b)
        if a.ops == b.ops and all(leaves.equal(x, y) for x, y in zip(a.terms, b.terms)):
            return True
        return len(a.ops) == len(b.ops) == 1 and leaves.relations(a, b)  # -x > -1 is x < 1
    if isinstance(a, Equation) and isinstance(b, Equation) and a.named and b.named:
        # "x = 3" and "y = 3" name different things
        return a.lhs == b.lhs and compare(a.rhs, b.rhs, leaves)
    general_a = isinstance(a, Equation) and not a.named
    general_b = isinstance(b, Equation) and not b.named
    if isinstance(a, Equation) and a.named and not general_b:
        a = a.rhs  # "x = 3" is the answer 3, unless compared with an equation
    if isinstance(b, Equation) and b.named and not general_a:
        b = b.rhs
    if isinstance(a, Seq) and len(a.items) == 1 and not isinstance(b, Seq):
        a = a.items[0]
    if isinstance(b, Seq) and len(b.items) == 1 and not isinstance(a, Seq):
        b = b.items[0]
    if isinstance(a, Seq) or isinstance(b, Seq):
        if not (isinstance(a, Seq) and isinstance(b, Seq)):
            return False
        if {"matrix", "ratio"} & {a.kind, b.kind} and a.kind != b.kind:
            return False
        unordered = {"set", "union"} & {a.kind, b.kind} or a.kind == b.kind == "list"
        unordered = unordered or all(  # "a_3 = 2, a_37 = 19": the names pair the values
            isinstance(x, Equation) and x.named for x in a.items + b.items
        )
        if unordered and {a.kind, b.kind} != {"set", "tuple"}:  # (3, 1) is not {1, 3}

            def covered(xs, ys):
                return all(any(compare(x, y, leaves) for y in ys) for x in xs)

            return covered(a.items, b.items) and covered(b.items, a.items)
        pairs = zip(a.items, b.items)
        return len(a.items) == len(b.items) and all(compare(x, y, leaves) for x, y in pairs)
    if isinstance(a, Interval) or isinstance(b, Interval):
        return (
            isinstance(a, Interval)
            and isinstance(b, Interval)
            and (a.lo_closed, a.hi_closed) == (b.lo_closed, b.hi_closed)
            and leaves.equal(a.lo, b.lo)
            and leaves.equal(a.hi, b.hi)
        )
    if isinstance(a, Equation) or isinstance(b, Equation):
        both = isinstance(a, Equation) and isinstance(b, Equation)
        return both and leaves.equations(a, b)
    return leaves.equal(a, b)


def _terminates(q: int) -> bool:  # whether 1/q has a finite decimal expansion
    for f in (2, 5):
        while q % f == 0:
            q //= f
    return q == 1


def decimal_close(decimal: Fraction, places: int, value: Fraction) -> bool:
    """Whether ``decimal`` (written with ``places`` places) is ``value`` rounded or cut.

    Only a decimal with at least two significant digits stands for a rounded value
    (``|decimal| * 10**places >= 10``: ``0.33``, ``3.3``, ``0.014``, ``3.14``): ``0.0``,
    ``0.1`` or ``0.05`` would otherwise match everything within half a unit of them.
    """
    unit = Fraction(1, 10**places)
    if abs(decimal) / unit < 10:
        return False
    return abs(decimal - value) <= unit / 2 or decimal / unit == math.trunc(value / unit)


def _float_noise(d: Num, other: Num) -> bool:
    """Whether ``d`` is a binary float printed in full (more significant digits than
    ``FLOAT_DIGITS``) within ``REL_TOL`` of ``other``: round-off in its last digits,
    never a difference that a float64 could have written (``123456789012345.6`` is not
    123456789012345)."""
    if d.places is None:
        return False
    digits = len(str(abs(d.value.numerator * 10**d.places // d.value.denominator)).rstrip("0"))
    return digits > FLOAT_DIGITS and abs(d.value - other.value) <= REL_TOL * abs(other.value)


class FastLeaves:
    """Leaf comparator settling numbers and identical texts; the rest needs sympy."""

    def equal(self, a, b) -> bool:
        if isinstance(a, Num) and isinstance(b, Num):
            if a.value == b.value:
                return True
            if _float_noise(a, b) or _float_noise(b, a):
                return True  # 0.30000000000000004 is 0.3
            if a.percent != b.percent:
                p, o = (a, b) if a.percent else (b, a)
                if p.value / 100 == o.value:
                    return True
            return any(
                d.places is not None
                and o.places is None
                and not _terminates(o.value.denominator)
                and decimal_close(d.value, d.places, o.value)
                for d, o in ((a, b), (b, a))
            )
        if a == b:
            return True
        raise NeedsSympy

    def equations(self, a, b) -> bool:
        if a == b:
            return True
        raise NeedsSympy

    def relations(self, a, b) -> bool:
        if all(isinstance(t, Num) for t in a.terms + b.terms):
            return False  # numbers only: compared term by term already
        raise NeedsSympy


def _pow(sympy, base, exp):
    if exp.is_Rational:
        p, q = int(exp.p), int(exp.q)
        if q > MAX_ROOT_INDEX:
            raise Refused("root index")
        if base.is_Rational:
            digits = math.log10(max(abs(int(base.p)), int(base.q), 2))
            if abs(Fraction(p, q)) * digits > MAX_RESULT_DIGITS:
                raise Refused("power too large")
            if q > 1 and digits > MAX_ROOT_DIGITS:  # sympy factors it to take the root
                raise Refused("root of a large number")
        elif abs(p) > MAX_EXPONENT:
            raise Refused("exponent")
    return sympy.Pow(base, exp)


# The functions sympy builds from the whitelist -> mpmath's, for ``_sized``.
_MPMATH = {"exp": "exp", "log": "log", "Abs": "fabs", "asin": "asin", "acos": "acos"}
_MPMATH.update((f, f) for f in ("sin", "cos", "tan", "cot", "sec", "csc", "atan"))
_MAX_MAG = math.ceil(MAX_VALUE_DIGITS * math.log2(10))  # in bits, as mpmath's mag()


@functools.cache
def _mp():
    """A private mpmath context at 64 bits: sizes only, never a verdict's digits."""
    import mpmath

    mp = mpmath.MPContext()
    mp.prec = 64
    return mp


def _sized(expr, at: dict, sizes: dict, sympy):
    """``expr``'s value at the point ``at`` (symbol -> ``Rational``), estimated with mpmath
    at low precision from its parts' values (kept in ``sizes``); ``None`` where unknown
    (a symbol not in ``at``, ``oo``). ``Refused`` if it is beyond ``10**MAX_VALUE_DIGITS``
    in magnitude, or not finite: sympy would need unbounded precision to evaluate it
    (``exp(exp(exp(100)))``, whose integer part has 10**43 digits) or anything built on
    it (``Abs(sin(exp(exp(100))))`` asks for a sign). Parts are sized before their
    parent, so each estimate is a cheap step on sized numbers."""
    if expr in sizes:
        return sizes[expr]
    mp = _mp()
    args = [_sized(arg, at, sizes, sympy) for arg in expr.args]
    try:
        if expr.is_Symbol:
            point = at.get(expr)
            value = None if point is None else mp.mpf(point.p) / point.q
        elif expr.is_Rational:
            value = mp.mpf(expr.p) / expr.q
        elif expr.is_NumberSymbol:  # pi, E
            value = mp.convert(expr.evalf(20))
        elif expr is sympy.I:
            value = mp.j
        elif expr.is_Atom or None in args:  # oo (zoo and nan refuse in to_sympy)
            value = None
        elif expr.is_Add:
            value = mp.fsum(args)
        elif expr.is_Mul:
            value = mp.fprod(args)
        elif expr.is_Pow:
            value = mp.power(*args)
        elif type(expr).__name__ in _MPMATH:
            value = getattr(mp, _MPMATH[type(expr).__name__])(*args)
        else:  # nothing the whitelist builds: a number that cannot be sized is not built
            raise Refused(f"cannot size {type(expr).__name__}")
    except (ZeroDivisionError, ValueError, OverflowError) as e:
        raise Refused("not finite") from e
    if value is not None and (not mp.isfinite(value) or mp.mag(value) > _MAX_MAG):
        raise Refused("too large")
    if value is not None and value != 0 and mp.mag(value) < -_MAX_MAG:
        raise Refused("too small")  # exp(-999!): sympy would evaluate it in full
    sizes[expr] = value
    return value


def _build(node, src: str, sympy, sizes: dict):
    """The sympy expression of a whitelisted tree, each part sized (``_sized``) before
    anything is built on it: sympy may evaluate a part while building its parent."""
    expr = _node(node, src, sympy, sizes)
    _sized(expr, {}, sizes, sympy)
    return expr


def _node(node, src: str, sympy, sizes: dict):
    if isinstance(node, ast.Constant):
        text = src[node.col_offset : node.end_col_offset]
        if len(text) > MAX_LITERAL_DIGITS:
            raise Refused("literal")
        value = Fraction(text) if isinstance(node.value, float) else Fraction(node.value)
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(node, ast.Name):
        constants = {"pi": sympy.pi, "oo": sympy.oo, "i": sympy.I}  # i: the imaginary unit
        return constants.get(node.id) or sympy.Symbol(node.id)
    if isinstance(node, ast.UnaryOp):
        operand = _build(node.operand, src, sympy, sizes)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _build(node.left, src, sympy, sizes), _build(node.right, src, sympy, sizes)
        op = node.op
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Pow):
            return _pow(sympy, left, right)
        if right == 0:
            raise Refused("division by zero")
        return left / right
    name, args = node.func.id, [_build(a, src, sympy, sizes) for a in node.args]  # ast.Call
    if name == "sqrt":
        return _pow(sympy, args[0], sympy.Rational(1, 2))
    if name == "root":
        if not (args[1].is_Integer and 2 <= args[1] <= MAX_ROOT_INDEX):
            raise Refused("root index")
        return _pow(sympy, args[0], sympy.Rational(1, int(args[1])))
    if name == "factorial":
        if not (args[0].is_Integer and 0 <= args[0] <= MAX_BINOM):
            raise Refused("factorial")
        return sympy.factorial(args[0])
    if name == "binom":
        if not all(a.is_Integer and 0 <= a <= MAX_BINOM for a in args):
            raise Refused("binomial")
        return sympy.binomial(*args)
    fns = {"exp": sympy.exp, "log": sympy.log, "ln": sympy.log, "abs": sympy.Abs}
    fns.update(sin=sympy.sin, cos=sympy.cos, tan=sympy.tan, cot=sympy.cot, sec=sympy.sec)
    fns.update(csc=sympy.csc, arcsin=sympy.asin, arccos=sympy.acos, arctan=sympy.atan)
    return fns[name](args[0])


def to_sympy(py_text: str):
    """A sympy expression for ``latex.to_python`` output; ``Refused`` when out of bounds."""
    import sympy

    tree = latex.parse_tree(py_text)
    if tree is None:
        raise Refused("not whitelisted")
    expr = _build(tree, py_text, sympy, {})
    if expr.has(sympy.zoo, sympy.nan):
        raise Refused("undefined")
    return expr


def _numeric(expr, sympy, at=None):
    """``expr``'s value (at the point ``at``: evaluated there, not substituted, so
    ``sqrt(x + 10**1999 + 1)`` never factors an exact 2000-digit number) as an mpmath
    complex (any exponent: ``10**400`` does not overflow as a Python complex would), or
    None when it is not a number."""
    try:
        re, im = sympy.N(expr, 30, subs=at or None).as_real_imag()
        if not (re.is_Number and im.is_Number):
            return None
        mp = _mp()
        return mp.mpc(mp.mpf(str(re)), mp.mpf(str(im)))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError):
        return None


def _close(a, b) -> bool:
    mp = _mp()
    if a is None or b is None or not (mp.isfinite(a) and mp.isfinite(b)):
        return True  # cannot tell: not a counter-example
    return abs(a - b) <= mp.mpf("1e-12") * max(1, abs(a), abs(b))


def _exprs_equal(a, b, sympy) -> bool:
    if a == b or (diff := a - b) == 0:
        return True
    symbols = sorted(diff.free_symbols, key=str)  # none: one "point", the numbers themselves
    points = [{s: sympy.Rational(p, q) + i for i, s in enumerate(symbols)} for p, q in _POINTS]
    for at in points if symbols else [{}]:  # a cheap numeric test first rejects most pairs
        sizes: dict = {}
        for expr in (a, b):  # before sympy evaluates them there
            _sized(expr, at, sizes, sympy)
        if not _close(_numeric(a, sympy, at), _numeric(b, sympy, at)):
            return False
    if sympy.expand(diff) == 0 or sympy.simplify(diff) == 0:
        return True
    return diff.equals(0) is True


class SympyLeaves:
    """Leaf comparator that settles everything with sympy (run it in a worker)."""

    def __init__(self):
        import sympy

        self.sympy = sympy

    def _value(self, leaf):
        if isinstance(leaf, Num):
            return self.sympy.Rational(leaf.value.numerator, leaf.value.denominator)
        return to_sympy(leaf.text)

    def _values(self, leaf, other) -> list:
        v = self._value(leaf)
        return [v, v / 100] if leaf.percent and not other.percent else [v]

    def equal(self, a, b) -> bool:
        sympy = self.sympy
        for x in self._values(a, b):
            for y in self._values(b, a):
                if _exprs_equal(x, y, sympy):
                    return True
        for dec, other in ((a, b), (b, a)):  # a decimal against an irrational value
            if getattr(dec, "places", None) is None or getattr(other, "places", None):
                continue
            y = self._value(other)
            if y.is_number and not (y.is_Rational and _terminates(int(y.q))):
                approx = sympy.N(y, 40)
                if approx.is_Float and decimal_close(dec.value, dec.places, Fraction(str(approx))):
                    return True
        return False

    def equations(self, a, b) -> bool:
        sympy = self.sympy
        da = self._value(a.lhs) - self._value(a.rhs)
        db = self._value(b.lhs) - self._value(b.rhs)
        if db == 0 or da == 0:
            return da == db
        if sympy.expand(da - db) == 0 or sympy.expand(da + db) == 0:
            return True
        ratio = sympy.simplify(da / db)
        return bool(ratio.is_number and ratio != 0 and ratio.is_finite)

    def relations(self, a, b) -> bool:
        """``d1 op 0`` and ``d2 op 0`` with d1 = k d2: k > 0 (and k < 0 for ``!=``)."""
        (da, op_a), (db, op_b) = _one_sided(self, a), _one_sided(self, b)
        if op_a != op_b or da == 0 or db == 0:
            return False
        ratio = self.sympy.simplify(da / db)
        if not (ratio.is_number and ratio.is_finite and ratio != 0):
            return False
        return bool(ratio > 0) or op_a == "!="


def _one_sided(leaves, r: Relation):
    """``a < b`` as ``(a - b, "<")``, ``a > b`` as ``(b - a, "<")``: ``(d, op)`` with
    op ``<``, ``<=`` or ``!=``, meaning ``d op 0``."""
    lhs, rhs = (leaves._value(t) for t in r.terms)
    op = r.ops[0]
    if op in (">", ">="):
        return rhs - lhs, _FLIP[op]
    return lhs - rhs, op


def warm_sympy() -> None:
    """Imports sympy and loads simplify's lazy modules (a worker does it before it reports
    ready, so the import eats no item's deadline)."""
    import sympy

    x = sympy.Symbol("x")
    sympy.simplify((x + 1) ** 2 - x**2 - 2 * x - 1)


# The pool's `score_fn` `(prediction, reference[, extracted]) -> (1.0 or 0.0,)`: the full
# verdict (`answers.settle`), which lives above this module. `answers` registers it when
# it is imported (`set_scorer`); a worker unpickles it by reference, importing `answers`.
_scorer = None


def set_scorer(score_fn) -> None:
    """Registers the pool's score function (`answers` does, on import)."""
    global _scorer
    _scorer = score_fn


def _score_fn():
    if _scorer is None:
        raise RuntimeError(
            "no sympy scorer registered: import r1jax.rewards.answers (or r1jax.rewards) first"
        )
    return _scorer


def make_pool(num_workers: int | None = None, deadline_s: float = DEADLINE_S) -> RewardPool:
    """A pool scoring ``(prediction, reference[, extracted])`` -> ``(1.0 or 0.0,)``."""
    if num_workers is None:
        num_workers = max(1, min(2, os.cpu_count() or 1))
    return RewardPool(
        _score_fn(), num_workers=num_workers, deadline_s=deadline_s, timeout_value=(0.0,)
    )


def score_batch(pool: RewardPool, items: list[tuple]):
    """``pool.score_batch(items)``, hiding from ``spawn`` a ``__main__`` file that does not
    exist (``python -``): new workers would fail trying to re-run it."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.exists(path) or getattr(main, "__spec__", None) is not None:
        return pool.score_batch(items)
    del main.__file__
    try:
        return pool.score_batch(items)
    finally:
        main.__file__ = path


_lock = threading.Lock()
_pool: RewardPool | None = None
_cache: collections.OrderedDict = collections.OrderedDict()


def default_pool() -> RewardPool:
    """The module's pool, created on first use and closed at exit (or by ``shutdown``)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = make_pool()
        return _pool


def shutdown() -> None:
    """Stops the module's worker processes (a later call starts new ones)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


atexit.register(shutdown)


def cache_clear() -> None:
    with _lock:
        _cache.clear()


def equal_many(pairs: Sequence[tuple[str, str]], pool: RewardPool | None = None) -> list[bool]:
    """Sympy verdicts for pairs of extracted answers: cached, the rest in ``pool``."""
    out: list[bool] = [False] * len(pairs)
    todo: dict[tuple[str, str], list[int]] = {}
    with _lock:
        for i, key in enumerate(pairs):
            if key in _cache:
                _cache.move_to_end(key)
                out[i] = _cache[key]
            else:
                todo.setdefault(key, []).append(i)
    if todo:
        keys = list(todo)
        if pool is None and multiprocessing.current_process().daemon:
            rows = [_score_fn()(*key) for key in keys]  # in a pool's worker: its deadline holds
        else:
            rows = score_batch(pool or default_pool(), keys)
        with _lock:
            for key, row in zip(keys, rows):
                _cache[key] = verdict = bool(row[0] > 0.5)
                for i in todo[key]:
                    out[i] = verdict
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return out
