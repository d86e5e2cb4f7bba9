"""Finds every arithmetic step in a free-form solution and checks it exactly.

``check_steps(text)`` returns a ``StepReport``: a ``StepCheck`` per step, in text order, with
its exact character span (a trainer rewards the token that ends it) and a status
``"verified"``, ``"wrong"`` or ``"unparseable"``. Design: a regex pass tokenizes, a fix-up
pass merges context-dependent tokens, an operand/operator automaton groups tokens into
maximal arithmetic *runs*, and chains are read off ``=`` tokens; nothing spans a line.

* Numbers: ``12``, ``1,200`` (also LaTeX's ``1{,}200``, ``1\\,200``), ``.5``, ``3.75``,
  ``$``/``$ `` prefix, ``%``/`` %`` suffix,
  ``½``-style fractions, mixed numbers ``3 1/2``, ``3 and 1/2`` (proper fraction); a
  spaced-off ``a/b`` is one number (``1 1/2 / 1/2 = 3``).
* Operators: ``+ - * / ^ **``, ``× · ÷ −``, en dash ``–`` (binary minus only), LaTeX
  ``\\times \\cdot \\div``; ``x``/``X`` before a number; ``(`` touching an operand
  multiplies (``27(1/3)``). Words are never operators (``20% of 50``, ``3 times 4``).
  A Markdown list marker (``-``, ``*``, ``+`` or ``–`` first on a line, a space after) is
  no operator: ``- 9 * 2 = 18`` is ``9 * 2 = 18``, and ``- 5 + 10 = 5`` is wrong.
* A *side* is a run. A run is not a side (and its equation is not a step) when its
  arithmetic is cut by something non-numeric: variables/units joined by an operator
  (``2L + 8``, ``60g * 4/5``, ``15 kg * 3``, ``= 15 * cost``), a glued number
  (``16,0000``, ``3:30``, ``Day 1 3 + 4``), a ratio (``3 : 1 = 6 : 2``), ``!``/``√``,
  an ``of`` that multiplies (after
  a percent, fraction or decimal, or before a number: ``= 1/3 of $150``, ``= 120% of the
  number``, ``= 4 of the 10``; the whole chain is dropped), or, as first side, a lone
  number after a word (``half of 50 = 25``). Words after a side that end its arithmetic
  are units or prose, and the side is checked: ``2 + 2 = 5 of them`` and ``2 + 2 = 5cm``
  are wrong steps (a glued word of two or more letters is a unit), ``$18 every day`` is
  fine. One glued letter is a variable: a chain with an arithmetic side that ends in one
  (``2 + 2 = 5x``, ``= 1 + 3x``) is an unparseable step, never dropped (``26 = 5 + 3x``,
  with only a lone number besides, is no step). Unequal lone numbers with a unit after
  the last are a conversion, no step (``$1 = 100 cents``; ``1 = 100`` is wrong).
* Plain equations ``a op b = c`` anywhere in a line; chains ``a = b = c`` need all sides
  equal. A run-on ``a = b + c = d`` whose ``b`` equals ``a`` is read as two steps,
  ``a = b`` and ``b + c = d`` (their spans share ``b``).
* GSM8K annotations ``<<expr=value>>`` are steps with their prose: ``16 - 3 - 4 = $<<16-3-4=9>>9``
  is ONE step (sides: prose chain left of ``=``, the annotation's, the number after ``>>``).

Values are exact ``Fraction``s from ``safe_math.safe_eval_fraction`` (never eval/sympify).
Tolerances apply only to *lone literal* sides (one, possibly signed, number) against a computed
value v: d >= 1 written decimals round (``|lit - v| <= 0.5 * 10**-d``: ``10/3 = 3.33``;
integers never round, ``7/2 = 3`` and truncation ``2/3 = 0.66`` are wrong, and a written
0 rounds nothing: ``1/30 = 0.0`` is wrong); a 15+ digit float repr (a literal with a
nonzero fraction) matches within 1e-12 relative (``2.4000000000000004``); integers are
exact however long, with a ``.0`` too (``123456789012345 + 100 = 123456789012345.0`` is
wrong).
Percent: ``p%`` is ``p/100`` (``50 * 20% = 10``); a lone ``p%`` may also mean p, a side
ending ``* 100%`` also 100 times its value (``.24 * 100% = <<.24*100=24>>24%``);
``50 + 10% = 55`` is wrong.

Not recognised: algebra, ``//``, ``≈``, ``e``-notation, LaTeX fractions, exponents > 8.
Hostile input never raises and costs linear time: ``MAX_TEXT_CHARS`` scanned, ``MAX_STEPS``
reported, steps over ``MAX_STEP_CHARS`` unparseable unevaluated, ``safe_math`` caps sides.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import unicodedata
from fractions import Fraction

from r1jax.rewards.safe_math import safe_eval_fraction

__all__ = ["MAX_STEPS", "MAX_STEP_CHARS", "MAX_TEXT_CHARS", "StepCheck", "StepReport"]
__all__ += ["UNPARSEABLE", "VERIFIED", "WRONG", "check_steps"]

MAX_TEXT_CHARS = 40_000  # characters scanned (~10k tokens); the rest is ignored
MAX_STEPS = 1000  # steps reported; later ones are dropped (StepReport.truncated)
MAX_STEP_CHARS = 1000  # longer steps are unparseable without being evaluated
VERIFIED, WRONG, UNPARSEABLE = "verified", "wrong", "unparseable"


@dataclasses.dataclass(frozen=True)
class StepCheck:
    """One step: ``text == source[span[0]:span[1]]``."""

    text: str
    span: tuple[int, int]  # (start, end): end is just past the step's last character
    status: str  # VERIFIED, WRONG or UNPARSEABLE
    value: Fraction | None  # the common value if verified, else the first side's; or None
    annotated: bool  # a GSM8K <<expr=value>> annotation (with its prose, if any)


@dataclasses.dataclass(frozen=True)
class StepReport:
    """All steps of a solution, and their counts by status."""

    steps: tuple[StepCheck, ...]
    num_steps: int
    num_verified: int
    num_wrong: int
    num_unparseable: int
    truncated: bool = False  # the text or the steps went over MAX_TEXT_CHARS / MAX_STEPS

    @property
    def fraction_verified(self) -> float:
        return self.num_verified / self.num_steps if self.num_steps else 0.0


NUM, OP, LP, RP, EQ, ANN, WORD, NL, OTHER = range(9)  # token kinds
_TOKEN_RE = re.compile(
    r"(?P<ann><<[^<>\n]{1,400}>>)"
    r"|(?P<num>(?:\$ ?)?(?:[0-9]{1,3}(?:(?:,|\{,\}|\\,)[0-9]{3}(?![0-9]))+(?:\.[0-9]+)?"
    r"|[0-9]*[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞]|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?: ?%)?)"
    r"|(?P<eq>==?)|(?P<op>\*\*|[-+*/^×÷−–·])|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<word>[^\W\d_]+)|(?P<nl>\n)|(?P<sp>[^\S\n]+)|(?P<other>.)",
    re.DOTALL,
)
_KIND = {"ann": ANN, "num": NUM, "eq": EQ, "op": OP, "lp": LP, "rp": RP, "word": WORD, "nl": NL}
_CANON = {"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-", "^": "**"}
_DASHES = frozenset("-−–")
_BULLETS = frozenset("-*+–")  # Markdown list markers at the start of a line, space after
_FLOAT_DIGITS, _FLOAT_SLACK = 15, Fraction(1, 10**12)  # float reprs: digits, relative error
_LATEX_OPS = {"times": "*", "cdot": "*", "div": "/"}
_MIXED = (re.compile(r"([0-9]+) ([0-9]+)/([0-9]+)"), re.compile(r"([0-9]+) and ([0-9]+)/([0-9]+)"))
_VULGAR = {c: str(Fraction(unicodedata.numeric(c)).limit_denominator(8)) for c in "½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞"}


class _Tok:
    __slots__ = ("dec", "end", "kind", "num", "op", "pct", "sign", "space", "start", "text")

    def __init__(self, kind: int, start: int, end: int, text: str, space: bool) -> None:
        self.kind, self.start, self.end, self.text, self.space = kind, start, end, text, space
        self.op = _CANON.get(text, text) if kind == OP else text  # canonical operator
        self.sign = kind == OP and text in "+-−"  # may be a unary sign (the en dash not)
        self.num, self.pct, self.dec = "", False, 0  # number text for safe_math, %, decimals
        if kind == NUM:
            raw = text.replace("$", "").replace("{,}", "").replace("\\,", "")
            raw = raw.replace(",", "").replace(" ", "")
            self.pct, self.num = raw.endswith("%"), raw.rstrip("%")
            if self.num[-1:] in _VULGAR:  # "1¾" -> "(1+3/4)"
                self.num = f"({self.num[:-1] or 0}+{_VULGAR[self.num[-1]]})"
            elif "." in self.num:
                self.dec = len(self.num) - self.num.index(".") - 1


def _tokenize(text: str) -> list[_Tok]:
    raw, space = [], False
    for m in _TOKEN_RE.finditer(text):
        group = m.lastgroup
        if group == "sp":
            space = True
            continue
        kind = _KIND.get(group, OTHER)
        if kind == ANN and "=" not in m.group():
            kind = OTHER  # "<<" ... ">>" without an equation is no annotation
        raw.append(_Tok(kind, m.start(), m.end(), m.group(), space))
        space = False
    toks: list[_Tok] = []
    i, n = 0, len(raw)
    while i < n:
        t, nxt, prev = raw[i], raw[i + 1] if i + 1 < n else None, toks[-1] if toks else None
        if nxt is None:
            pass
        elif t.kind == OP and t.text in _BULLETS and nxt.space and (not prev or prev.kind == NL):
            t = _Tok(OTHER, t.start, t.end, t.text, t.space)  # "- 9 * 2 = 18": a list item
        elif t.text == "$" and nxt.kind == ANN:  # "= $<<9*2=18>>"
            t, i = nxt, i + 1
        elif t.text == "\\" and nxt.text in _LATEX_OPS and not nxt.space:
            t, i = _Tok(OP, t.start, nxt.end, _LATEX_OPS[nxt.text], t.space), i + 1
        elif (
            t.text in ("x", "X") and prev and prev.kind in (NUM, RP, WORD) and nxt.kind in (NUM, LP)
        ):
            t = _Tok(OP, t.start, t.end, "*", t.space)  # "3 x 4", "15 pages x 1/3"
        elif t.kind == NUM and nxt.text[:1] in "0123456789a" and (not prev or prev.op != "/"):
            for width, pattern in zip((4, 5), _MIXED):  # "3 1/2", "3 and 1/2"
                if i + width > n or raw[i + width - 2].op != "/":
                    continue
                m = pattern.fullmatch(text, t.start, raw[i + width - 1].end)
                after = raw[i + width] if i + width < n else None
                if m and int(m[2]) < int(m[3]) and (not after or after.space or after.kind > LP):
                    t = _Tok(NUM, t.start, m.end(), m[0], t.space)
                    t.num, i = f"({m[1]}+{m[2]}/{m[3]})", i + width - 1
                    break
        toks.append(t)
        i += 1
    return toks


@dataclasses.dataclass
class _Run:
    lo0: int  # first token, before stripping leading unmatched "("
    lo: int
    hi: int  # one past the last token
    cut: bool  # the arithmetic goes on into non-numeric text: not a side
    bad: bool  # unbalanced parentheses: unparseable
    lone: bool  # a single, possibly signed, number
    algebra: bool = False  # cut only by a letter glued on ("5x", toks[hi]): unparseable


def _cut_before(toks: list[_Tok], i: int) -> bool:
    """Is the run starting at ``toks[i]`` (i > 0) glued to non-numeric text before it?"""
    first, before = toks[i], toks[i - 1]
    term = not before.space and i > 1 and toks[i - 2].kind in (NUM, RP)  # "2L", "3x"
    unary = first.sign and first.space and not toks[i + 1].space and not term  # "So -3 + 5"
    if (before.kind == OP and not before.sign) or (
        first.sign and before.kind in (WORD, NUM, RP) and not (unary and before.kind == WORD)
    ):
        return True  # "60g * 4/5", "blocks – 5", "2L + 8", "3x +4", "x-3"
    if before.text == ":" and before.space and i > 1 and toks[i - 2].kind == NUM:
        label = i > 2 and toks[i - 3].kind == WORD  # "Step 1 : 3 + 4 = 7": a label
        if not label:
            return True  # a ratio: "3 : 1"
    if first.space:
        return False
    if before.kind == WORD or before.text in "√∛∜":  # "x2+3", "√(144)"
        return True
    return before.text in ",.:" and not before.space and i > 1 and toks[i - 2].kind == NUM


def _part(toks: list[_Tok], k: int) -> bool:
    """Is the number ``toks[k]`` a part (a percent, fraction or decimal), not a count?"""
    t = toks[k]
    return t.pct or t.dec > 0 or "/" in t.num or (k > 1 and toks[k - 1].op == "/")


_ALGEBRA = "algebra"  # _cut_after: cut by a glued letter, a variable ("= 5x")


def _cut_after(toks: list[_Tok], last: int, j: int) -> bool | str:
    """Does the run ending at ``toks[last]`` go on into non-numeric text (from ``toks[j]``)?

    ``_ALGEBRA`` (true) when that text is one letter glued on: ``= 5x``, a variable.
    """
    if any(not (t.kind == OP and t.text in _DASHES) for t in toks[last + 1 : j]):
        return True  # a dangling operator: "= 15 * cost", "$600/month", "3(x+1)"
    if j > last + 1 or j == len(toks):
        return False
    after, nxt = toks[j], toks[j + 1] if j + 1 < len(toks) else None
    if after.kind == NUM:
        return True  # "Day 1 3"
    if after.kind == WORD and not after.space and len(after.text) == 1:
        return _ALGEBRA  # "= 2x", "= 48g": a letter is a variable (unit or not)
    if after.text == "of" and (
        _part(toks, last) or any(t.kind in (NUM, LP) for t in toks[j + 1 : j + 3])
    ):
        return True  # "of" multiplies: "= 1/3 of $150", "120% of the number", "4 of the 10"
    if after.kind == WORD:  # a unit or prose ("5cm", "5 of them"), unless an operator
        k = j + 1 if nxt is None or nxt.kind != WORD else j + 2  # follows: "15 kg * 3"
        return k < len(toks) and toks[k].kind == OP and toks[k].text not in _DASHES
    if after.text == ":" and after.space and nxt is not None and nxt.kind == NUM:
        end = toks[j + 2] if j + 2 < len(toks) else None  # "6 : 2" then "=" or the line's end
        if end is None or end.kind in (EQ, NL):
            return True  # a ratio: "3 : 1 = 6 : 2" ("= 7 : 7 apples" is no ratio)
    if after.space or after.kind != OTHER:
        return False
    glued = after.text in ",.:" and nxt is not None and nxt.kind == NUM and not nxt.space
    return after.text == "!" or glued  # "5!", "3:30", "16,0000"


def _runs(toks: list[_Tok]) -> list[_Run]:
    """Maximal operand/operator runs, with the flags of ``_Run``."""
    runs, n, i, juxtaposed = [], len(toks), 0, False
    while i < n:
        if not (toks[i].kind in (NUM, LP) or toks[i].sign):
            i, juxtaposed = i + 1, False
            continue
        j, depth, expect, last = i, 0, True, -1
        while j < n:
            t = toks[j]
            if expect and (t.kind == NUM or t.kind == LP or t.sign):
                depth += t.kind == LP
                expect, last = t.kind != NUM, j if t.kind == NUM else last
            elif not expect and t.kind == OP:
                expect = True
            elif not expect and t.kind == RP and depth:
                depth, last = depth - 1, j
            elif not expect and t.kind == LP and not t.space:  # implicit product: 27(1/3)
                depth, expect = depth + 1, True
            else:
                break
            j += 1
        if last < 0:
            i, juxtaposed = j, False
            continue
        before = juxtaposed or (i > 0 and _cut_before(toks, i))
        after = _cut_after(toks, last, j)
        cut, algebra = bool(before or after), not before and after == _ALGEBRA
        extra, lo = sum((t.kind == LP) - (t.kind == RP) for t in toks[i : last + 1]), i
        while extra and toks[lo].kind == LP:  # "(3 + 4 = 7)": drop the outer "("
            lo, extra = lo + 1, extra - 1
        size = last + 1 - lo
        lone = toks[last].kind == NUM and (size == 1 or (size == 2 and toks[lo].sign))
        runs.append(_Run(i, lo, last + 1, cut, extra > 0, lone, algebra))
        juxtaposed = j == last + 1 and j < n and toks[j].kind in (NUM, LP)  # "1/2 (68)"
        i = j
    return runs


def _tight_fraction(toks: list[_Tok], k: int) -> bool:
    """``a/b`` without spaces, set off by spaces or the side's ends: ``6 / 1/2 = 12``."""
    if k + 2 >= len(toks) or toks[k + 1].op != "/" or toks[k + 2].kind != NUM:
        return False
    a, slash, b = toks[k], toks[k + 1], toks[k + 2]
    if slash.space or b.space or a.pct or b.pct or (k and not (a.space and toks[k - 1].space)):
        return False
    return k + 3 == len(toks) or toks[k + 3].space


