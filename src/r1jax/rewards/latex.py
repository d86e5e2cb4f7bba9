"""Math text (LaTeX or plain) -> whitelisted Python expression text -> checked ``ast``.

Final answers arrive as ``\\frac{3}{2}``, ``2\\sqrt{2}``, ``2(x+1)``, ``x^{2} - 1``,
``\\dfrac{\\pi}{4}`` or plain ``3/4``. This module turns one such answer into Python
expression text over a tiny alphabet and parses it into an ``ast`` tree that holds only
whitelisted nodes. Nothing here evaluates anything: ``answers`` evaluates numeric trees
with ``safe_math``'s exact ``Fraction`` walk, ``symbolic`` turns the other trees into
sympy objects node by node. No text ever reaches ``eval``, ``exec``, ``sympify`` or
``parse_expr``.

Three stages, each bounded (``MAX_TEXT_CHARS``, ``MAX_DEPTH``, ``MAX_NODES``):

1. ``to_plain``: LaTeX -> plain math text. A single left-to-right scan with brace
   matching: ``\\frac{a}{b}`` (also ``dfrac``/``tfrac``/``cfrac`` and ``\\frac12``) ->
   ``((a)/(b))``, a product with what precedes it (``x^2\\frac{1}{2}``, ``10^3\\frac12``,
   ``2\\frac{x}{2}``). A *mixed number* ``n\\frac{a}{b}`` -> ``(n+a/b)`` needs integer
   literals ``n``, ``a``, ``b`` and ``n`` starting an operand: at the start, or after an
   operator or opening bracket (``+ - * / ( [ { , = ±``), so ``-1\\frac12`` is -3/2,
   ``2 + 3\\frac{1}{2}`` is 5.5 and ``2\\times 3\\frac12`` is 7, but not after ``^``;
   ``\\sqrt{a}`` -> ``sqrt(a)``, ``\\sqrt[n]{a}`` -> ``root(a,n)``; ``\\cdot``,
   ``\\times`` -> ``*``; ``\\pi`` -> ``pi``, ``\\infty`` -> ``oo``; ``\\left``/``\\right``,
   spacing and ``$`` are dropped; ``\\text{..}`` keeps its words (units, stripped later);
   ``\\{..\\}`` -> ``{..}`` (a set); other ``{..}`` groups -> ``(..)``. Unknown commands
   make the answer unparseable (``None``): the caller falls back to comparing strings,
   except a known spacing or operator command glued to letters (``\\quadx``: ``\\quad``
   then ``x``). Matrices (``pmatrix``, ``bmatrix``, ``array``, ...) become ``⟦a,b;c,d⟧``;
   ``\\in`` -> ``∈``, ``\\approx`` -> ``≈``, ``\\emptyset`` -> ``{}``; ``14{,}916`` and
   ``11,\\! 111`` are thousands; a doubled backslash before a known command
   (``\\\\le``, as escaped text has it) is that command.
   ``answers`` then splits the plain text into the structures below (sets, tuples, ...)
   and hands each leaf to the next stage.
2. ``to_python``: plain text -> Python text. A regex tokenizer (ASCII digits, letters,
   ``+ - * / ^ ( ) ,``; anything else -> ``None``) inserts implicit multiplication
   (``2x``, ``2(x+1)``, ``(a)(b)``, ``2pi``), maps ``^`` to ``**`` and splits letter runs
   into whitelisted names (``a_{37}``, plain ``a_(37)``, is the one name ``a_37``):
   functions (``FUNCTIONS``; written without parentheses they take the run of numbers
   and letters that follows: ``\\sin 2x \\cos y``, ``\\sin^2 x`` = ``(sin(x))^2``),
   constants and Greek letters
   (``NAMES``) and single letters; an unknown run of four or more letters, or one of
   ``and or nor not but``, is a word, not maths (``None``: ``5 or 6`` is no product).
   So no keyword, attribute, string or dunder can be spelled.
3. ``parse_tree``: ``ast.parse(mode="eval")`` after a parenthesis-depth check, then a
   walk that admits only ``BinOp`` (``+ - * / **``), unary ``- +``, int/float constants,
   ``Name`` in the whitelist and ``Call`` of a whitelisted function with positional
   arguments; depth and node count are capped.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction
from typing import NamedTuple

from r1jax.rewards import safe_math

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_TEXT_CHARS",
    "NAMES",
    "Based",
    "Equation",
    "Expr",
    "Interval",
    "Num",
    "Relation",
    "Seq",
    "is_numeric",
    "parse_tree",
    "to_plain",
    "to_python",
]

MAX_TEXT_CHARS = 400  # longest answer (LaTeX or plain) we convert
MAX_DEPTH = 40  # deepest brace/parenthesis nesting and AST depth accepted
MAX_NODES = 300  # largest AST accepted

# Function name -> number of arguments. ``root(a, n)`` is the n-th root (``\sqrt[n]{a}``).
FUNCTIONS = {
    "sqrt": 1, "root": 2, "exp": 1, "log": 1, "ln": 1, "abs": 1,
    "sin": 1, "cos": 1, "tan": 1, "cot": 1, "sec": 1, "csc": 1,
    "arcsin": 1, "arccos": 1, "arctan": 1, "binom": 2, "factorial": 1,
}  # fmt: skip
# Multi-letter names that are one symbol: constants and Greek letters (``lambda`` is
# spelled ``lamda``, as sympy does, since ``lambda`` is a Python keyword).
_GREEK = "alpha beta gamma delta epsilon theta phi psi omega mu sigma tau rho lamda"
NAMES = frozenset(["pi", "oo", *_GREEK.split(" ")])
_WORDS = frozenset(["and", "or", "nor", "not", "but"])  # never a product of letters


# Parsed answers (built by ``answers.parse_value``, compared by ``symbolic.compare``).
class Num(NamedTuple):
    """A number, exact."""

    value: Fraction
    places: int | None  # decimal places if written as a decimal ("0.33" -> 2), else None
    percent: bool = False


class Expr(NamedTuple):
    """An expression with symbols or functions (or out of ``safe_math`` bounds)."""

    text: str  # whitelisted Python expression text (latex.to_python)
    percent: bool = False


class Equation(NamedTuple):
    """``lhs = rhs`` with symbols; ``named``: lhs is a name (``y = 2x``), rhs the answer."""

    lhs: Num | Expr
    rhs: Num | Expr
    named: bool = False


class Seq(NamedTuple):
    """A tuple, set or bare list of parsed answers."""

    kind: str  # "tuple", "set" or "list"
    items: tuple


class Relation(NamedTuple):
    """An inequality or a chain of them: ``terms[0] ops[0] terms[1] ops[1] ...``, with
    ``ops`` among ``< <= > >= !=``."""

    terms: tuple
    ops: tuple


class Based(NamedTuple):
    """A numeral in a base: ``204_5`` is ``Based("204", 5)``."""

    digits: str
    base: int


class Interval(NamedTuple):
    """``[lo, hi)`` and the like."""

    lo: Num | Expr
    hi: Num | Expr
    lo_closed: bool
    hi_closed: bool


_FRACS = {"frac", "dfrac", "tfrac", "cfrac"}
_TEXTS = {"text", "textrm", "textit", "textbf", "mbox", "mathrm", "mathbf", "mathit"}
_TEXTS |= {"textnormal", "operatorname", "mathsf", "mathbb", "boldsymbol"}
_DROP = {"left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr", "bigg", "Bigg"}
_DROP |= {"displaystyle", "textstyle", ",", ";", ":", "!", " ", "quad", "qquad", "$"}
_DROP |= {"circ", "degree", "limits", "dots", "ldots", "cdots", "\\"}
_OPS = {"cdot": "*", "times": "*", "ast": "*", "div": "/", "{": "\\{", "}": "\\}"}
_OPS |= {"%": "%", "lbrace": "\\{", "rbrace": "\\}", "approx": "≈", "colon": ":"}
_OPS |= {"le": "<=", "leq": "<=", "ge": ">=", "geq": ">=", "neq": "!=", "ne": "!="}
_OPS |= {"lt": "<", "gt": ">", "pm": "±", "mp": "∓", "cup": "∪", "infty": " oo "}
_OPS |= {"langle": "(", "rangle": ")", "lvert": "|", "rvert": "|", "vert": "|", "mid": "|"}
_OPS |= {"lambda": " lamda ", "varepsilon": " epsilon ", "varphi": " phi "}
_OPS |= {"in": "∈", "emptyset": "\\{\\}", "varnothing": "\\{\\}", "&": "&"}
_OPS |= {"arcsin": " arcsin ", "arccos": " arccos ", "arctan": " arctan "}
_OPS |= {name: f" {name} " for name in NAMES | FUNCTIONS.keys() if name not in ("oo", "root")}
_UNICODE = str.maketrans(
    {"−": "-", "–": "-", "×": "*", "·": "*", "÷": "/", "π": " pi ", "∞": " oo ", "°": ""}
    | {"~": " "}  # LaTeX's non-breaking space: "18~\\text{dollars}"
)

_CMD_RE = re.compile(r"\\([A-Za-z]+|.)", re.DOTALL)
# "\\\\le" (a doubled backslash, as JSON-escaped text has it) before a known command is
# that command; before anything else it is a line break.
_DOUBLED_RE = re.compile(
    r"\\\\(?=(?:d?frac|tfrac|le|leq|ge|geq|lt|gt|neq|ne|left|right|sqrt|pi|cdot|times|infty"
    r"|text|mathrm|in|cup|pm|boxed|begin|end)(?![A-Za-z]))"
)
_BRACED_COMMA_RE = re.compile(r"(?<=[0-9])\s*\{\s*,\s*\}\s*(?=[0-9])")  # "14{,}916"
_THIN_THOUSANDS_RE = re.compile(r"(?<=[0-9]),\\!\s*(?=[0-9]{3})")  # "11,\\! 111"
_MATRICES = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "smallmatrix", "array"}
MATRIX_OPEN, MATRIX_CLOSE = "⟦", "⟧"  # what a matrix becomes: ⟦a,b;c,d⟧
# The whole part of a mixed number: an integer that starts an operand (nothing before it,
# or an operator or opening bracket), so not an exponent ("x^2\\frac12") nor glued on.
_MIXED_WHOLE_RE = re.compile(r"(?:^|[-+*/(\[{,=±∓])(\s*)([0-9]+)$")
_CIRC_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\^\s*\{\s*\}")
_TOKEN_RE = re.compile(
    r"\s+|([0-9]+\.?[0-9]*|\.[0-9]+)|([A-Za-z]_\(?[0-9A-Za-z]{1,3}\)?(?![0-9A-Za-z]))"
    r"|([A-Za-z]+)|(\*\*|[-+*/^(),])"
)
_SUBSCRIPTED_RE = re.compile(r"[A-Za-z]_[0-9A-Za-z]{1,3}")  # the name "a_37" of "a_{37}"


class _Fail(Exception):
    """Internal: the text is outside what we convert."""


def _group(s: str, i: int) -> tuple[str, int]:
    """The content of the ``{...}`` starting at ``s[i]`` and the index after it."""
    depth = 0
    for j in range(i, len(s)):
        c = s[j]
        if c == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Fail("depth")
        elif c == "}" and (j == 0 or s[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise _Fail("unbalanced brace")


def _arg(s: str, i: int) -> tuple[str, int]:
    """One macro argument at ``s[i]``: a ``{group}``, a ``\\command`` or a single char."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise _Fail("missing argument")
    if s[i] == "{":
        return _group(s, i)
    if s[i] == "\\":
        m = _CMD_RE.match(s, i)
        return m.group(0), m.end()
    return s[i], i + 1


