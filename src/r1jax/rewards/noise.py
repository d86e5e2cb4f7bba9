"""Reward-hacking defences by noise: Gaussian reward noise and surface perturbation.

Two independent knobs (``RewardNoise``), both off by default:

* ``reward_std``: ``r' = r + reward_std * z`` with ``z ~ N(0, 1)`` per completion.
  Small noise blurs the tiny, systematic reward differences a policy could otherwise
  climb (ties between surface variants, rounding quirks) without moving the mean.
* ``perturb_prob``: with this probability a completion is passed through
  ``perturb_surface`` before the verifier sees it. The rewrite changes only the surface
  form, never what any step or the final answer says, so a correct verifier returns
  the same verdict; a policy that found one surface form the verifier mishandles can
  no longer count on it being seen.

``perturb_surface`` rewrites only the lines the verifier reads (step lines, those with
``=`` before the first ``####`` line, and the text after that line's ``####``, with the
gap before it set to 0, 1 or 2 spaces); prose and everything after the answer line are
left alone. Its rewrites, each chosen at random:

1. Spacing: a run of plain spaces between an operator character (``+-*/^=()``) and a
   non-space, non-operator character is removed or set to one or two spaces, and such a
   boundary without a space may get one. Spaces between two operators (``2* *3``) or
   two operands (``1 2``), tabs and other whitespace are never touched, so tokens are
   never merged or split.
2. Thousands separators: an integer of four or more digits gets them (``1200`` ->
   ``1,200``) and a well-formed grouped number loses them (``1,200`` -> ``1200``), only
   when it stands alone: preceded by start, space, tab, an operator or ``$`` (not a
   digit, ``.`` or ``,``) and followed by end, space, tab, an operator or ``.``.
3. Decimal form: such a standalone integer without leading zeros may get ``.0``
   (``18`` -> ``18.0``), when not preceded by ``$`` nor followed by ``.``.

Why the verdict cannot change under ``verifier.EquationVerifier``: (2) only adds or
removes commas that ``safe_math``'s thousands rule removes anyway (a digit, a comma,
exactly three digits, a non-digit), so the text it evaluates is identical; (3) swaps an
integer literal for an equal float literal, which ``safe_math`` converts exactly; (1)
only moves spaces where Python's tokenizer ignores them and ``str.strip`` trims them. A
rewritten line is kept only if it and the original both stay within the verifier's
length caps (``verifier.MAX_STEP_CHARS`` per step, ``safe_math.MAX_EXPR_CHARS`` per
side or answer); otherwise the line is left as it was. The property test in
``tests/rewards/noise_test.py`` checks verdict equality on random and hostile texts.

Reproducibility: ``derive_rng(seed, step, index, stream)`` seeds a fresh
``numpy.random.Generator`` from ``SeedSequence([stream, seed, step, index])``, so a
completion's noise depends only on the config seed, the training step and its index in
the batch, not on worker scheduling or call order. Cost: ``perturb_surface`` is linear
in the length of the rewritten lines, a few microseconds per token.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from r1jax.rewards import safe_math, verifier

__all__ = [
    "STREAM_REWARD",
    "STREAM_SURFACE",
    "RewardNoise",
    "add_reward_noise",
    "derive_rng",
    "perturb_surface",
]

STREAM_REWARD = 0  # derive_rng stream of the Gaussian reward noise
STREAM_SURFACE = 1  # derive_rng stream of the surface perturbation

_OPS = frozenset("+-*/^=()")
_BEFORE = frozenset(" \t+-*/^(=$")  # may precede a rewritten number (None: start)
_AFTER = frozenset(" \t+-*/^)=")  # may follow one (None: end); "." for separators only
# Grouped numbers first ("12,345" but not "12,3456" nor "1,234,"), then digit runs,
# space runs, and any single character. ASCII digits only: "\d" would match "٣".
_BULLET_SIGNS = frozenset("-*+–")  # list markers when a space follows them
_LIST_MARKER_RE = re.compile(r"[^\S\n]*[-*+–][^\S\n]+")  # as steps.check_steps reads it
_TOKEN_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?![0-9,])|[0-9]+| +|[\s\S]")
_P_NUMBER = 0.5  # chance to add or remove thousands separators of an eligible number
_P_DECIMAL = 0.2  # chance to append ".0" to an eligible integer
_P_SPACE = 0.5  # chance to re-space one eligible boundary (spacing style "random")


@dataclasses.dataclass(frozen=True)
class RewardNoise:
    """Noise-injection config; both parts off by default (see the module docstring)."""

    # sigma of the Gaussian noise added to the total reward; 0 disables it.
    reward_std: float = 0.0
    # Chance that a completion's surface form is perturbed before verification.
    perturb_prob: float = 0.0
    # Base seed; with the step and the index it fixes every draw.
    seed: int = 0

    def __post_init__(self):
        std = self.reward_std
        if not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
            raise ValueError(f"RewardNoise.reward_std={std!r}: must be a finite number >= 0.")
        p = self.perturb_prob
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RewardNoise.perturb_prob={p!r}: must lie in [0, 1].")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"RewardNoise.seed={self.seed!r}: must be an int >= 0.")

    def perturb(self, text: str, step: int, index: int) -> str:
        """``text``, or with probability ``perturb_prob`` its ``perturb_surface`` rewrite."""
        if self.perturb_prob <= 0.0:
            return text
        rng = derive_rng(self.seed, step, index, STREAM_SURFACE)
        if rng.random() >= self.perturb_prob:
            return text
        return perturb_surface(text, rng)

    def noisy_rewards(self, rewards: np.ndarray, step: int, index: int = 0) -> np.ndarray:
        """``add_reward_noise`` with the generator of ``(seed, step, index)``."""
        rng = derive_rng(self.seed, step, index, STREAM_REWARD)
        return add_reward_noise(rewards, self.reward_std, rng)


def derive_rng(seed: int, step: int, index: int, stream: int = 0) -> np.random.Generator:
    """A generator determined by ``(stream, seed, step, index)``, all ints >= 0."""
    entropy = [stream, seed, step, index]
    for value in entropy:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"derive_rng: {entropy} must all be ints >= 0.")
    return np.random.default_rng(np.random.SeedSequence([int(v) for v in entropy]))


def add_reward_noise(rewards: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``rewards + std * N(0, 1)`` elementwise, as a new float array of the same shape.

    A floating input keeps its dtype, anything else becomes float64. ``std == 0``
    returns a copy and draws nothing from ``rng``.
    """
    try:
        std = float(std)
    except (TypeError, ValueError):
        raise ValueError(f"add_reward_noise: std={std!r} is not a number.") from None
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"add_reward_noise: std={std!r} must be finite and >= 0.")
    arr = np.asarray(rewards)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    if std == 0.0:
        return arr.astype(dtype, copy=True)
    return (arr + std * rng.standard_normal(arr.shape)).astype(dtype)