def _side_value(toks: list[_Tok]) -> tuple[bool, list[tuple[Fraction, Fraction]]] | None:
    """(computed?, [(value, tolerance), ...]) of one side; None if it does not evaluate."""
    num, zero = toks[-1], Fraction(0)
    if len(toks) <= 2 and num.kind == NUM and (len(toks) == 1 or toks[0].sign):
        value = safe_eval_fraction(("-" if toks[0].op == "-" else "") + num.num)
        if value is None:
            return None
        # A written 0 (0.0) rounds nothing: 1/30 = 0.0 is wrong; an integer written
        # with .0 is exact however long (no float slack).
        tol = Fraction(1, 2 * 10**num.dec) if num.dec and value else zero
        if value.denominator > 1 and len(num.num.replace(".", "").lstrip("0")) >= _FLOAT_DIGITS:
            tol = max(tol, abs(value) * _FLOAT_SLACK)  # a float repr: 2.4000000000000004
        return False, [(value, tol)] + ([(value / 100, tol / 100)] if num.pct else [])
    parts, k = [], 0
    while k < len(toks):
        t = toks[k]
        if t.kind == NUM and _tight_fraction(toks, k):
            parts.append(f"({t.num}/{toks[k + 2].num})")
            k += 2
        elif t.kind == NUM:
            parts.append(f"({t.num}/100)" if t.pct else t.num)
        elif t.kind == LP:
            parts.append("*(" if k and toks[k - 1].kind in (NUM, RP) else "(")
        else:
            parts.append(t.op)
        k += 1
    value = safe_eval_fraction(" ".join(parts))
    if value is None:
        return None
    per_cent = len(toks) >= 3 and toks[-2].op == "*" and toks[-1].pct and num.num == "100"
    return True, [(value, zero)] + ([(100 * value, zero)] if per_cent else [])


