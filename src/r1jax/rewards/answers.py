"""Final answers: extraction from any solution format, and equivalence with a reference.

``extract_answer`` finds the final answer in a solution; ``verify_answer`` says whether a
prediction's final answer equals the reference's; ``verify_answers`` does many pairs.
Model text is hostile: nothing here raises, runs code or hangs (see ``latex`` and
``symbolic`` for the gates in front of the AST walks). Competition-math (MATH) answers
follow the conventions of the field's reference grader (Math-Verify) where it has one;
``tests/rewards/math_answers_test.py`` is the table of rules, one case per line.

Extraction, in priority order: the last ``<answer>...</answer>`` (searched again for the
markers below), the last ``\\boxed{...}``/``\\fbox{...}`` (nested braces matched; an
answer phrase after it that parses wins: ``\\boxed{255} ... The answer is $10455$``),
the last ``#### ...`` line, and otherwise whichever comes last of an answer line
(``A: 72``, ``Answer: 72``, ``**Final answer:** 72``, ``Final Answer:`` mid-line too) and
an answer phrase (``The answer is 72.``, up to the end of the sentence; of several
phrases, on one line too, the last: ``The answer is 2. Wait, the answer is 3.`` is 3).
An answer line or phrase, or an ``<answer>`` text, that does not parse is refined
(``_refine``): what follows its last `` is `` (``The largest $n$ is 34``), else its last
math environment, else (plain text only: no LaTeX command or math environment; a ``$``
before a number is a price) its last number (``<answer>Janet makes $18 every
day.</answer>`` is 18) if it stands alone: not after a hedge or connective (``5 or 6``,
``12 minus 3``, ``divided by 4``) nor before one, nor ending an equation whose numbers
differ (``The answer is 7 = 5.`` has none). ``fallback=True`` (what ``verify_answer``
uses) adds, when there is no marker or the marked answer does not parse: a short
one-line text that parses is the answer itself (``"18"``, ``"x = 3"``; not prose like
``it is 42``), else the last math environment that parses (``$..$`` and ``\\(..\\)`` on
one line, ``$$..$$``, ``\\[..\\]``), else the last number of the last line (standalone:
not in ``AZYUK2A``, not a denominator, alone as above; ``2/3`` whole), else a short word
answer (``Evelyn``, ``12:00``). Answers longer than ``MAX_ANSWER_CHARS`` or holding
control characters are refused; invisible format characters (zero-width spaces, bidi
marks) are dropped. Several boxes joined by list words (``\\boxed{1} and
\\boxed{2}``, ``\\boxed{1},\\boxed{2}``) are also tried as one list (``answer_pairs``):
they match a reference listing the same answers, while the last box alone still wins
against a single value.

Parsing an answer (``parse_value``): ``latex.to_plain`` first, and a trailing negated
alternative is dropped (``5, not 3`` and ``5 (not 3)`` are 5). Whole-answer number forms
come first: ``1 000`` (space thousands), ``1000,99``/``1234,5``/``1,22``/``0,5`` (a decimal
comma, only where a thousands separator cannot be meant; ``1,234`` is 1234 and ``1,2``
a list), ``1.5e3``. Then ``x = 3``, ``f(x) = 2x``, ``a_3 = 2`` or ``\\frac{NO}{BO} = ..``
(one side without digits or operators: ``3 = x`` too) is a *named* ``Equation``: it
compares as its value, except against another named equation (``x = 3`` is not
``y = 3``) or an equation like ``2x = 6``; a chain ``x = 5+5+1 = 11`` is its last part
(named by the first, even ``x = 2 + 1 = 4``), while two numbers that differ (``7 = 5``,
``x = 5 = 6``) are no answer; ``x ≈ 11`` reads as ``x = 11`` (``x ≈ 5 ≈ 6`` as
``x = 5 = 6``) and ``x = 1/3 ≈ 0.33`` as its exact part; ``x = 1, y = 2`` is a tuple. An
equation with symbols on both sides stays an ``Equation``. ``{a, b}`` is a set, ``(a, b)``
a tuple (``(0;0;6)`` too), ``[a, b)`` (brackets that differ, or ``[a, b]``) an interval,
``A ∪ B`` a union, ``a < b <= c`` a ``Relation`` (``x ∈ S`` is S), ``7:32`` a ratio,
``\\begin{pmatrix}..`` a matrix, a bare ``a, b`` a list, as are ``a and b``, ``a or b``
(a hedge ``5 or 6`` is then a list, never 6), ``a; b`` and ``a ± b``. ``|x|`` is
``abs(x)``. Thousands separators (``1,234``) are read as such only outside brackets (so
``(1,234)`` is a pair). A leaf is a ``Num`` (exact ``Fraction``:
``$18.00``, ``18 eggs``, ``5 km/h``, ``1 1/2`` (numerator below the denominator),
``1 and 1/2``, ``-5``, ``50%``, ``50 percent``, ``\\frac{3}{2}``), a ``Based`` numeral
(``204_5``) or an ``Expr`` (whitelisted Python text with symbols or functions, settled
by sympy). Units: a first word of two or more letters after the value starts a unit
(not ``2x``, ``2 x`` or ``2 pi``; ``\\frac{1}{3} \\text{meters}`` and ``15\\text{ cm}^2``
too), and then all that follows must be unit words (``km/h``, ``sq. ft``, ``ft^2``,
``dollars per day``) that end the answer: a second number or a connective (``plus``,
``minus``, ``times``, ``not``, ``but``, ``divided``, ``over``, ..., ``_CONNECTIVES``)
makes the answer unparseable, so ``12 minus 3`` is neither 12 nor 9. Digits are ASCII
only: ``٣٤`` is not 34.

Comparison: ``decide`` parses both answers and runs ``symbolic.compare`` with the
in-process ``FastLeaves``: numbers are settled with exact ``Fraction`` arithmetic (the
rules for ``%``, bases, inequalities and the precision policy for decimals are in
``symbolic``'s doc). A pair that needs sympy (``Expr`` or ``Equation`` leaves) goes to
``symbolic``'s worker pool, with a deadline and a cache. Two unparseable answers are
equal only as squashed texts (``latex.to_plain`` keeps ``\\text{..}``'s words; no ``$``,
spaces, except one between two digits: ``2 3`` is not ``23``; a word answer in any case:
``\\text{Evelyn}`` is ``evelyn``); an unparseable answer never equals a parsed one
(``1 1/2`` is not ``11/2``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from fractions import Fraction

from r1jax.rewards import latex, safe_math, symbolic
from r1jax.rewards.host import RewardPool
from r1jax.rewards.latex import Based, Equation, Expr, Interval, Num, Relation, Seq
from r1jax.rewards.symbolic import FastLeaves, NeedsSympy, compare

__all__ = [
    "MAX_ANSWER_CHARS",
    "answer_pairs",
    "decide",
    "equal_answers",
    "extract_answer",
    "parse_cache_clear",
    "parse_value",
    "verify_answer",
    "verify_answers",
]

_log = logging.getLogger(__name__)
MAX_ANSWER_CHARS = latex.MAX_TEXT_CHARS  # longest final answer considered
MAX_BARE_CHARS = 80  # a one-line text up to this long may be the answer itself
MAX_ITEMS = 50  # most elements in a tuple, set, list
PARSE_CACHE_SIZE = 1 << 14  # parsed answers kept (LRU)
_BOX_SCAN = 4 * MAX_ANSWER_CHARS  # how far a \boxed{ is scanned for its closing brace


# ---------------------------------------------------------------------------- extraction
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_INVISIBLE.update(dict.fromkeys(range(0x202A, 0x202F)))  # bidi embeddings and overrides
_INVISIBLE.update(dict.fromkeys(range(0x2066, 0x206A)))  # bidi isolates
_LINE_RE = re.compile(
    r"^[ \t>*#_]*(?:final[ \t]+answer|answer|a)[ \t*_]*[:：][ \t*_]*([^\n]*)$",
    re.IGNORECASE | re.MULTILINE,
)
_PHRASE_RE = re.compile(  # the phrase only: the answer is the rest of its line, cut below
    r"answer(?:[ \t]+(?:is|was|would[ \t]+be|will[ \t]+be|should[ \t]+be)|[ \t]*=)[ \t:]*"
    r"|final[ \t]+answer[ \t*_]*[:：][ \t*_]*",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"[.;!?](?:\s|$)")
_ENCLOSED_RE = re.compile(r"\$\$?([^$]*)\$\$?|\\\((.*)\\\)|\\\[(.*)\\\]", re.DOTALL)
_MARKERS = ("####", "\\boxed", "\\fbox", "<answer>")
# The last number of the last line: standalone, not glued to letters ("AZYUK2A" has none).
_LAST_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.:/])(?<![0-9] )-?\$?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+)?(?![0-9_:/])(?! [0-9]+/)"
)
# Math environments, for the last one of a solution without a marker.
_MATH_ENV_RE = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\(([^\n]+?)\\\)|\$([^$\n]+?)\$", re.DOTALL
)
_PROSE_RE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")  # "it is 42" is a sentence, not an answer
_HEDGE_RE = re.compile(  # "... or 6", "12 minus 3", "divided by 4": not the answer
    r"\b(?:or|nor|either|and|minus|plus|times|over|by|than|not)\W*$", re.IGNORECASE
)
_CONNECTIVE_TAIL_RE = re.compile(  # "12 minus 3": 12 is not the answer
    r"^\s*(?:or|and|minus|plus|times|divided|over|not)\b", re.IGNORECASE
)
_MATH_SCAN = 8 * MAX_ANSWER_CHARS  # how far from the end math environments are looked for


def _finish(cand: str | None) -> str | None:
    if cand is None or len(cand) > 2 * MAX_ANSWER_CHARS:
        return None
    if not cand.isascii():  # invisible format characters (zero-width space, bidi marks)
        cand = cand.translate(_INVISIBLE)
    cand = cand.strip().strip("*_ \t").rstrip(".,;").strip()
    if m := _ENCLOSED_RE.fullmatch(cand):  # "$18$", "\\(x+1\\)", "\\[3\\]"
        cand = (m[1] or m[2] or m[3] or "").strip().rstrip(".,;").rstrip()
    if not cand or len(cand) > MAX_ANSWER_CHARS or _CONTROL_RE.search(cand):
        return None
    return cand


def _boxed(text: str) -> str | None:
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    return _box_at(text, i) if i >= 0 else None


_BOX_RE = re.compile(r"\\boxed|\\fbox")
# Between two boxes of one list: punctuation, delimiters, spacing, "and"/"or" (and a few
# words around them: "\\boxed{1} papers and \\boxed{2} bins").
_GAP_NOISE_RE = re.compile(r"\\(?:quad|qquad|text|mathrm|textbf|[,;:! ()\[\]])|[{}$,;.()=]+|\\n")
_JOINS_RE = re.compile(r"|(?:\w+\s+){0,3}(?:and|or)(?:\s+\w+){0,4}", re.IGNORECASE)


def _all_boxed(text: str) -> list[str]:
    """The contents of every ``\\boxed``/``\\fbox`` (at most ``MAX_ITEMS + 1``)."""
    out = []
    for m in _BOX_RE.finditer(text):
        if (box := _box_at(text, m.start())) is not None:
            out.append(box)
            if len(out) > MAX_ITEMS:
                break
    return out


def _box_at(text: str, i: int) -> str | None:
    j = i + (6 if text.startswith("\\boxed", i) else 5)
    if j < len(text) and text[j] == " ":
        m = re.match(r" +([^\s$]+)", text[j : j + MAX_ANSWER_CHARS])
        return m.group(1) if m else None
    if j >= len(text) or text[j] != "{":
        return None
    depth = 0
    for k in range(j, min(len(text), j + _BOX_SCAN)):
        c = text[k]
        if c == "{" and text[k - 1] != "\\":
            depth += 1
        elif c == "}" and text[k - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def _markers(text: str, depth: int = 0) -> str | None:
    close = text.rfind("</answer>")
    opening = text.rfind("<answer>", 0, close if close >= 0 else len(text))
    if opening >= 0 and depth < 2:
        inner = text[opening + 8 : close if close >= 0 else len(text)]
        return _markers(inner, depth + 1) or _refine(_finish(inner))
    box_at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if box_at >= 0 and (box := _box_at(text, box_at)) is not None:
        after = _phrase(text[box_at + len(box) :])  # "\\boxed{255} ... The answer is 10455."
        if after is not None and parse_value(after) is not None:
            return after
        return _finish(box)
    if (i := text.rfind("####")) >= 0:
        end = text.find("\n", i)
        cand = text[i + 4 : end if end >= 0 else len(text)].lstrip("#")
        if (cand := _finish(cand)) is not None:
            return cand
    return _phrase(text)


def _phrase(text: str) -> str | None:
    """The answer of the last answer line or phrase of ``text`` (``_refine``d)."""
    best_pos, best = -1, None
    m = None
    for m in _LINE_RE.finditer(text):
        pass
    if m is not None:
        best_pos, best = m.start(), m.group(1)
    m = None
    for m in _PHRASE_RE.finditer(text):  # matches only the phrase: each one is seen
        pass
    if m is not None and m.start() > best_pos:  # the last phrase, to the end of its sentence
        end = text.find("\n", m.end())
        best = text[m.end() : end if end >= 0 else len(text)]
        if stop := _SENTENCE_END_RE.search(best):
            best = best[: stop.start()]
    return _refine(_finish(best))


def _last_math(text: str) -> str | None:
    """The last math environment of ``text`` that parses as an answer."""
    envs = list(_MATH_ENV_RE.finditer(text[-_MATH_SCAN:]))
    for m in envs[::-1][:MAX_ITEMS]:
        found = _finish(next(g for g in m.groups() if g))
        if found is not None and parse_value(found) is not None:
            return found
    return None


def _refine(cand: str | None) -> str | None:
    """An answer line or phrase, or an ``<answer>`` text, that does not parse (``The
    largest $n$ is 34``): what follows its last `` is ``, else its last math environment,
    else its last number if it stands alone (``makes $18 every day``; ``_stands_alone``)."""
    if cand is None or parse_value(cand) is not None:
        return cand
    if (i := cand.rfind(" is ")) >= 0 and parse_value(tail := cand[i + 4 :].strip()) is not None:
        return _finish(tail)
    if (found := _last_math(cand)) is not None:
        return found
    if "\\" in cand or _MATH_ENV_RE.search(cand):
        return cand  # LaTeX that does not parse: not a sentence to take a number from
    m = None
    for m in _LAST_NUMBER_RE.finditer(cand):
        pass
    return _finish(m.group(0)) if m is not None and _stands_alone(cand, m) else cand


def _stands_alone(text: str, m: re.Match) -> bool:
    """Whether ``text``'s number ``m`` is an answer: not an alternative or an operand (a
    hedge or a connective before it, ``5 or 6``, ``12 minus 3``, or a connective after
    it, ``12 minus 3``), nor the end of an equation whose numbers differ (``7 = 5``,
    ``so x = 5 = 6``: the parser's rule)."""
    return not (
        _HEDGE_RE.search(text[: m.start()])
        or _CONNECTIVE_TAIL_RE.search(text[m.end() :])
        or not _numbers_agree(_split_top(text[: m.end()], "="))
    )


def extract_answer(text: str, fallback: bool = False) -> str | None:
    """The final answer of a solution (see the module doc); ``None`` if there is none.

    ``fallback=True``: when no marker is found, a short one-line text that parses as an
    answer is returned as is, else the last number on the last line (not when a
    ``####``/``\\boxed``/``<answer>`` marker is there but its answer was refused).
    """
    return _extract(text, fallback, MAX_BARE_CHARS)


def _extract(text: str, fallback: bool, bare_chars: int) -> str | None:
    """``extract_answer``, where a one-line text up to ``bare_chars`` long may be the
    answer itself."""
    if not isinstance(text, str):
        return None
    try:
        found = _markers(text)
        hard = any(m in text for m in _MARKERS)
        if not fallback or hard or (found is not None and parse_value(found) is not None):
            return found  # a marker whose answer was refused is not "no marker"
        marked, found = found, _fallback(text, bare_chars)
        return found if found is not None else marked
    except Exception:  # noqa: BLE001  (never raise on hostile text)
        return None


def _fallback(text: str, bare_chars: int) -> str | None:
    """What ``extract_answer(fallback=True)`` takes from text without a marker: a short
    one-line answer, else the last math environment that parses, else the last number
    of the last line, else a short word answer."""
    bare = text.strip()
    short = len(bare) <= bare_chars and "\n" not in bare and not _PROSE_RE.search(bare)
    bare = _finish(bare) if short else None
    if bare is not None and parse_value(bare) is not None:
        return bare
    if (found := _last_math(text)) is not None:
        return found
    last_line = text.rstrip().rsplit("\n", 1)[-1]
    m = None
    for m in _LAST_NUMBER_RE.finditer(last_line):
        pass
    if m is None:  # a short text without a number: a word answer ("Evelyn", "(C)", "12:00")
        return bare
    return _finish(m.group(0)) if _stands_alone(last_line, m) else None  # "5 or 6": none


# ----------------------------------------------------------------------------- parsing
_THOUSANDS_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def _drop_thousands(s: str) -> str:
    """Thousands separators out of ``s``, outside brackets only: a comma inside a call's
    parentheses separates arguments (``binom(1000,500)``, ``root(2,100)``)."""
    if "(" not in s:
        return _THOUSANDS_RE.sub("", s)
    out, depth, last = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            if depth == 0:
                out.append(_THOUSANDS_RE.sub("", s[last:i]))
                last = i
            depth += 1
        elif c in ")]}" and depth:
            depth -= 1
            if depth == 0:
                out.append(s[last : i + 1])
                last = i + 1
    out.append(_THOUSANDS_RE.sub("", s[last:]) if depth == 0 else s[last:])
    return "".join(out)


_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_NUM_RE = re.compile(_NUMBER)
_MIXED_RE = re.compile(r"([-+]?)([0-9]+)\s+(?:and\s+)?([0-9]+)/([0-9]+)")  # "1 1/2", "1 and 1/2"
# A number ("3", "1 1/2", or "(1+1/2)" from latex's "1\\frac{1}{2}"), then its first word.
_UNIT_RE = re.compile(
    rf"({_NUMBER}(?:\s+(?:and\s+)?[0-9]+/[0-9]+)?|[-+]?\([0-9]+\+[0-9]+/[0-9]+\))"
    r"(\s*)([A-Za-z]+)(.*)",
    re.DOTALL,
)
# What may follow the number as its unit: words joined by spaces or ``/ . - ( ) ·``, each
# with at most an exponent digit ("km/h", "m^2", "sq. ft", "o'clock"); no second number.
_UNIT_WORD = r"[A-Za-z'’]+(?:\^\(?[0-9]\)?|[0-9])?"
_UNIT_TAIL_RE = re.compile(rf"{_UNIT_WORD}(?:(?:\s*[/.·()\-]\s*|\s+){_UNIT_WORD})*[\s.()]*")
_UNITS = frozenset(
    ["cm", "mm", "km", "kg", "mg", "lb", "oz", "ft", "yd", "mi", "mph", "hr", "min", "sec", "ml"]
)
# Words that join the number to something else (an operation, an alternative, a contrast):
# "12 minus 3", "5 or 6", "5 and a half" are not "a number and its unit".
_CONNECTIVES = frozenset(
    ["or", "and", "nor", "not", "but", "plus", "minus", "times", "divided", "over"]
    + ["multiplied", "add", "added", "subtract", "subtracted", "than", "versus", "vs"]
    + ["either", "instead", "rather", "except"]
)
_NEGATED_RE = re.compile(  # "5, not 3", "5 (not 3)": the answer is 5
    r"(?:\s*[,;]\s*|\s+)(?:\(\s*not\s[^()]*\)|not\s[^()]*)$", re.IGNORECASE
)
_NAME_LHS_RE = re.compile(r"[A-Za-z_'(), ]+")
_PERCENT_WORD_RE = re.compile(r"(?<=[0-9])\s*(?:percent(?:age)?|pct)$", re.IGNORECASE)
_SUBSCRIPT_RE = re.compile(r"_\(?[0-9A-Za-z]{1,3}\)?")
_BASED_RE = re.compile(r"([0-9A-Za-z]+)_\(?([0-9]{1,2})\)?")
# Scientific notation "1.5e3", "2E-4" (not glued to letters: "2e" stays e).
_SCI_RE = re.compile(r"(?<![A-Za-z0-9.])([0-9]+(?:\.[0-9]+)?)[eE]([-+]?[0-9]{1,3})(?![A-Za-z0-9.])")
# Thousands separated by spaces, "1 000 000" (groups of exactly three digits).
_SPACE_THOUSANDS_RE = re.compile(r"(?<![0-9.,/])[0-9]{1,3}(?: [0-9]{3})+(?![0-9.,/])")
# A decimal comma, only where a thousands separator cannot be meant: "1000,99", "0,5".
# "1000,99", "1234,5", "0,111", "1,22": not 1,234 (thousands) nor 1,2 (a list).
_DECIMAL_COMMA_RE = re.compile(
    r"([-+]?[0-9]+),([0-9]{2}|[0-9]{4,})|([-+]?(?:[0-9]{4,}|0)),([0-9]+)"
)
_RELATIONS = ("<=", ">=", "!=", "<", ">")
_PLAIN_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_LIST_WORD_RE = re.compile(r"\s*,?\s*\b(?:and|or)\b\s*", re.IGNORECASE)
_ABS_RE = re.compile(r"([^|]*)\|([^|]+)\|([^|]*)")
_IN_RE = re.compile(r"[A-Za-z]\s*∈\s*(.+)", re.DOTALL)  # "x ∈ [2, 5)"
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def _close_of(s: str, i: int) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] in "([{":
            depth += 1
        elif s[j] in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for j, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:j])
            start = j + 1
    parts.append(s[start:])
    return parts


