"""Parses a step-by-step solution and checks its steps and final answer.

The format the policy is taught (GSM8K-like, one step equation per line)::

    7*4=28
    28-5=23
    #### 23

Lines before the first line starting with ``####`` that contain ``=`` are *steps*; other
lines (prose, blank lines) are ignored. The text after ``####`` is the *answer*. A step
is valid when every side of its (possibly chained) equation evaluates, through the
whitelisted ``safe_math`` evaluator, to the same exact rational. The answer is correct
when it is a number written out (``safe_math.parse_answer``: ``23``, ``1,200``, ``3/4``;
not an expression such as ``28-5``) equal to the reference answer exactly.

In the R1 layout (``EquationVerifier(answer_tag=True)``) the answer is the content of
``<answer>...</answer>`` instead, and the steps are the equation lines before it::

    <think>
    7*4=28
    28-5=23
    </think>
    <answer>23</answer>

The tag's content may span lines (``<answer>\n23\n</answer>``).

Extension point: a task says how its completions are scored by its ``verifier``
(``tasks.Task``), an object with ``verify(completion, reference) -> Verdict`` (the
``Verifier`` protocol) and, for the reward parts that look inside a solution,
``parse(completion) -> ParsedSolution`` (steps and answer: novelty, subgoals),
``check_step(step) -> bool`` (subgoals) and ``step_ends(completion) -> [(end_char,
valid)]`` (dense rewards); ``composite.score`` falls back to this module's functions for
the ones a verifier lacks. ``EquationVerifier`` reads the format above;
``free_form.FreeFormVerifier`` reads word-problem solutions (GSM8K: any step equation in
prose, answers in ``<answer>``, ``\\boxed{}``, ``####`` or "The answer is"). Verifiers
are sent to worker processes (``host.RewardPool``), so they must be picklable: plain
classes with plain attributes.

Everything here is pure Python over untrusted text and never raises on hostile input;
its cost is linear in the text length, with per-step and per-expression caps.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Protocol, runtime_checkable

from r1jax.rewards import safe_math
from r1jax.rewards.novelty import progress_steps

__all__ = [
    "ANSWER_MARKER",
    "DEFAULT_VERIFIER",
    "MAX_CHECKED_STEPS",
    "MAX_STEP_CHARS",
    "EquationVerifier",
    "ParsedSolution",
    "Verdict",
    "Verifier",
    "check_step",
    "parse_solution",
    "step_ends",
    "verify",
]

ANSWER_MARKER = "####"  # a line starting with this carries the final answer
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"  # the R1 answer tags (answer_tag=True)
MAX_STEP_CHARS = 1000  # longer step lines are invalid without being evaluated
MAX_CHECKED_STEPS = 1000  # steps beyond this many are counted but not checked (invalid)


@dataclasses.dataclass(frozen=True)
class ParsedSolution:
    """A completion split into step equations and the final answer text."""

    steps: tuple[str, ...]  # stripped lines containing "=" before the answer line
    answer: str | None  # stripped text after "####"; None if there is no such line


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a verifier concluded about one completion."""

    answer_correct: bool  # final answer equals the reference exactly
    num_steps: int  # number of step equations found
    valid_steps: int  # how many of them check out
    has_answer: bool  # an answer line with non-empty text was found
    # How many valid steps move the solution forward (``novelty.progress_steps``: not a
    # restatement such as ``1=1`` or ``28*1=28``, not a recomputation, and used by a later
    # step or the answer): step credit counts these (``composite.score``). None: the
    # verifier does not say, and step credit counts ``valid_steps``.
    credited_steps: int | None = None


@runtime_checkable
class Verifier(Protocol):
    """Scores one completion against one reference answer."""

    def verify(self, completion: str, reference: str) -> Verdict: ...


def _tag_answer(text: str, start: int) -> str:
    """The answer in ``text`` after the ``<answer>`` that ends at ``start``: everything up
    to ``</answer>``, across lines (``<answer>\n23\n</answer>`` holds ``23``), or the
    rest of its line when the tag is never closed."""
    end = text.find(ANSWER_CLOSE, start)
    if end < 0:
        rest = text[start:].splitlines()
        return rest[0].strip() if rest else ""
    return text[start:end].strip()