def _has_top_comma(s: str) -> bool:
    depth = 0
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            return True
    return False


def _matrix(s: str, i: int, depth: int) -> tuple[str, int]:
    """``\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}`` (from after ``\\begin``) ->
    ``⟦a,b;c,d⟧`` and the index after ``\\end{..}``; other environments fail."""
    env, i = _arg(s, i)
    if env not in _MATRICES:
        raise _Fail(f"environment {env}")
    if env == "array" and i < len(s) and s[i] == "{":
        _, i = _group(s, i)  # the column spec
    end = s.find(f"\\end{{{env}}}", i)
    if end < 0:
        raise _Fail("unclosed environment")
    rows = [r for r in re.split(r"\\\\(?:\[[^\]]*\])?", s[i:end]) if r.strip()]
    cells = [[_convert(c, depth + 1).strip() for c in r.split("&")] for r in rows]
    if not cells or any(not c for r in cells for c in r) or len({len(r) for r in cells}) != 1:
        raise _Fail("ragged matrix")
    body = ";".join(",".join(r) for r in cells)
    return f"{MATRIX_OPEN}{body}{MATRIX_CLOSE}", end + len(env) + 6


_SPLITTABLE = sorted(
    (c for c in _DROP | _OPS.keys() if len(c) >= 4 and c.isalpha()), key=len, reverse=True
)