def _unit_head(s: str) -> str | None:
    """``s`` without the unit words that end it (``((1)/(3)) meters``, ``2 pi cm^2``): the
    head, if a tail of unit words (``_UNIT_TAIL_RE``, no connective, first word of two or
    more letters and not a function or constant) follows a space; else ``None``."""
    for m in re.finditer(r"\s+", s):
        head, tail = s[: m.start()], s[m.end() :]
        word = re.match(r"[A-Za-z]+", tail)
        if not head.strip() or not word or len(word[0]) < 2:
            continue
        if word[0] in latex.FUNCTIONS or word[0] in latex.NAMES:
            continue
        words = re.findall(r"[A-Za-z]+", tail)
        if _UNIT_TAIL_RE.fullmatch(tail) and not any(w.lower() in _CONNECTIVES for w in words):
            return head
        return None
    return None


def _based(s: str) -> Based | None:
    """``204_5``, ``204_(5)`` (from ``204_{5}``), ``A3F_16``: a numeral in base 2..36."""
    if (m := _BASED_RE.fullmatch(s)) and 2 <= (base := int(m[2])) <= 36:
        try:
            int(m[1], base)
        except ValueError:
            return None
        return Based(m[1].upper().lstrip("0") or "0", base)
    return None


def _leaf(s: str) -> Num | Expr | Based | None:
    s = s.strip()
    if "_" in s and (based := _based(s)) is not None:
        return based
    s = _PERCENT_WORD_RE.sub("%", s)  # "28 percent", "28 pct"
    percent = s.endswith("%")
    if percent:
        s = s[:-1].rstrip()
    if _NUM_RE.fullmatch(s):
        point = s.find(".")
        places = len(s) - point - 1 if 0 <= point < len(s) - 1 else None
        return Num(Fraction(s), places, percent)
    if (m := _MIXED_RE.fullmatch(s)) and int(m.group(3)) < int(m.group(4)):  # not "11 6/6"
        value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return Num(-value if m.group(1) == "-" else value, None, percent)
    word = (m := _UNIT_RE.fullmatch(s)) and m.group(3)  # "18 eggs", "5 km/h", "3cm"
    spaced = len(word or "") >= 2 and m.group(2)  # "18 kg" but not "2x", "2 x", "2xy"
    unit = word and (len(word) >= 4 or word.rstrip("s") in _UNITS or spaced)
    if unit and word not in latex.FUNCTIONS and word not in latex.NAMES:
        tail = m.group(3) + m.group(4)  # only unit words may end the answer: not "12 minus 3"
        words = re.findall(r"[A-Za-z]+", tail)
        if not _UNIT_TAIL_RE.fullmatch(tail) or any(w.lower() in _CONNECTIVES for w in words):
            return None
        return _leaf(m.group(1) + ("%" if percent else ""))
    py = latex.to_python(s)
    tree = latex.parse_tree(py) if py is not None else None
    if tree is None:
        head = _unit_head(s)  # "\\frac{1}{3} \\text{meters}": the value, without its unit
        return _leaf(head + ("%" if percent else "")) if head is not None else None
    if latex.is_numeric(tree) and (value := safe_math.safe_eval_fraction(py)) is not None:
        return Num(value, None, percent)
    return Expr(py, percent)


