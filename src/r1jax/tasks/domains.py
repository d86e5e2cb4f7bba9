"""Ten synthetic reasoning domains for continual learning (``DOMAINS``, in curriculum order).

Every domain is a registered task (``register_task(name, Class)``) and every question has
the same shape, so that a small model cannot keep the domains apart by surface form, only
by the rule word at the start::

    <Rule>: <numbers and a short clause>.[ <distractor>.] What is the result?

    Add and subtract: 14 + 7 - 5. What is the result?
    Fractions: 1/2 + 1/3. What is the result?
    Solve for x: 3x + 5 = 20. What is the result?
    Fix the wrong step: 7*4=28, 28-5=24, 24+3=27. What is the result?

Each domain has two spellings of its rule word (``headers``; no spelling is shared
between domains). Sequential fine-tuning on them in ``DOMAINS`` order therefore makes
them interfere (the continual experiment).

Reference solutions are in the default verifier's format (``rewards.EquationVerifier``):
one true equation over exact rationals per line, no spaces, units or variables
(``12*5=60``, ``45*20/100=9``, ``1/2+1/3=5/6``), then ``#### <answer>``. Answers are
integers, except in ``fractions`` (reduced fractions such as ``5/6``, or integers).
``Problem.min_steps`` is the number of computation lines and ``Problem.subgoals`` the
values of all but the last.

Levels (``level_weights`` default to 60/30/10):
  1. one computation step;
  2. two or three steps;
  3. three to five steps; with probability ``distractor_prob`` one distractor sentence
     (``DISTRACTORS``, e.g. "Ignore 9.") names a number that no step uses.

Numbers stay small for a tiny character-level model: written operands mostly 2..20,
step results at most 200 (``units`` allows conversions such as ``3*1000=3000`` and sums
up to 1000; ``fractions`` keeps every denominator at most 12). Questions have at most
``MAX_QUESTION_CHARS`` characters and solutions at most ``MAX_SOLUTION_CHARS`` (so the
prompt and the reference plus EOS fit the embedded default's 160 + 96 tokens), all
printable ASCII. Train and held-out questions are disjoint by hash (``sample_in_split``).

``debugging`` shows a short worked solution with exactly one false step (the steps after
it follow from the wrong value, as a real slip propagates); its reference rewrites the
steps from the wrong one onward correctly and answers the corrected final value.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from r1jax.rewards.verifier import EquationVerifier
from r1jax.tasks.base import Problem, check_split, register_task, sample_in_split

__all__ = [
    "DISTRACTORS",
    "DOMAINS",
    "DOMAIN_CLASSES",
    "MAX_QUESTION_CHARS",
    "MAX_SOLUTION_CHARS",
    "QUESTION_TAIL",
    "AddSubTask",
    "DebuggingTask",
    "DomainTask",
    "FractionsTask",
    "LinearTask",
    "MulDivTask",
    "PercentTask",
    "PhysicsTask",
    "RatesTask",
    "SequencesTask",
    "Step",
    "UnitsTask",
]

DOMAINS = (
    "addsub",
    "muldiv",
    "fractions",
    "percent",
    "units",
    "linear",
    "sequences",
    "rates",
    "physics",
    "debugging",
)
QUESTION_TAIL = "What is the result?"  # the last sentence of every question
DISTRACTORS = ("Ignore {d}.", "Not used: {d}.", "Extra number: {d}.")  # level 3 only
MAX_QUESTION_CHARS = 140  # + "\n" fits the default's 160 prompt tokens
MAX_SOLUTION_CHARS = 79  # + EOS fits the default's 96 completion tokens with room
LEVELS = (1, 2, 3)


class _Reject(Exception):
    """Internal: this draw broke a constraint; draw again."""


# ---------------------------------------------------------------------------
# Steps.


def fmt(x) -> str:
    """An exact rational as the verifier reads it: ``"7"`` or ``"5/6"``."""
    x = Fraction(x)
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


class Step(NamedTuple):
    """One computation line: ``lhs`` (an expression without spaces) equals ``value``."""

    lhs: str
    value: Fraction

    def text(self) -> str:
        return f"{self.lhs}={fmt(self.value)}"


_APPLY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}
_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}


def op(a, o: str, b, exact: bool = True) -> Step:
    """The step ``a<o>b=value``. ``exact``: the value must be an integer. Operands and
    value must be positive. A fraction divisor is refused: ``a/b/c`` would not mean ``a/(b/c)``."""
    a, b = Fraction(a), Fraction(b)
    if o == "/" and b.denominator != 1:
        raise ValueError(f"division by the fraction {fmt(b)} needs parentheses")
    value = _APPLY[o](a, b)
    if a <= 0 or b <= 0 or value <= 0 or (exact and value.denominator != 1):
        raise _Reject
    return Step(f"{fmt(a)}{o}{fmt(b)}", value)


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]``; rejects the draw when the range is empty."""
    if hi < lo:
        raise _Reject
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _n_steps(rng: np.random.Generator, level: int) -> int:
    """Computation steps of a chain problem: 1; 2-3; 3-5 (mostly 4)."""
    if level == 1:
        return 1
    if level == 2:
        return 2 + int(rng.integers(2))
    return int(rng.choice((3, 4, 5), p=(0.25, 0.5, 0.25)))