def _neighbour(tokens: list[str], i: int, step: int) -> str | None:
    j = i + step
    if 0 <= j < len(tokens):
        return tokens[j][-1] if step < 0 else tokens[j][0]
    return None


def _rewrite_number(token: str, before: str | None, after: str | None, rng) -> str:
    if before not in _BEFORE and before is not None:
        return token
    if after is not None and after not in _AFTER and after != ".":
        return token
    grouped = "," in token
    if token[0] == "0" and len(token) > 1 and not grouped:
        return token  # leading zeros ("007"): leave alone
    if grouped and rng.random() < _P_NUMBER:
        token = token.replace(",", "")
    elif not grouped and len(token) >= 4 and rng.random() < _P_NUMBER:
        head = len(token) % 3 or 3
        token = ",".join([token[:head]] + [token[i : i + 3] for i in range(head, len(token), 3)])
    if after != "." and before != "$" and rng.random() < _P_DECIMAL:
        token += ".0"
    return token


def _space(a: str | None, b: str | None) -> bool:
    """True iff a space between characters ``a`` and ``b`` may be added or removed."""
    if a is None or b is None or a.isspace() or b.isspace():
        return False
    return (a in _OPS) != (b in _OPS)


def _rewrite_line(body: str, rng) -> str:
    marker = _LIST_MARKER_RE.match(body)  # "- 9 * 2 = 18": the space after the marker
    if marker:  # stays ("-9" would be a sign)
        return marker.group() + _rewrite_line(body[marker.end() :], rng)
    tokens = _TOKEN_RE.findall(body)
    style = int(rng.integers(4))  # 0 keep, 1 compact, 2 spread, 3 random per boundary
    # A sign first on the line keeps touching its number ("- 3" would be a list marker).
    lead = next((k for k, t in enumerate(tokens) if not t.isspace()), -1)
    out: list[str] = []
    for i, tok in enumerate(tokens):
        before, after = _neighbour(tokens, i, -1), _neighbour(tokens, i, 1)
        if tok[0] == " ":
            if style and _space(before, after):
                if style == 1:
                    tok = ""
                elif style == 2:
                    tok = " "
                elif rng.random() < _P_SPACE:
                    tok = " " * int(rng.integers(3))
            out.append(tok)
            continue
        if "0" <= tok[0] <= "9":
            tok = _rewrite_number(tok, before, after, rng)
        out.append(tok)
        # No space between this token and the next: maybe insert one.
        if (
            style >= 2
            and after is not None
            and after != " "
            and _space(tok[-1], after)
            and not (i == lead and tok in _BULLET_SIGNS)
            and (style == 2 or rng.random() < _P_SPACE)
        ):
            out.append(" ")
    return "".join(out)


def _within_caps(body: str, is_answer: bool) -> bool:
    """True iff no length cap of the verifier applies to this step or answer line."""
    text = body.strip()
    if is_answer:
        return len(text[len(verifier.ANSWER_MARKER) :].strip()) <= safe_math.MAX_EXPR_CHARS
    if len(text) > verifier.MAX_STEP_CHARS:
        return False
    return all(len(side) <= safe_math.MAX_EXPR_CHARS for side in text.split("="))


def perturb_surface(text: str, rng: np.random.Generator) -> str:
    """A random, verdict-preserving rewrite of a solution's surface form (module doc).

    Deterministic given the state of ``rng``. Never raises on any ``str``; anything
    else is returned unchanged.
    """
    if not isinstance(text, str):
        return text
    lines = text.splitlines(keepends=True)
    out = []
    done = False
    for line in lines:
        body = line.splitlines()[0] if line else ""
        ending = line[len(body) :]
        stripped = "" if done else body.strip()
        is_answer = stripped.startswith(verifier.ANSWER_MARKER)
        if done or not (is_answer or "=" in stripped) or not _within_caps(body, is_answer):
            out.append(line)
        elif is_answer:
            # The answer is the stripped text after the marker: rewrite that text on its
            # own and re-space the gap before it (0 to 2 spaces), which strip removes.
            cut = body.index(verifier.ANSWER_MARKER) + len(verifier.ANSWER_MARKER)
            rest = _rewrite_line(body[cut:], rng).lstrip(" ")
            new = body[:cut] + " " * int(rng.integers(3)) + rest
            out.append((new if _within_caps(new, is_answer) else body) + ending)
        else:
            new = _rewrite_line(body, rng)
            out.append((new if _within_caps(new, is_answer) else body) + ending)
        done = done or is_answer
    return "".join(out)