def _consistent(parts: list[str]) -> bool:
    """Whether the numeric parts of ``a = b = ...`` agree (``7 = 5`` is no answer)."""
    nums = [v for part in parts if isinstance(v := _leaf(part), Num)]
    return all(_FAST.equal(v, nums[-1]) for v in nums[:-1])


def _named(part: str) -> bool:
    """Whether one side of an equation names the answer: letters, no digits (``x``,
    ``f(x)``, ``a_3``, ``\\frac{NO}{BO}``), and not a general expression like ``2x + z``."""
    part = part.strip()
    return bool(_NAME_LHS_RE.fullmatch(part)) or (
        bool(part)
        and not any(c.isdigit() for c in _SUBSCRIPT_RE.sub("", part))
        and not any(op in part for op in "+-*^")
    )


def _numbers_agree(parts: list[str]) -> bool:
    """Whether the plain numbers among the parts of a chain ``a = b = ...`` agree, each
    part read after its last word (a sentence's ``The answer is 7 = 5``): ``x = 5 = 6``
    is no answer, while ``x = 2 + 1 = 4`` is its last part (Math-Verify's rule: a
    chain's arithmetic is the steps' business, not the answer's)."""
    tails = (_WORD_RE.split(part)[-1].strip() for part in parts)
    return _consistent([tail for tail in tails if _NUM_RE.fullmatch(tail)])