def _known_prefix(name: str) -> str | None:
    """A known command glued to letters (``quadx`` in ``\\quadx_{2}``) of a spacing or
    operator command (four letters or more), or ``None``."""
    return next((c for c in _SPLITTABLE if name.startswith(c) and len(name) > len(c)), None)


_REPEATING_RE = re.compile(r"([0-9]*)\.([0-9]*)$")  # what precedes "\\overline{..}"
_FACTORIAL_RE = re.compile(r"(?<![0-9.])([0-9]{1,3})!(?!=)")  # "10!" (not "!=")


def _repeating(m: re.Match, repeat: str) -> str:
    """``I.A`` then ``\\overline{R}`` -> the exact fraction, as ``(p/q)``."""
    whole, fixed = m[1] or "0", m[2]
    den = 10 ** len(fixed) * (10 ** len(repeat) - 1)
    num = int(fixed + repeat) - int(fixed or "0") + int(whole) * den
    return f"({num}/{den})"


def _convert(s: str, depth: int) -> str:
    if depth > MAX_DEPTH:
        raise _Fail("depth")
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            m = _CMD_RE.match(s, i)
            if m is None:
                raise _Fail("dangling backslash")
            name, i = m.group(1), m.end()
            if name in _FRACS:
                a, i = _arg(s, i)
                b, i = _arg(s, i)
                a, b = _convert(a, depth + 1).strip(), _convert(b, depth + 1).strip()
                tail = "".join(out).rstrip()
                whole = _MIXED_WHOLE_RE.search(tail)
                if whole and a.isdigit() and b.isdigit():  # "3\\frac{1}{2}": 3 + 1/2
                    out = [tail[: whole.start(2)], f"({whole[2]}+{a}/{b})"]
                else:  # "x^2\\frac{1}{2}", "10^3\\frac12": a product, as "2\\sqrt{2}"
                    out.append(f"(({a})/({b}))")
            elif name == "binom":
                a, i = _arg(s, i)
                b, i = _arg(s, i)
                out.append(f" binom({_convert(a, depth + 1)},{_convert(b, depth + 1)})")
            elif name == "log" and i < n and s[i] == "_":  # "\\log_2 8": log(8)/log(2)
                base, i = _arg(s, i + 1)
                out.append(f" (1/log({_convert(base, depth + 1)})) log ")
            elif name == "overline" and (m := _REPEATING_RE.search("".join(out))):
                digits, i = _arg(s, i)  # "0.\\overline{3}": a repeating decimal, exact
                if not digits.isdigit() or len(digits) > 12:
                    raise _Fail("repeating digits")
                text = "".join(out)
                out = [text[: m.start()], _repeating(m, digits)]
            elif name == "sqrt":
                index = None
                if i < n and s[i] == "[":
                    close = s.find("]", i)
                    if close < 0:
                        raise _Fail("unclosed [")
                    index, i = _convert(s[i + 1 : close], depth + 1), close + 1
                a, i = _arg(s, i)
                a = _convert(a, depth + 1)
                out.append(f"root({a},{index})" if index else f"sqrt({a})")
            elif name in _TEXTS:
                a, i = _arg(s, i)
                out.append(f" {_convert(a, depth + 1)} ")
            elif name == "begin":
                text, i = _matrix(s, i, depth)
                out.append(text)
            elif name in _DROP:
                continue
            elif name in _OPS:
                out.append(_OPS[name])
            elif (known := _known_prefix(name)) is not None:  # "\\quadx": "\\quad" then "x"
                i -= len(name) - len(known)  # the letters after it are read next
                out.append(" " if known in _DROP else _OPS[known])
            else:
                raise _Fail(f"unknown command \\{name}")
        elif c == "{":
            inner, i = _group(s, i)
            conv = _convert(inner, depth + 1)
            out.append(f"\\{{{conv}\\}}" if _has_top_comma(conv) else f"({conv})")
        elif c == "}":
            raise _Fail("unbalanced brace")
        elif c == "$":
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def to_plain(text: str) -> str | None:
    """LaTeX (or already plain) math text -> plain text; sets come out as ``{a, b}``."""
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None
    s = _BRACED_COMMA_RE.sub(",", _CIRC_RE.sub("", text.translate(_UNICODE)))
    s = _DOUBLED_RE.sub(r"\\", _THIN_THOUSANDS_RE.sub(",", s))
    s = _FACTORIAL_RE.sub(r" factorial(\1) ", s)
    if "\\" not in s and "{" not in s and "$" not in s:
        return s.strip()  # the common case: nothing to convert
    try:
        out = _convert(s, 0)
    except (_Fail, RecursionError):
        return None
    return out.replace("\\{", "{").replace("\\}", "}").strip()