def _judge(sides: list[list[_Tok]]) -> tuple[str, Fraction | None]:
    """Status and value of a chain of sides (see the module docstring)."""
    evaluated = [_side_value(side) if side else None for side in sides]
    if any(got is None for got in evaluated):
        return UNPARSEABLE, None
    computed = [cands for is_computed, cands in evaluated if is_computed]
    for ref, _ in computed[0] if computed else evaluated[0][1]:  # tolerances need a computed
        if all(
            any(v == ref or (computed and abs(v - ref) <= tol) for v, tol in c)
            for _, c in evaluated
        ):
            return VERIFIED, ref
    return WRONG, evaluated[0][1][0][0]


def _split_run_on(sides: list[list[_Tok]]) -> list[list[list[_Tok]]]:
    """Splits ``a = b + c = d`` with ``a == b`` into ``a = b`` and ``b + c = d``."""
    parts, cur = [], [sides[0]]
    for k, side in enumerate(sides[1:], 1):
        head = [side[0]]
        if (
            1 < len(side)
            and k + 1 < len(sides) <= 8
            and head[0].kind == NUM
            and _judge(cur + [side])[0] == WRONG
            and _judge(cur + [head])[0] == VERIFIED
        ):
            parts.append(cur + [head])
            cur = []
        cur.append(side)
    return parts + [cur]