def _equation(parts: list[str], depth: int):
    if len(parts) > 2:  # a chain "x = 2 + 1 = 3": its last part, named by the first
        if not _numbers_agree(parts):
            return None
        parts = [parts[0], parts[-1]] if _named(parts[0]) else parts[-1:]
        if len(parts) == 1:
            return _structure(parts[0], depth + 1)
    elif not _consistent(parts):
        return None
    named = [_named(part) for part in parts]
    if named[0] or named[1]:  # "x = 3", "f(x) = 2x", and "3 = x" names the value too
        name, value = parts if named[0] else parts[::-1]
        rhs, name = _structure(value, depth + 1), _leaf(name)
        named_eq = isinstance(rhs, (Num, Expr)) and isinstance(name, Expr)
        return Equation(name, rhs, True) if named_eq else rhs
    lhs, rhs = _leaf(parts[0]), _leaf(parts[1])
    if lhs is None or rhs is None:
        return None
    return rhs if isinstance(lhs, Num) and isinstance(rhs, Num) else Equation(lhs, rhs)


def _numbers(s: str) -> str:
    """Locale and notation forms of whole numbers, at the top of an answer: ``1 000``,
    ``1000,99`` (a decimal comma where no thousands separator can be meant), ``1.5e3``."""
    if m := _DECIMAL_COMMA_RE.fullmatch(s):
        return f"{m[1] or m[3]}.{m[2] or m[4]}"
    s = _SPACE_THOUSANDS_RE.sub(lambda m: m[0].replace(" ", ""), s)
    return _SCI_RE.sub(lambda m: f"({m[1]}*10^({m[2]}))", s)