def parse_solution(text: str, answer_tag: bool = False) -> ParsedSolution:
    """Splits ``text`` into step equations and the ``####`` answer (see module doc);
    with ``answer_tag`` a line holding ``<answer>`` ends the steps too and its tag's
    content is the answer."""
    if not isinstance(text, str):
        return ParsedSolution(steps=(), answer=None)
    steps = []
    answer = None
    pos = 0
    for raw in text.splitlines(keepends=True):
        line = raw.strip()
        if line.startswith(ANSWER_MARKER):
            answer = line[len(ANSWER_MARKER) :].strip()
            break
        if answer_tag and (at := raw.find(ANSWER_OPEN)) >= 0:
            answer = _tag_answer(text, pos + at + len(ANSWER_OPEN))
            break
        if "=" in line:
            steps.append(line)
        pos += len(raw)
    return ParsedSolution(steps=tuple(steps), answer=answer)


def step_ends(text: str, answer_tag: bool = False, check=None) -> list[tuple[int, bool]]:
    """``[(end_char, valid)]`` for each step of ``parse_solution(text, answer_tag)``:
    ``end_char`` is the index of the step's last non-blank character in ``text``."""
    check = check_step if check is None else check
    out = []
    pos = 0
    for raw in text.splitlines(keepends=True) if isinstance(text, str) else ():
        start, pos = pos, pos + len(raw)
        line = raw.strip()
        if line.startswith(ANSWER_MARKER) or (answer_tag and ANSWER_OPEN in line):
            break
        if "=" in line and len(out) < MAX_CHECKED_STEPS:
            end = start + len(raw.rstrip()) - 1
            out.append((end, bool(check(line))))
    return out


def check_step(step: str) -> bool:
    """True iff ``step`` is ``a=b`` or ``a=b=c...`` with all sides equal exact rationals.

    Every side must pass ``safe_math.safe_eval``; an empty side (``a==b``, ``=3``) or any
    unparseable side makes the step invalid.
    """
    if not isinstance(step, str) or len(step) > MAX_STEP_CHARS:
        return False
    sides = step.split("=")
    if len(sides) < 2:
        return False
    first = safe_math.safe_eval_fraction(sides[0])
    if first is None:
        return False
    for side in sides[1:]:
        value = safe_math.safe_eval_fraction(side)
        if value is None or value != first:
            return False
    return True


class EquationVerifier:
    """The default ``Verifier``: one ``a=b`` equation per step, ``#### answer`` last
    (with ``answer_tag``, or ``<answer>answer</answer>``: the R1 layout).

    Subclasses may override any of ``parse``, ``check_step``, ``parse_answer`` to accept
    richer notation while keeping ``verify``'s counting and comparison.
    """

    answer_tag = False  # class default: subclasses that skip __init__ keep the #### layout

    def __init__(self, answer_tag: bool = False):
        self.answer_tag = bool(answer_tag)

    def parse(self, completion: str) -> ParsedSolution:
        return parse_solution(completion, self.answer_tag)

    def step_ends(self, completion: str) -> list[tuple[int, bool]]:
        """Where each step ends (character index) and whether it is valid (dense rewards)."""
        return step_ends(completion, self.answer_tag, self.check_step)

    def check_step(self, step: str) -> bool:
        return check_step(step)

    def parse_answer(self, text: str) -> Fraction | None:
        return safe_math.parse_answer_fraction(text)

    def verify(self, completion: str, reference: str) -> Verdict:
        parsed = self.parse(completion)
        steps = parsed.steps
        checked = steps[:MAX_CHECKED_STEPS]
        flags = [bool(self.check_step(s)) for s in checked]
        has_answer = bool(parsed.answer)
        correct = False
        if has_answer:
            got = self.parse_answer(parsed.answer)
            if got is not None:
                want = self.parse_answer(reference)
                correct = want is not None and got == want
        return Verdict(
            answer_correct=correct,
            num_steps=len(steps),
            valid_steps=sum(flags),
            has_answer=has_answer,
            credited_steps=len(progress_steps(checked, parsed.answer, flags)),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(answer_tag={self.answer_tag})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.answer_tag == other.answer_tag

    def __hash__(self) -> int:
        return hash((type(self), self.answer_tag))


DEFAULT_VERIFIER = EquationVerifier()


def verify(completion: str, reference_answer: str) -> Verdict:
    """Verifies ``completion`` against ``reference_answer`` with ``EquationVerifier``.

    The answer is compared exactly as rationals (``"1.50"`` equals ``"3/2"``); an answer
    or reference that does not parse is not correct.
    """
    return DEFAULT_VERIFIER.verify(completion, reference_answer)