def _annotation_sides(tok: _Tok) -> list[list[_Tok]] | None:
    """The sides of ``<<a=b=...>>``, each one whole run; None if it is anything else."""
    inner = _tokenize(tok.text[2:-2])
    cuts = [-1] + [k for k, t in enumerate(inner) if t.kind == EQ] + [len(inner)]
    groups = [inner[a + 1 : b] for a, b in itertools.pairwise(cuts)]
    for group in groups:
        runs = _runs(group)
        if len(runs) != 1 or runs[0].lo or runs[0].hi != len(group) or runs[0].bad:
            return None
    return groups


def _find_steps(toks: list[_Tok]) -> list[tuple[list[_Run], int | None, _Run | None]]:
    """Steps as (prose chain, annotation token index or None, run of the number after it)."""
    runs = _runs(toks)
    by_lo0, by_hi = {r.lo0: r for r in runs if not r.cut}, {r.hi: r for r in runs if not r.cut}
    cut_lo0 = {r.lo0 for r in runs if r.cut}
    algebra = {r.lo0: r for r in runs if r.algebra}
    found, chain, used = [], [], set()

    def trailing(a: int) -> _Run | None:  # "<<9*2=18>>18", unless "18" starts an equation
        run = by_lo0.get(a + 1)
        body = toks[run.lo + (toks[run.lo].sign) : run.hi] if run else []  # "-1/2" is fine too
        frac = len(body) == 3 and body[1].op == "/" and not (body[1].space or body[2].space)
        ok = run is not None and run.lo == run.lo0 and (run.lone or frac)
        return run if ok and (run.hi == len(toks) or toks[run.hi].kind != EQ) else None

    for e, tok in enumerate(toks):
        if tok.kind != EQ:
            continue
        left = by_hi.get(e)
        if not (chain and chain[-1] is left):
            found += [(chain, None, None)] if len(chain) >= 2 else []
            before = toks[left.lo0 - 1] if left and left.lo0 else None
            glued = before and (before.kind == WORD or not toks[left.lo0].space)
            chain = [left] if left and not (left.lone and glued and before.kind != NL) else []
        if e + 1 < len(toks) and toks[e + 1].kind == ANN:
            used.add(e + 1)
            found.append((chain, e + 1, trailing(e + 1)))
            chain = []
        elif e + 1 in by_lo0:
            chain.append(by_lo0[e + 1])
        elif e + 1 in algebra and any(not r.lone for r in chain):  # "2 + 2 = 5x": unparseable
            found.append((chain + [algebra[e + 1]], None, None))
            chain = []
        else:  # "48 = 100% + 20% = 120% of x": the chain is about the cut side too
            found += [(chain, None, None)] if len(chain) >= 2 and e + 1 not in cut_lo0 else []
            chain = []
    found += [(chain, None, None)] if len(chain) >= 2 else []
    unused = [a for a, t in enumerate(toks) if t.kind == ANN and a not in used]
    return found + [([], a, trailing(a)) for a in unused]