def _relation(s: str, depth: int):
    """``a < b``, ``x >= 3``, ``f(2) < f(1) < f(4)``: a ``Relation`` of leaves; ``None`` if
    ``s`` has no top-level comparison, ``False`` if it has one but is no relation."""
    s = s.replace("≤", "<=").replace("≥", ">=").replace("≠", "!=")
    parts, ops, level, start, j = [], [], 0, 0, 0
    while j < len(s):
        c = s[j]
        if c in "([{":
            level += 1
        elif c in ")]}":
            level -= 1
        elif level == 0 and c in "<>!":
            op = next(o for o in (*_RELATIONS, c) if s.startswith(o, j))
            if op == "!":
                return False  # a factorial
            parts.append(s[start:j])
            ops.append(op)
            j = start = j + len(op)
            continue
        j += 1
    if not ops:
        return None
    parts.append(s[start:])
    terms = tuple(_structure(p, depth + 1) for p in parts)
    if len(terms) > MAX_ITEMS or not all(isinstance(t, (Num, Expr)) for t in terms):
        return False
    return Relation(terms, tuple(ops))


def _matrix(s: str, depth: int):
    """``⟦a,b;c,d⟧`` (``latex``'s form of a matrix) -> rows of cells."""
    rows = [_split_top(row, ",") for row in s[1:-1].split(";")]
    if sum(len(r) for r in rows) > MAX_ITEMS:
        return None
    cells = tuple(tuple(_structure(c, depth + 1) for c in row) for row in rows)
    if any(c is None for row in cells for c in row):
        return None
    return Seq("matrix", tuple(Seq("tuple", row) for row in cells))