def _addsub_step(rng, v: int, cap: int, hi: int = 20, avoid=None) -> tuple[str, int]:
    """``(op, operand)`` adding to or subtracting from ``v`` (result in 1..cap), never
    ``avoid`` (the step that would undo the previous one)."""
    ops = []
    if v + 2 <= cap:
        ops.append("+")
    if v >= 3:
        ops.append("-")
    if not ops:
        raise _Reject
    for _ in range(4):
        o = _pick(rng, ops)
        b = _int(rng, 2, min(hi, cap - v)) if o == "+" else _int(rng, 2, min(hi, v - 1))
        if (o, b) != avoid:
            return o, b
    raise _Reject


def _muldiv_step(rng, v: int, cap: int, avoid=None) -> tuple[str, int]:
    """``(op, operand)`` multiplying ``v`` (by 2..9) or dividing it exactly (by 2..12)."""
    cands = {
        "*": list(range(2, min(9, cap // v) + 1)),
        "/": [k for k in range(2, 13) if v % k == 0 and v // k >= 2],
    }
    if avoid is not None and avoid[0] in cands:  # never undo the previous step
        cands[avoid[0]] = [k for k in cands[avoid[0]] if k != avoid[1]]
    ops = [o for o in "*/" if cands[o]]
    if not ops:
        raise _Reject
    o = _pick(rng, ops)
    return o, _pick(rng, cands[o])


# ---------------------------------------------------------------------------
# The common base.


class DomainTask:
    """One synthetic domain (module doc). Subclasses set ``name``, ``headers`` (spellings
    of the rule word) and implement ``_draw(rng, level) -> (body, [Step])``; the base
    class adds the shared skeleton, the distractor, the length checks and the split.

    Args:
      test_fraction: share of the question space held out (hash split), in (0, 1).
      level_weights: mixture over levels 1..3 (three non-negative weights, sum > 0).
      distractor_prob: probability that a level-3 question gets a distractor sentence.
    """

    name = ""
    headers: tuple[str, ...] = ()
    reward_parts = ("correctness", "efficiency", "novelty", "subgoal")
    max_value = 200  # largest step result

    def __init__(
        self,
        test_fraction: float = 0.1,
        level_weights: tuple[float, ...] = (0.6, 0.3, 0.1),
        distractor_prob: float = 0.5,
    ):
        cls = type(self).__name__
        test_fraction = _number(cls, "test_fraction", test_fraction)
        distractor_prob = _number(cls, "distractor_prob", distractor_prob)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"{cls}: test_fraction must be in (0, 1), got {test_fraction}")
        try:
            weights = tuple(float(w) for w in level_weights)
        except (TypeError, ValueError):
            raise ValueError(
                f"{cls}: level_weights must be 3 non-negative numbers, got {level_weights!r}"
            ) from None
        if (
            len(weights) != 3
            or not all(math.isfinite(w) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise ValueError(
                f"{cls}: level_weights must be 3 non-negative numbers with a positive sum "
                f"(levels 1, 2, 3), got {level_weights!r}"
            )
        if not 0.0 <= distractor_prob <= 1.0:
            raise ValueError(f"{cls}: distractor_prob must be in [0, 1], got {distractor_prob}")
        self.test_fraction = float(test_fraction)
        self.level_weights = weights
        self.distractor_prob = float(distractor_prob)
        self.verifier = self._make_verifier()

    def _make_verifier(self) -> EquationVerifier:
        return EquationVerifier()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(test_fraction={self.test_fraction}, "
            f"level_weights={self.level_weights}, distractor_prob={self.distractor_prob})"
        )

    # -- Task protocol -----------------------------------------------------

    def sample(self, rng: np.random.Generator, level: int, split: str) -> Problem:
        check_split(split)
        if level not in LEVELS:
            raise ValueError(f"{self.name}: level must be 1, 2 or 3, got {level!r}")
        return sample_in_split(lambda: self._generate(rng, level), split, self.test_fraction)

    def format_prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def reference_answer(self, problem: Problem) -> str:
        return problem.answer

    # -- generation --------------------------------------------------------

    def _generate(self, rng: np.random.Generator, level: int) -> Problem:
        for _ in range(1000):
            try:
                body, steps = self._draw(rng, level)
            except _Reject:
                continue
            if any(s.value > self.max_value for s in steps):
                continue
            lines = [s.text() for s in steps]
            answer = fmt(steps[-1].value)
            solution = "\n".join(lines + [f"#### {answer}"])
            extra = ""
            if level == 3 and rng.random() < self.distractor_prob:
                used = set(_numbers(body)) | set(_numbers(solution))
                free = [d for d in range(2, 21) if str(d) not in used]
                if free:
                    extra = " " + _pick(rng, DISTRACTORS).format(d=_pick(rng, free))
            question = f"{_pick(rng, self.headers)}: {body}.{extra} {QUESTION_TAIL}"
            if len(question) > MAX_QUESTION_CHARS or len(solution) > MAX_SOLUTION_CHARS:
                continue
            return Problem(
                question=question,
                answer=answer,
                solution=solution,
                level=level,
                min_steps=len(steps),
                subgoals=tuple(fmt(s.value) for s in steps[:-1]),
            )
        raise RuntimeError(f"{self.name}: generator failed to produce a level-{level} problem")

    def _draw(self, rng: np.random.Generator, level: int) -> tuple[str, list[Step]]:
        raise NotImplementedError


def _number(cls: str, name: str, value) -> float:
    """``value`` as a finite float; ``ValueError`` naming the argument otherwise."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if isinstance(value, (bool, str, bytes)) or not math.isfinite(out):
        raise ValueError(f"{cls}: {name} must be a finite number, got {value!r}")
    return out


def _numbers(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        if ch.isdigit():
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


# ---------------------------------------------------------------------------
# 1. addsub: chains of additions and subtractions.


class AddSubTask(DomainTask):
    """``Add and subtract: 14 + 7 - 5.`` -> ``14+7=21``, ``21-5=16``."""

    name = "addsub"
    headers = ("Add and subtract", "Plus and minus")

    def _draw(self, rng, level):
        v = _int(rng, 2, 60 if level == 1 else 30)
        parts, steps, prev = [str(v)], [], None
        for _ in range(_n_steps(rng, level)):
            o, b = _addsub_step(rng, v, self.max_value, avoid=prev)
            steps.append(op(v, o, b))
            parts.append(f"{o} {b}")
            v, prev = int(steps[-1].value), (_INVERSE[o], b)
        return " ".join(parts), steps


# ---------------------------------------------------------------------------
# 2. muldiv: chains of multiplications and exact divisions (left to right).


_PRODUCTS = tuple((a, b) for a in range(2, 101) for b in range(2, 21) if a * b <= 200)
_QUOTIENTS = tuple((b, q) for b in range(2, 21) for q in range(2, 101) if q * b <= 200)


class MulDivTask(DomainTask):
    """``Multiply and divide: 6 * 8 / 4.`` -> ``6*8=48``, ``48/4=12``."""

    name = "muldiv"
    headers = ("Multiply and divide", "Times and divide")

    def _draw(self, rng, level):
        cap = self.max_value
        if level == 1:
            if rng.random() < 0.5:
                a, b = _pick(rng, _PRODUCTS)
                return f"{a} * {b}", [op(a, "*", b)]
            b, q = _pick(rng, _QUOTIENTS)
            return f"{q * b} / {b}", [op(q * b, "/", b)]
        v = _int(rng, 2, 20)
        parts, steps, prev = [str(v)], [], None
        for _ in range(_n_steps(rng, level)):
            o, b = _muldiv_step(rng, v, cap, avoid=prev)
            steps.append(op(v, o, b))
            parts.append(f"{o} {b}")
            v, prev = int(steps[-1].value), (_INVERSE[o], b)
        return " ".join(parts), steps


# ---------------------------------------------------------------------------
# 3. fractions: add, subtract, multiply fractions; answers reduced.

_FRACTIONS = tuple(
    Fraction(p, q) for q in range(2, 13) for p in range(1, q) if math.gcd(p, q) == 1
)  # the 45 reduced proper fractions with denominators 2..12


_INTEGERS = (Fraction(1), Fraction(2), Fraction(3))  # whole-number operands ("1 - 2/5")
_FRACTION_MOVES: dict[Fraction, tuple[tuple[str, Fraction, Fraction], ...]] = {}


def _fraction_moves(v: Fraction) -> tuple[tuple[str, Fraction, Fraction], ...]:
    """``(op, operand, result)`` from ``v`` with a result in (0, 3], denominator <= 12 and
    numerator <= 30 (cached: the reachable values are few). Operands are proper fractions
    and, after a fraction, the whole numbers 1..3 (never ``*1``)."""
    moves = _FRACTION_MOVES.get(v)
    if moves is None:
        operands = _FRACTIONS + (() if v.denominator == 1 else _INTEGERS)
        moves = tuple(
            (o, f, r)
            for o in "+-*"
            for f in operands
            if not (o == "*" and f == 1)
            if 0 < (r := _APPLY[o](v, f)) <= 3 and r.denominator <= 12 and r.numerator <= 30
        )
        _FRACTION_MOVES[v] = moves
    return moves


class FractionsTask(DomainTask):
    """``Fractions: 1/2 + 1/3.`` -> ``1/2+1/3=5/6``; answers like ``5/6`` (or integers).

    Operands are reduced proper fractions with denominators of at most 12, or the whole
    numbers 1..3 next to a fraction; every result's denominator is at most 12 and results
    stay in (0, 3]. A product after a sum is written with parentheses in the question
    (``(1/2 + 1/3) * 3/5``); the steps go left to right.
    """

    name = "fractions"
    headers = ("Fractions", "Fraction math")
    max_value = 3

    def _draw(self, rng, level):
        n = _n_steps(rng, level)
        if level == 3 and n == 5:
            n = 4  # five fraction lines rarely fit the solution length
        v = _pick(rng, _INTEGERS if rng.random() < 0.15 else _FRACTIONS)
        expr, additive, steps = fmt(v), False, []
        for _ in range(n):
            moves = _fraction_moves(v)
            if not moves:
                raise _Reject
            o, f, _ = _pick(rng, moves)
            if o == "*" and additive:
                expr = f"({expr})"
            expr = f"{expr} {o} {fmt(f)}"
            additive = o in "+-"  # the top-level operation of expr
            steps.append(op(v, o, f, exact=False))
            v = steps[-1].value
        return expr, steps


# ---------------------------------------------------------------------------
# 4. percent: p% of n, percent of a whole, increases and decreases.

_PERCENTS = tuple(p for p in range(2, 100) if math.gcd(p, 100) >= 4 or p % 5 == 0)


def _percent_of(rng, p: int | None = None, lo: int = 2, hi: int = 200) -> tuple[int, int]:
    """``(p, n)`` with ``n*p/100`` a positive integer, ``n`` in lo..hi."""
    if p is None:
        p = _pick(rng, _PERCENTS)
    s = 100 // math.gcd(p, 100)  # n must be a multiple of s
    k = _int(rng, max(1, -(-lo // s)), hi // s)
    return p, k * s


def _pct(n: int, p: int) -> Step:
    return Step(f"{n}*{p}/100", Fraction(n * p, 100))


class PercentTask(DomainTask):
    """``Percent: 20% of 45.`` -> ``45*20/100=9``; ``45 increased by 20%`` -> ``45*20/100=9``,
    ``45+9=54``."""

    name = "percent"
    headers = ("Percent", "Percentages")

    def _draw(self, rng, level):
        cap = self.max_value
        if level == 1:
            p, n = _percent_of(rng)
            if rng.random() < 0.6:
                return f"{p}% of {n}", [_pct(n, p)]
            a = n * p // 100  # a out of n is p percent
            return f"{a} out of {n} as a percent", [Step(f"{a}*100/{n}", Fraction(p))]
        form = _pick(
            rng,
            ("change", "plus", "of_of", "two") if level == 2 else ("twice", "then", "two_minus"),
        )
        if form in ("change", "twice", "then"):
            p, n = _percent_of(rng, hi=150)
            up = rng.random() < 0.5
            x = _pct(n, p)
            steps = [x, op(n, "+" if up else "-", int(x.value))]
            body = f"{n} {'increased' if up else 'decreased'} by {p}%"
            v = int(steps[-1].value)
            if form == "twice":
                up2 = not up if rng.random() < 0.7 else up
                p2 = _pick(rng, _PERCENTS)
                if (v * p2) % 100:
                    raise _Reject
                y = _pct(v, p2)
                steps += [y, op(v, "+" if up2 else "-", int(y.value))]
                body += f", then {'increased' if up2 else 'decreased'} by {p2}%"
            elif form == "then":
                o, m = _addsub_step(rng, v, cap)
                steps.append(op(v, o, m))
                body += f", then {'plus' if o == '+' else 'minus'} {m}"
            return body, steps
        if form == "plus":
            p, n = _percent_of(rng)
            x = _pct(n, p)
            o, m = _addsub_step(rng, int(x.value), cap)
            return f"{p}% of {n}, {'plus' if o == '+' else 'minus'} {m}", [
                x,
                op(int(x.value), o, m),
            ]
        if form == "of_of":
            q, n = _percent_of(rng)
            x = _pct(n, q)
            p = _pick(rng, _PERCENTS)
            if (int(x.value) * p) % 100:
                raise _Reject
            return f"{p}% of {q}% of {n}", [x, _pct(int(x.value), p)]
        # two / two_minus: p% of a plus q% of b (, minus m)
        p, a = _percent_of(rng, hi=100)
        q, b = _percent_of(rng, hi=100)
        x, y = _pct(a, p), _pct(b, q)
        steps = [x, y, op(int(x.value), "+", int(y.value))]
        body = f"{p}% of {a} plus {q}% of {b}"
        if form == "two_minus":
            v = int(steps[-1].value)
            m = _int(rng, 2, min(20, v - 1))
            steps.append(op(v, "-", m))
            body += f", minus {m}"
        return body, steps


# ---------------------------------------------------------------------------
# 5. units: conversions between a big and a small unit.

_CONVERSIONS = (  # (big unit, small unit, small units per big unit)
    ("m", "cm", 100),
    ("cm", "mm", 10),
    ("km", "m", 1000),
    ("kg", "g", 1000),
    ("L", "mL", 1000),
    ("h", "min", 60),
    ("min", "s", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("feet", "inches", 12),
    ("yards", "feet", 3),
    ("years", "months", 12),
    ("lb", "oz", 16),
    ("gal", "qt", 4),
)
_MIXED = tuple(c for c in _CONVERSIONS if 4 <= c[2] <= 100)  # "3 m 20 cm"-style amounts


def _big_max(f: int) -> int:
    """Largest amount of the big unit: small products, ``v*1000`` up to 9000."""
    return 9 if f >= 1000 else min(30, 1000 // f)


class UnitsTask(DomainTask):
    """``Units: 3 m 20 cm in cm.`` -> ``3*100=300``, ``300+20=320``."""

    name = "units"
    headers = ("Units", "Unit conversion")
    max_value = 9000  # 9*1000; mixed amounts stay at most 1000 (``_MIX_MAX``)
    _MIX_MAX = 1000

    @staticmethod
    def _to(rng, amount: str, unit: str) -> str:
        return f"{amount} in {unit}" if rng.random() < 0.5 else f"convert {amount} to {unit}"

    def _draw(self, rng, level):
        body, steps = self._draw_form(rng, level)
        if level > 1 and any(s.value > self._MIX_MAX for s in steps):
            raise _Reject
        return body, steps

    def _draw_form(self, rng, level):
        if level == 1:
            big, small, f = _pick(rng, _CONVERSIONS)
            v = _int(rng, 2, _big_max(f))
            if rng.random() < 0.5:
                return self._to(rng, f"{v} {big}", small), [op(v, "*", f)]
            return self._to(rng, f"{v * f} {small}", big), [op(v * f, "/", f)]
        big, small, f = _pick(rng, _MIXED)
        top = min(20, self._MIX_MAX // f)
        a = _int(rng, 2, top)
        b = _int(rng, 2, min(f - 1, 99))
        x = op(a, "*", f)
        forms = ("mixed", "minus", "sum_big", "mixed_plus", "mixed_times")
        if level == 3:
            forms = ("mixed_plus", "mixed_times", "two_mixed", "mixed_plus_big")
        form = _pick(rng, forms)
        if form == "mixed":
            return self._to(rng, f"{a} {big} {b} {small}", small), [x, op(a * f, "+", b)]
        if form == "minus":
            return self._to(rng, f"{a} {big} minus {b} {small}", small), [x, op(a * f, "-", b)]
        if form == "sum_big":  # two amounts of the small unit, in the big unit
            r = _int(rng, 2, top)
            s = r * f
            p = _int(rng, 2, s - 2)
            body = self._to(rng, f"{p} {small} plus {s - p} {small}", big)
            return body, [op(p, "+", s - p), op(s, "/", f)]
        y = op(a * f, "+", b)
        if form == "mixed_plus":
            c = _int(rng, 2, min(f - 1, 99))
            body = self._to(rng, f"{a} {big} {b} {small} plus {c} {small}", small)
            return body, [x, y, op(y.value, "+", c)]
        if form == "mixed_times":
            k = _int(rng, 2, 5)
            body = self._to(rng, f"{a} {big} {b} {small} times {k}", small)
            return body, [x, y, op(y.value, "*", k)]
        a2 = _int(rng, 2, top)
        x2 = op(a2, "*", f)
        if form == "mixed_plus_big":
            body = self._to(rng, f"{a} {big} {b} {small} plus {a2} {big}", small)
            return body, [x, y, x2, op(y.value, "+", x2.value)]
        b2 = _int(rng, 2, min(f - 1, 99))  # two_mixed
        y2 = op(x2.value, "+", b2)
        body = self._to(rng, f"{a} {big} {b} {small} plus {a2} {big} {b2} {small}", small)
        steps = [x, y, x2, y2, op(y.value, "+", y2.value)]
        return body, steps


# ---------------------------------------------------------------------------
# 6. linear: solve one linear equation in x (the question has "=", the steps are numeric).


def _term(a: int) -> str:
    return "x" if a == 1 else f"{a}x"


class LinearTask(DomainTask):
    """``Solve for x: 3x + 5 = 20.`` -> ``20-5=15``, ``15/3=5``."""

    name = "linear"
    headers = ("Solve for x", "Linear equation")

    def _draw(self, rng, level):
        cap = self.max_value
        if level == 1:
            form = _pick(rng, ("x+a", "a+x", "x-a", "ax", "x/a"))
            a = _int(rng, 2, 20)
            if form in ("x+a", "a+x"):
                x = _int(rng, 2, 40)
                lhs = f"x + {a}" if form == "x+a" else f"{a} + x"
                return f"{lhs} = {x + a}", [op(x + a, "-", a)]
            if form == "x-a":
                x = _int(rng, a + 2, a + 40)
                return f"x - {a} = {x - a}", [op(x - a, "+", a)]
            if form == "ax":
                x = _int(rng, 2, min(40, cap // a))
                return f"{a}x = {a * x}", [op(a * x, "/", a)]
            c = _int(rng, 2, min(20, cap // a))
            return f"x/{a} = {c}", [op(c, "*", a)]
        x = _int(rng, 2, 20)
        a = _int(rng, 2, 9)
        b = _int(rng, 2, 20)
        if level == 2:
            form = _pick(rng, ("ax+b", "ax-b", "x/a+b", "a(x+b)", "ax+b=cx+d", "a(x-b)+c"))
        else:
            form = _pick(rng, ("ax+b=cx+d", "a(x+b)-c", "then", "eq_then"))
        if form == "ax+b":
            c = a * x + b
            return f"{a}x + {b} = {c}", [op(c, "-", b), op(a * x, "/", a)]
        if form == "ax-b":
            c = a * x - b
            return f"{a}x - {b} = {c}", [op(c, "+", b), op(a * x, "/", a)]
        if form == "x/a+b":
            q = _int(rng, 2, 20)
            c = q + b
            return f"x/{a} + {b} = {c}", [op(c, "-", b), op(q, "*", a)]
        if form == "a(x+b)":
            c = a * (x + b)
            return f"{a}(x + {b}) = {c}", [op(c, "/", a), op(x + b, "-", b)]
        if form == "a(x-b)+c":
            b = _int(rng, 2, min(20, x - 1))
            c = _int(rng, 2, 20)
            d = a * (x - b) + c
            steps = [op(d, "-", c), op(d - c, "/", a), op(x - b, "+", b)]
            return f"{a}(x - {b}) + {c} = {d}", steps
        if form == "a(x+b)-c":
            c = _int(rng, 2, min(20, a * (x + b) - 2))
            d = a * (x + b) - c
            steps = [op(d, "+", c), op(d + c, "/", a), op(x + b, "-", b)]
            return f"{a}(x + {b}) - {c} = {d}", steps
        if form in ("ax+b=cx+d", "eq_then"):  # a > c: (d - b) / (a - c) = x
            c = _int(rng, 1, a - 2)
            d = (a - c) * x + b
            steps = [op(d, "-", b), op(a, "-", c), op(d - b, "/", a - c)]
            body = f"{_term(a)} + {b} = {_term(c)} + {d}"
        else:  # then: ax + b = c, then e*x + f
            c = a * x + b
            steps = [op(c, "-", b), op(a * x, "/", a)]
            body = f"{a}x + {b} = {c}"
        if form in ("then", "eq_then"):
            e = _int(rng, 2, 9)
            g = _int(rng, 2, 20)
            steps += [op(e, "*", x), op(e * x, "+", g)]
            body += f", then find {e}x + {g}"
        return body, steps


# ---------------------------------------------------------------------------
# 7. sequences: the next terms of arithmetic, geometric and second-order sequences.


class SequencesTask(DomainTask):
    """``Sequence: 3, 7, 11, 15; next term.`` -> ``15+4=19``.

    Levels 1-2: arithmetic sequences, 1 (level 1) or 2-3 (level 2) terms ahead, one
    addition or subtraction per term. Level 3: geometric sequences (the ratio, then one
    multiplication or division per term, 2-3 terms ahead) or second-order ones (the
    differences grow by a constant: the last two differences, their difference, the
    next difference, the next term).
    """

    name = "sequences"
    headers = ("Sequence", "Number pattern")

    @staticmethod
    def _ask(terms, k: int) -> str:
        ahead = "next term" if k == 1 else f"{k} terms ahead"
        return ", ".join(str(t) for t in terms) + f"; {ahead}"

    def _draw(self, rng, level):
        cap = self.max_value
        if level < 3:
            k = 1 if level == 1 else _int(rng, 2, 3)
            shown = _int(rng, 3, 5)
            d = _int(rng, 2, 15)
            a = _int(rng, 2, 60 if level == 1 else 40)
            up = rng.random() < 0.5
            if not up:  # decreasing: start high enough that every term stays >= 1
                a += d * (shown + k - 1)
            terms = [a + (d if up else -d) * i for i in range(shown)]
            steps, v = [], terms[-1]
            for _ in range(k):
                steps.append(op(v, "+" if up else "-", d))
                v = int(steps[-1].value)
            return self._ask(terms, k), steps
        if rng.random() < 0.5:  # geometric
            k = _int(rng, 2, 3)
            r = _pick(rng, (2, 2, 3))
            shown = _int(rng, 3, 4)
            seq = [_int(rng, 1, 5)]
            for _ in range(shown + k - 1):
                seq.append(seq[-1] * r)
            if seq[-1] > cap or seq[0] * r < 2:
                raise _Reject
            if rng.random() < 0.5:  # increasing
                terms = seq[:shown]
                steps = [op(terms[1], "/", terms[0])]
                for i in range(k):
                    steps.append(op(seq[shown - 1 + i], "*", r))
            else:
                seq = seq[::-1]
                terms = seq[:shown]
                steps = [op(terms[0], "/", terms[1])]
                for i in range(k):
                    steps.append(op(seq[shown - 1 + i], "/", r))
            return self._ask(terms, k), steps
        a = _int(rng, 2, 30)  # second order: differences d0, d0+c, d0+2c, ...
        d0 = _int(rng, 1, 9)
        c = _int(rng, 1, 5)
        terms = [a]
        for i in range(3):
            terms.append(terms[-1] + d0 + c * i)
        t2, t3, t4 = terms[1:]
        d2, d3 = t3 - t2, t4 - t3
        steps = [
            Step(f"{t4}-{t3}", Fraction(d3)),
            Step(f"{t3}-{t2}", Fraction(d2)),
            Step(f"{d3}-{d2}", Fraction(c)),
            op(d3, "+", c),
            op(t4, "+", d3 + c),
        ]
        return self._ask(terms, 1), steps


# ---------------------------------------------------------------------------
# 8. rates: amount = rate * time, work together, fill and leak.

_RATE_ITEMS = (  # (things, time unit, time unit plural)
    ("liters", "minute", "minutes"),
    ("pages", "hour", "hours"),
    ("cups", "minute", "minutes"),
    ("boxes", "day", "days"),
    ("bricks", "hour", "hours"),
    ("tickets", "day", "days"),
    ("cards", "minute", "minutes"),
    ("jars", "hour", "hours"),
)


class RatesTask(DomainTask):
    """``Rates: liters at 4 per minute for 12 minutes.`` -> ``4*12=48``."""

    name = "rates"
    headers = ("Rates", "Rate problem")

    def _draw(self, rng, level):
        cap = self.max_value
        th, u, us = _pick(rng, _RATE_ITEMS)
        if level == 1:
            r = _int(rng, 2, 20)
            t = _int(rng, 2, min(20, cap // r))
            form = _pick(rng, ("total", "time", "rate"))
            if form == "total":
                return f"{th} at {r} per {u} for {t} {us}", [op(r, "*", t)]
            if form == "time":
                return f"{us} for {r * t} {th} at {r} per {u}", [op(r * t, "/", r)]
            return f"{th} per {u} for {r * t} {th} in {t} {us}", [op(r * t, "/", t)]
        r1 = _int(rng, 2, 15)
        r2 = _int(rng, 2, 15)
        t1 = _int(rng, 2, 12)
        t2 = _int(rng, 2, 12)
        if level == 2:
            form = _pick(rng, ("together", "together_time", "net", "phases", "left"))
        else:
            form = _pick(rng, ("helper", "finish", "net_time", "phases_left"))
        if form == "together":
            s = op(r1, "+", r2)
            return f"{th} at {r1} and {r2} per {u} together for {t1} {us}", [
                s,
                op(s.value, "*", t1),
            ]
        if form == "together_time":
            s = r1 + r2
            return f"{us} for {s * t1} {th} at {r1} and {r2} per {u} together", [
                op(r1, "+", r2),
                op(s * t1, "/", s),
            ]
        if form == "net":
            s = op(r1, "-", r2)
            return f"{th} after {t1} {us}, {r1} in and {r2} out per {u}", [
                s,
                op(s.value, "*", t1),
            ]
        if form in ("phases", "phases_left"):
            x, y = op(r1, "*", t1), op(r2, "*", t2)
            steps = [x, y, op(x.value, "+", y.value)]
            body = f"{th} at {r1} per {u} for {t1} {us}, then {r2} per {u} for {t2} {us}"
            if form == "phases_left":
                total = _int(rng, int(steps[-1].value) + 2, cap)
                steps.append(op(total, "-", steps[-1].value))
                body = f"{th} left of {total}: {r1} per {u} for {t1} {us}, then {r2} for {t2}"
            return body, steps
        if form == "left":
            x = op(r1, "*", t1)
            total = _int(rng, int(x.value) + 2, min(cap, int(x.value) + 60))
            return f"{th} left of {total} after {t1} {us} at {r1} per {u}", [
                x,
                op(total, "-", x.value),
            ]
        if form == "helper":
            x, s = op(r1, "*", t1), op(r1, "+", r2)
            y = op(s.value, "*", t2)
            body = f"{th} at {r1} per {u} for {t1} {us}, then with {r2} more per {u} for {t2}"
            return body, [x, s, y, op(x.value, "+", y.value)]
        if form == "finish":
            x = op(r1, "*", t1)
            t3 = _int(rng, 2, 12)
            total = int(x.value) + r2 * t3
            body = f"{us} to finish {total} {th}: {r1} per {u} for {t1}, then {r2} per {u}"
            return body, [x, op(total, "-", x.value), op(r2 * t3, "/", r2)]
        # net_time: fill the rest of a tank at (r1 - r2) per unit
        s = op(r1, "-", r2)
        rest = int(s.value) * t1
        have = _int(rng, 2, 60)
        total = rest + have
        body = f"{us} to fill {total} {th} from {have}, {r1} in and {r2} out per {u}"
        return body, [op(total, "-", have), s, op(rest, "/", s.value)]


# ---------------------------------------------------------------------------
# 9. physics: distance, speed, time, force, work, momentum.


class PhysicsTask(DomainTask):
    """``Physics: distance at 6 m/s for 12 s.`` -> ``6*12=72``."""

    name = "physics"
    headers = ("Physics", "Mechanics")

    def _draw(self, rng, level):
        cap = self.max_value
        if level == 1:
            a = _int(rng, 2, 20)
            b = _int(rng, 2, min(20, cap // a))
            form = _pick(rng, ("dist", "force", "speed", "time", "accel", "work", "momentum"))
            if form == "dist":
                return f"distance at {a} m/s for {b} s", [op(a, "*", b)]
            if form == "force":
                return f"force on {a} kg at {b} m/s2", [op(a, "*", b)]
            if form == "work":
                return f"work of {a} N over {b} m", [op(a, "*", b)]
            if form == "momentum":
                return f"momentum of {a} kg at {b} m/s", [op(a, "*", b)]
            if form == "speed":
                return f"speed for {a * b} m in {b} s", [op(a * b, "/", b)]
            if form == "time":
                return f"time for {a * b} m at {a} m/s", [op(a * b, "/", a)]
            return f"acceleration of {a} kg under {a * b} N", [op(a * b, "/", a)]
        if level == 2:
            form = _pick(rng, ("legs", "avg", "accel", "work", "masses"))
        else:
            form = _pick(rng, ("force_dv", "work_dv", "avg_legs", "legs_back"))
        if form in ("legs", "legs_back"):
            v1, t1 = _int(rng, 2, 12), _int(rng, 2, 9)
            v2, t2 = _int(rng, 2, 12), _int(rng, 2, 9)
            x, y = op(v1, "*", t1), op(v2, "*", t2)
            if form == "legs":
                body = f"distance at {v1} m/s for {t1} s, then {v2} m/s for {t2} s"
                return body, [x, y, op(x.value, "+", y.value)]
            body = f"distance from start, {v1} m/s out for {t1} s, then {v2} m/s back for {t2} s"
            return body, [x, y, op(x.value, "-", y.value)]
        if form == "avg":
            v, t1, t2 = _int(rng, 2, 12), _int(rng, 2, 9), _int(rng, 2, 9)
            d1 = _int(rng, 2, v * (t1 + t2) - 2)
            d2 = v * (t1 + t2) - d1
            body = f"average speed for {d1} m in {t1} s, then {d2} m in {t2} s"
            return body, [op(d1, "+", d2), op(t1, "+", t2), op(d1 + d2, "/", t1 + t2)]
        if form == "masses":
            m1, m2, a = _int(rng, 2, 12), _int(rng, 2, 12), _int(rng, 2, 9)
            body = f"force on {m1} kg plus {m2} kg at {a} m/s2"
            return body, [op(m1, "+", m2), op(m1 + m2, "*", a)]
        if form == "work":
            m, a, d = _int(rng, 2, 9), _int(rng, 2, 9), _int(rng, 2, 9)
            return f"work on {m} kg at {a} m/s2 over {d} m", [op(m, "*", a), op(m * a, "*", d)]
        if form == "avg_legs":  # equal average: (v1 t1 + v2 t2) / (t1 + t2) exact
            v1, t1 = _int(rng, 2, 12), _int(rng, 2, 9)
            v2, t2 = _int(rng, 2, 12), _int(rng, 2, 9)
            x, y = op(v1, "*", t1), op(v2, "*", t2)
            total = v1 * t1 + v2 * t2
            body = f"average speed at {v1} m/s for {t1} s, then {v2} m/s for {t2} s"
            steps = [x, y, op(x.value, "+", y.value), op(t1, "+", t2), op(total, "/", t1 + t2)]
            return body, steps
        # accel / force_dv / work_dv: a speed change over a time
        t = _int(rng, 2, 6)
        acc = _int(rng, 2, 6)
        u = _int(rng, 1, 20)
        w = u + acc * t
        dv = op(w, "-", u)
        a = op(dv.value, "/", t)
        if form == "accel":
            return f"acceleration from {u} to {w} m/s in {t} s", [dv, a]
        m = _int(rng, 2, 9)
        f = op(m, "*", acc)
        if form == "force_dv":
            return f"force on {m} kg going {u} to {w} m/s in {t} s", [dv, a, f]
        d = _int(rng, 2, 9)
        body = f"work on {m} kg going {u} to {w} m/s in {t} s over {d} m"
        return body, [dv, a, f, op(m * acc, "*", d)]


# ---------------------------------------------------------------------------
# 10. debugging: find and fix the one wrong step of a worked solution.

_SLIPS = (-10, -2, -1, 1, 2, 10)  # how far the wrong step's result is off


class DebuggingTask(DomainTask):
    """``Fix the wrong step: 7*4=28, 28-5=24, 24+3=27.`` -> ``28-5=23``, ``23+3=26``.

    The worked solution is a chain of additions, subtractions, multiplications and exact
    divisions with exactly one false step; the steps after it are true for the wrong
    value (the slip propagates). The reference rewrites the wrong step and every later
    one correctly; the answer is the corrected final value. Level 1 redoes one line
    (the slip is in the last step), level 2 two or three, level 3 three to five.
    The default ``EquationVerifier`` scores it: the worked solution sits in the prompt,
    which the verifier never reads.
    """

    name = "debugging"
    headers = ("Fix the wrong step", "Find the bug")

    def _draw(self, rng, level):
        cap = self.max_value
        redo = _n_steps(rng, level)
        k = _int(rng, redo, min(redo + 1, 5))  # steps in the worked solution
        j = k - redo  # index of the wrong step
        start = v = _int(rng, 2, 20)
        ops, prev = [], None
        for _ in range(k):
            use_mul = rng.random() < 0.4
            try:
                o, b = (_muldiv_step if use_mul else _addsub_step)(rng, v, cap, avoid=prev)
            except _Reject:
                o, b = (_addsub_step if use_mul else _muldiv_step)(rng, v, cap, avoid=prev)
            ops.append((o, b))
            v = int(_APPLY[o](Fraction(v), Fraction(b)))
            prev = (_INVERSE[o], b)
        good, v = [], start
        for o, b in ops:
            good.append(op(v, o, b))
            v = int(good[-1].value)
        shown = good[:j]
        for slip in rng.permutation(_SLIPS):
            w = int(good[j].value) + int(slip)
            if w < 1 or w > cap:
                continue
            wrong = [Step(good[j].lhs, Fraction(w))]
            try:
                for o, b in ops[j + 1 :]:
                    wrong.append(op(w, o, b))
                    w = int(wrong[-1].value)
                    if w > cap:
                        raise _Reject
            except _Reject:
                continue
            break
        else:
            raise _Reject
        body = ", ".join(s.text() for s in shown + wrong)
        return body, good[j:]


# ---------------------------------------------------------------------------
# Registry.

DOMAIN_CLASSES: dict[str, type[DomainTask]] = {
    cls.name: cls
    for cls in (
        AddSubTask,
        MulDivTask,
        FractionsTask,
        PercentTask,
        UnitsTask,
        LinearTask,
        SequencesTask,
        RatesTask,
        PhysicsTask,
        DebuggingTask,
    )
}
assert tuple(DOMAIN_CLASSES) == DOMAINS

for _name, _cls in DOMAIN_CLASSES.items():
    register_task(_name, _cls)