def _split_letters(run: str) -> list[tuple[str, str]] | None:
    """A letter run -> [(kind, name)]: one known name, or up to three single letters."""
    if run in FUNCTIONS:
        return [("func", run)]
    if run in NAMES:
        return [("name", run)]
    if len(run) > 3 or run.lower() in _WORDS:
        return None  # a word ("eggs", "hours", "or": "5 or 6"), not maths
    return [("name", ch) for ch in run]


def _group_end(tokens: list, i: int) -> int:
    """The index after the parenthesised group opening at ``tokens[i]``, or -1."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == "(":
            depth += 1
        elif tokens[j][1] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _apply_functions(tokens: list) -> list | None:
    """Brackets a function's argument written without parentheses, as LaTeX does:
    ``sin x`` -> ``sin(x)``, ``sin 2x cos y`` -> ``sin(2x) cos(y)`` (the argument is the
    run of numbers and letters that follows), ``sin^2 x`` and ``sin^2(x)`` ->
    ``(sin(x))^2``. ``None`` when a function has no argument."""
    out = list(tokens)
    i = 0
    while i < len(out):
        kind, tok = out[i]
        if kind != "func":
            i += 1
            continue
        j, power = i + 1, []
        if j < len(out) and out[j][1] == "^":  # "sin^2 x": a power of the function's value
            if j + 1 < len(out) and out[j + 1][0] == "num":
                power, j = out[j : j + 2], j + 2
            elif j + 1 < len(out) and out[j + 1][1] == "(" and (e := _group_end(out, j + 1)) > 0:
                power, j = out[j:e], e
            else:
                return None
        if j < len(out) and out[j][1] == "(":
            if not power:
                i += 1
                continue
            end = _group_end(out, j)
            if end < 0:
                return None
            arg = out[j + 1 : end - 1]
        else:
            end = j
            while end < len(out) and out[end][0] in ("num", "name"):
                end += 1
            arg = out[j:end]
        if not arg:
            return None
        call = [(kind, tok), ("op", "("), *arg, ("op", ")")]
        if power:
            call = [("op", "("), *call, ("op", ")"), *power]
        out[i:end] = call
        i += 2 if power else 1
    return out


def to_python(plain: str) -> str | None:
    """Plain math text -> whitelisted Python expression text, or ``None``."""
    if not isinstance(plain, str) or len(plain) > MAX_TEXT_CHARS:
        return None
    tokens: list[tuple[str, str]] = []
    pos, n = 0, len(plain)
    while pos < n:
        m = _TOKEN_RE.match(plain, pos)
        if m is None:
            return None  # a character outside the alphabet
        pos = m.end()
        if m.group(1):
            digits = m.group(1)
            if "." not in digits:
                digits = digits.lstrip("0") or "0"  # Python refuses "007" (not "007.5")
            tokens.append(("num", digits))
        elif m.group(2):  # "a_{37}" (plain "a_(37)"): one name, "a_37"
            tokens.append(("name", m.group(2).replace("(", "").replace(")", "")))
        elif m.group(3):
            names = _split_letters(m.group(3))
            if names is None:
                return None
            tokens.extend(names)
        elif m.group(4):
            tokens.append(("op", m.group(4)))
    tokens = _apply_functions(tokens)
    if tokens is None:
        return None
    out: list[str] = []
    prev = None
    for kind, tok in tokens:
        if prev is not None:
            pkind, ptok = prev
            if pkind == "func" and tok != "(":
                return None
            if pkind == "num" and kind == "num":
                return None  # "2 3" is not an expression
            ends_operand = pkind in ("num", "name") or ptok == ")"
            starts_operand = kind in ("num", "name", "func") or tok == "("
            if ends_operand and starts_operand:
                out.append("*")
        out.append("**" if tok == "^" else tok)
        prev = (kind, tok)
    if prev is not None and prev[0] == "func":
        return None
    return "".join(out) or None


def _check(node: ast.AST, depth: int, count: list[int]) -> None:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise _Fail("too big")
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):  # not bool, str, bytes, Ellipsis
            raise _Fail("constant")
    elif isinstance(node, ast.Name):
        plain = len(node.id) == 1 or node.id in NAMES
        if not _SUBSCRIPTED_RE.fullmatch(node.id) and not (plain and node.id.isalpha()):
            raise _Fail("name")
        if not node.id.isascii():
            raise _Fail("name")
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _Fail("unary op")
        _check(node.operand, depth + 1, count)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            raise _Fail("binary op")
        _check(node.left, depth + 1, count)
        _check(node.right, depth + 1, count)
    elif isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name) or FUNCTIONS.get(func.id) != len(node.args):
            raise _Fail("call")
        if node.keywords:
            raise _Fail("keywords")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise _Fail("starred")
            _check(arg, depth + 1, count)
    else:
        raise _Fail(type(node).__name__)  # Attribute, Subscript, Lambda, Tuple, ...


def parse_tree(py_text: str) -> ast.expr | None:
    """Parses ``to_python`` output into an AST of whitelisted nodes only, or ``None``."""
    if not isinstance(py_text, str) or not py_text or len(py_text) > 2 * MAX_TEXT_CHARS:
        return None
    if not safe_math.parens_ok(py_text, MAX_DEPTH):
        return None
    try:
        tree = ast.parse(py_text, mode="eval")
        _check(tree.body, 0, [0])
    except (_Fail, SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    return tree.body


def is_numeric(tree: ast.AST) -> bool:
    """True if the tree has no names and no calls (plain arithmetic on numbers)."""
    return not any(isinstance(n, (ast.Name, ast.Call)) for n in ast.walk(tree))