def _structure(s: str, depth: int):
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    if not s or depth > 4:
        return None
    if _PLAIN_NUMBER_RE.fullmatch(s):  # the common case ("18", "-2.5"): nothing to split
        return _leaf(s)
    if depth == 0:
        s = _numbers(s)
    s = re.sub(r"\s+\^", "^", s)
    if "≈" in s:  # "x = 1/3 ≈ 0.33": the exact part; "x ≈ 11": as "x = 11"
        head, _, tail = s.partition("≈")
        s = head if "=" in head or not _named(head) else f"{head}={tail.replace('≈', '=')}"
    if _LIST_WORD_RE.search(s) and not _MIXED_RE.fullmatch(
        s
    ):  # "6 and 8", "19, 46, and 82", "(11,7) or (7,11)": a list
        s = _LIST_WORD_RE.sub(", ", s)
    if ";" in s and s[0] != latex.MATRIX_OPEN:  # "-12;-11;-10", "p=5,q=2;p=7,q=2"
        groups = _split_top(s, ";")
        commas = any(len(_split_top(g, ",")) > 1 for g in groups)
        s = ", ".join(f"({g})" if commas and len(groups) > 1 else g for g in groups)
    if len(s) > 2 and s[0] in "[(" and s[1] == latex.MATRIX_OPEN and s[-2] == latex.MATRIX_CLOSE:
        s = s[1:-1]  # "\\left[\\begin{array}..\\end{array}\\right]"
    s = s.strip()
    if not s:
        return None
    if m := _IN_RE.fullmatch(s):  # "x ∈ [2, 5)": the set
        return _structure(m[1], depth + 1)
    if s[0] == latex.MATRIX_OPEN and s[-1] == latex.MATRIX_CLOSE and s.count("⟦") == 1:
        return _matrix(s, depth)
    if "∪" in s:  # a union of intervals (or sets), in any order
        parts = _split_top(s, "∪")
        parsed = tuple(_structure(p, depth + 1) for p in parts[: MAX_ITEMS + 1])
        ok = len(parts) <= MAX_ITEMS and all(p is not None for p in parsed)
        return Seq("union", parsed) if ok else None
    if (rel := _relation(s, depth)) is not None:
        return rel or None
    if len(ratio := _split_top(s, ":")) == 2:  # "7:32", "12:00": a ratio or a time
        parsed = tuple(_structure(p, depth + 1) for p in ratio)
        ok = all(isinstance(p, (Num, Expr)) for p in parsed)
        return Seq("ratio", parsed) if ok else None
    if s.count("|") == 2 and (m := _ABS_RE.fullmatch(s)):  # "|x - 1|", "2|x|"
        s = f"{m[1]}abs({m[2]}){m[3]}"
    if any(c in s for c in "|⟦⟧∈"):
        return None
    if s == "{}":
        return Seq("set", ())
    if s[0] not in "([{":
        s = _drop_thousands(s)
    items = _split_top(s, ",")
    if len(items) > 1 and all("=" in item for item in items):  # "x = 2, y = 3"
        s = f"({s})"
    parts = _split_top(s, "=")
    if len(parts) > 1:
        return _equation(parts, depth)
    if s[0] in "([{" and _close_of(s, 0) == len(s) - 1:
        items = _split_top(s[1:-1], ",")
        if len(items) == 1 and ";" in s:  # "(0;0;6)"
            items = _split_top(s[1:-1], ";")
        if s[0] == "{" or len(items) > 1:
            if len(items) > MAX_ITEMS:
                return None
            parsed = tuple(_structure(item, depth + 1) for item in items)
            if any(p is None for p in parsed):
                return None
            if s[0] == "{":
                return Seq("set", parsed)
            if s[0] == "(" and s[-1] == ")":
                return Seq("tuple", parsed)
            if len(parsed) == 2 and all(isinstance(p, (Num, Expr)) for p in parsed):
                return Interval(parsed[0], parsed[1], s[0] == "[", s[-1] == "]")
            return Seq("tuple", parsed) if s[0] == "[" and s[-1] == "]" else None
        return _structure(s[1:-1], depth + 1)
    items = _split_top(s, ",")
    if len(items) == 1 and s.count("±") == 1:  # "1 ± √2", "\\frac{-1 \\pm \\sqrt{13}}{4}"
        items = [s.replace("±", "+"), s.replace("±", "-")]
    if len(items) > 1:
        parsed = tuple(_structure(item, depth + 1) for item in items[: MAX_ITEMS + 1])
        ok = len(items) <= MAX_ITEMS and all(p is not None for p in parsed)
        return Seq("list", parsed) if ok else None
    return _leaf(s)