def _conversion(toks: list[_Tok], chain: list[_Run], sides: list[list[_Tok]]) -> bool:
    """``$1 = 100 cents``: numbers alone, unequal, a unit after the last: no step."""
    if not (chain and all(r.lone for r in chain) and all(sides)) or chain[-1].hi >= len(toks):
        return False
    return toks[chain[-1].hi].kind == WORD and _judge(sides)[0] == WRONG


def check_steps(text: str) -> StepReport:
    """Finds and checks every equation step in ``text`` (see the module docstring)."""
    if not isinstance(text, str):
        return StepReport((), 0, 0, 0, 0)
    truncated = len(text) > MAX_TEXT_CHARS
    toks = _tokenize(text[:MAX_TEXT_CHARS])
    found = []
    for chain, ann, trail in _find_steps(toks):
        end_run = chain[-1].hi - (not chain[-1].algebra) if chain else None  # "5x": to x
        last = trail.hi - 1 if trail else (ann if ann is not None else end_run)
        start = toks[chain[0].lo].start if chain else toks[ann].start
        found.append((start, toks[last].end, chain, ann, trail))
    found.sort(key=lambda f: f[0])
    truncated |= len(found) > MAX_STEPS
    checks: list[StepCheck] = []
    for start, end, chain, ann, trail in found[:MAX_STEPS]:
        sides = [toks[r.lo : r.hi] if not (r.bad or r.algebra) else [] for r in chain]
        if ann is None and _conversion(toks, chain, sides):
            continue
        parts: list[list[list[_Tok]]] = []
        if end - start <= MAX_STEP_CHARS and ann is None and all(sides):
            parts = _split_run_on(sides)
        elif end - start <= MAX_STEP_CHARS and ann is not None:
            inner = _annotation_sides(toks[ann])
            after = [toks[trail.lo : trail.hi]] if trail else []
            parts = [sides + inner + after] if inner else []
        if ann is not None or not parts:
            status, value = _judge(parts[0]) if parts else (UNPARSEABLE, None)
            checks.append(StepCheck(text[start:end], (start, end), status, value, ann is not None))
        for part in parts if ann is None else []:
            i, j = part[0][0].start, part[-1][-1].end
            checks.append(StepCheck(text[i:j], (i, j), *_judge(part), False))
    truncated |= len(checks) > MAX_STEPS
    checks = sorted(checks, key=lambda c: c.span)[:MAX_STEPS]
    count = {s: sum(c.status == s for c in checks) for s in (VERIFIED, WRONG, UNPARSEABLE)}
    return StepReport(
        tuple(checks), len(checks), count[VERIFIED], count[WRONG], count[UNPARSEABLE], truncated
    )