def parse_value(answer: str):
    """An extracted answer -> ``Num``/``Expr``/``Equation``/``Seq``/``Interval``/
    ``Relation``/``Based``, or None. Cached (``parse_cache_clear``): extraction and
    comparison ask for the same answer's value more than once; values are immutable."""
    return _parse(answer) if isinstance(answer, str) else None


def parse_cache_clear() -> None:
    _parse.cache_clear()


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse(answer: str):
    plain = latex.to_plain(answer)
    if plain is None:
        return None
    try:
        return _structure(_NEGATED_RE.sub("", plain), 0)
    except (RecursionError, ValueError, ZeroDivisionError, OverflowError, IndexError):
        return None


_SPACE_RE = re.compile(r"(?:\s|\\[,;! ])+")
_DROP_RE = re.compile(r"\$|\\left|\\right|\.$")
_GAP_RE = re.compile(r" (?![0-9])|(?<![0-9]) ")  # a space, unless between two digits
_FAST = FastLeaves()


def _squash(answer: str) -> str:
    """``answer`` without spaces, ``$``, ``\\left``/``\\right``; "2 3" stays "2 3"."""
    return _GAP_RE.sub("", _SPACE_RE.sub(" ", _DROP_RE.sub("", answer.strip())))


_WORDS_RE = re.compile(r"[A-Za-z\s().,'-]+")


def _text_key(answer: str) -> str:
    """What an unparseable answer is compared by: squashed (``_squash``) after
    ``latex.to_plain`` (``\\text{..}`` keeps its words); a word answer in lower case."""
    plain = latex.to_plain(answer)
    key = _squash(plain if plain is not None else answer)
    return key.lower() if _WORDS_RE.fullmatch(key) else key


def decide(pred_answer: str, ref_answer: str) -> bool | None:
    """Fast in-process verdict on two extracted answers; ``None`` when sympy is needed."""
    a, b = parse_value(pred_answer), parse_value(ref_answer)
    if a is None or b is None:  # unparseable: equal only as squashed texts, both of them
        return a is None and b is None and _text_key(pred_answer) == _text_key(ref_answer)
    try:
        return compare(a, b, _FAST)
    except NeedsSympy:
        return None


def settle(prediction: str, reference: str, extracted: bool = True) -> bool:
    """Full verdict with sympy in this process: what a ``symbolic`` worker runs."""
    if not extracted:
        return any(settle(p, r) for p, r in answer_pairs(prediction, reference))
    verdict = decide(prediction, reference)
    if verdict is None:
        try:
            a, b = parse_value(prediction), parse_value(reference)
            verdict = compare(a, b, symbolic.SympyLeaves())
        except Exception:  # noqa: BLE001  (Refused, or sympy failing on odd input)
            return False
    return verdict


def equal_answers(answer: str, reference: str) -> bool:
    """Whether two final answers (already extracted: ``answer`` from a completion,
    ``reference`` a task's reference answer of any length) are equal: numbers
    in-process, symbolic pairs by sympy under a deadline (``symbolic.equal_many``)."""
    try:
        verdict = decide(answer, reference)
        return verdict if verdict is not None else symbolic.equal_many([(answer, reference)])[0]
    except Exception:  # noqa: BLE001  (hostile input is False, never an exception)
        return False


class _SettleScorer:
    """The sympy pool's ``score_fn`` (``symbolic.make_pool``): ``settle`` as a 1-tuple.
    Unpickling it (in a worker) imports this module and warms sympy first."""

    def __reduce__(self):
        return _warm_settle_scorer, ()

    def __call__(self, prediction, reference, extracted: bool = True) -> tuple[float]:
        return (float(settle(prediction, reference, extracted=extracted)),)


def _warm_settle_scorer() -> _SettleScorer:
    symbolic.warm_sympy()
    return _SettleScorer()


symbolic.set_scorer(_SettleScorer())


def _joined_boxes(text: str) -> str | None:
    """Several boxed answers joined as a list (``\\boxed{1} and \\boxed{2}``,
    ``\\boxed{1},\\boxed{2}``: ``1, 2``); only where the text between them joins them
    (a comma, "and", "or", math delimiters, spacing), and repeats count once. A text with
    over ``4 * MAX_ITEMS`` boxes has no such list (each box scans up to ``_BOX_SCAN``
    characters: thousands of unclosed ``\\boxed{`` took seconds); its last box still
    answers."""
    boxes = text.count("\\boxed") + text.count("\\fbox")
    if not 2 <= boxes <= 4 * MAX_ITEMS:
        return None
    boxes, end = [], None
    for m in _BOX_RE.finditer(text):
        box = _box_at(text, m.start())
        if box is None:
            continue
        if end is not None and not _JOINS_RE.fullmatch(_text_words(text[end : m.start()])):
            boxes = []  # not joined to the earlier ones: a new group starts
        end = m.end() + len(box) + 2
        if (box := _finish(box)) is not None and box not in boxes:
            boxes.append(box)
        if len(boxes) > MAX_ITEMS:
            return None
    return ", ".join(boxes) if len(boxes) >= 2 else None


def _text_words(gap: str) -> str:
    """A gap between two boxes without LaTeX spacing and delimiters: its words."""
    return _GAP_NOISE_RE.sub(" ", gap).strip()


def answer_pairs(prediction: str, reference: str, fallback: bool = True) -> list[tuple[str, str]]:
    """The ``(prediction answer, reference answer)`` pairs a verdict tries, in order: the
    final answers (``extract_answer``; the reference's with the fallback, and a reference
    that is one answer on one line is itself up to ``MAX_ANSWER_CHARS``: a set of 50
    numbers is not its last number); then, where a text has several boxed answers, all
    of them as one list (a reference with several boxes is that list). Equal if any pair
    is: several boxes match only a reference listing the same answers."""
    preds = [extract_answer(prediction, fallback=fallback), _joined_boxes(prediction)]
    refs = [_extract(reference, True, MAX_ANSWER_CHARS), _joined_boxes(reference)]
    preds = [p for i, p in enumerate(preds) if p is not None and p not in preds[:i]]
    refs = [r for i, r in enumerate(refs) if r is not None and r not in refs[:i]]
    return [(p, r) for r in refs for p in preds]


def verify_answer(prediction: str, reference: str, fallback: bool = True) -> bool:
    """Whether the prediction's final answer equals the reference's (module doc).

    ``fallback=False`` takes only a marked answer from the prediction (``<answer>``,
    ``\\boxed``, ``####``, an answer line or phrase), as a training reward should: a
    bare number at the end of the text does not count. The reference always falls back.
    """
    try:
        pending = []
        for p, r in answer_pairs(prediction, reference, fallback):
            verdict = decide(p, r)
            if verdict:
                return True
            if verdict is None:
                pending.append((p, r))
        return bool(pending) and any(symbolic.equal_many(pending))
    except Exception:  # noqa: BLE001  (hostile input is False, never an exception)
        return False


def _as_pair(pair) -> tuple[str, str]:
    """``(prediction, reference)`` as two strings; anything malformed becomes ``("", "")``."""
    try:
        p, r = pair
    except (TypeError, ValueError):
        return "", ""
    return (p, r) if isinstance(p, str) and isinstance(r, str) else ("", "")


def _from_pool(score, n: int) -> list[bool]:
    """Verdicts from the ``n`` rows of ``score()``; all False (logged) if the pool fails."""
    try:
        return [bool(row[0] > 0.5) for row in score()]
    except Exception as e:  # noqa: BLE001  (e.g. workers that cannot start: never raise)
        _log.warning("verify_answers: the sympy worker pool failed (%s); verdicts False.", e)
        return [False] * n


def verify_answers(
    pairs: Iterable[tuple[str, str]], pool: RewardPool | None = None, *, fast_path: bool = True
) -> list[bool]:
    """``verify_answer`` for many ``(prediction, reference)`` pairs, in order.

    Numbers are settled in this process; the pairs that need sympy go in one batch to
    ``pool`` (a ``symbolic.make_pool()``; default: the module's pool). ``fast_path=False``
    sends every pair, whole texts, to the pool (all work under its deadline).
    """
    pairs = [_as_pair(pair) for pair in pairs]
    if not fast_path:
        items = [(p, r, False) for p, r in pairs]
        return _from_pool(
            lambda: symbolic.score_batch(pool or symbolic.default_pool(), items), len(items)
        )
    out = [False] * len(pairs)
    pending: dict[tuple[str, str], list[int]] = {}
    for i, (pred, ref) in enumerate(pairs):
        try:
            undecided = []
            for p, r in answer_pairs(pred, ref):
                verdict = decide(p, r)
                if verdict:
                    out[i] = True
                    break
                if verdict is None:
                    undecided.append((p, r))
            else:
                for key in undecided:
                    pending.setdefault(key, []).append(i)
        except Exception:  # noqa: BLE001
            out[i] = False
    if pending:
        keys = list(pending)
        verdicts = _from_pool(lambda: [(v,) for v in symbolic.equal_many(keys, pool)], len(keys))
        for key, verdict in zip(keys, verdicts):
            for i in pending[key]:
                out[i] = out[i] or verdict
    return out
