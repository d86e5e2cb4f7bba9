"""The verifier of free-form word-problem solutions (GSM8K and tasks like it).

``FreeFormVerifier`` scores a completion written in prose, in any of the layouts a model
uses: the R1 format (``<think>…</think><answer>18</answer>``), ``\\boxed{18}``,
``#### 18``, "The answer is 18.":

* the **answer** is the completion's marked final answer (``answers.extract_answer``
  without the bare-number fallback: an unmarked number at the end is no answer, so the
  policy is not paid for a lucky last number); its verdict is the one evaluation gives,
  ``answers.verify_answer(completion, reference, fallback=False)``: exact numbers
  in-process, sympy for symbolic answers (in a worker with a deadline, or in-process
  inside a reward-pool worker, which has its own deadline); several boxed answers are
  also tried as one list (``\\boxed{1} and \\boxed{2}`` answers ``1, 2``), and a
  reference that is one answer is itself (up to ``answers.MAX_ANSWER_CHARS``), not its
  last number;
* the **steps** are the arithmetic equations anywhere in the text, found and checked
  exactly by ``steps.check_steps`` (``16 - 3 - 4 = 9``, ``$<<9*2=18>>18``, chains); a
  step is valid when ``check_steps`` verifies it. Their character spans place dense
  rewards (``step_ends``), and their texts form the novelty path (``parse``).

So every part of the composite reward (correctness with step credit, efficiency,
novelty, subgoals, format) and the dense placements work on GSM8K text. Model text is
hostile: nothing here evaluates it except through ``safe_math``'s AST walk and the
``symbolic`` gates; nothing raises.
"""

from __future__ import annotations

import re

from r1jax.rewards import answers
from r1jax.rewards.novelty import progress_steps
from r1jax.rewards.steps import VERIFIED, check_steps
from r1jax.rewards.verifier import ParsedSolution, Verdict

__all__ = ["FreeFormVerifier"]


def _equation(step) -> str:
    """A step's equation text: the annotation's ``expr=value`` for a GSM8K-annotated
    step, else the step as written. An annotation that only holds the value
    (``1.5 / .25 = <<6=6>>6``) gives way to the prose around it (``1.5 / .25 = 6``),
    which holds the computation."""
    if step.annotated:
        i, j = step.text.find("<<"), step.text.find(">>")
        if 0 <= i < j:
            inner = step.text[i + 2 : j]
            lhs = inner.split("=", 1)[0].strip()
            if not _VALUE_RE.fullmatch(lhs):
                return inner
            return step.text[:i] + step.text[j + 2 :]
    return step.text


_VALUE_RE = re.compile(r"[$]?[0-9][0-9,]*(?:\.[0-9]*)?%?|[$]?\.[0-9]+%?")


class FreeFormVerifier:
    """``Verifier`` for prose solutions: marked final answer, equations anywhere (module doc)."""

    def parse(self, completion: str) -> ParsedSolution:
        """Step texts (every equation ``check_steps`` finds, in order; an annotated step
        as its ``<<expr=value>>`` equation, which novelty paths canonicalise) and the
        marked answer."""
        report = check_steps(completion)
        try:
            answer = answers.extract_answer(completion, fallback=False)
        except Exception:  # noqa: BLE001  (hostile text: no answer, never an exception)
            answer = None
        return ParsedSolution(tuple(_equation(c) for c in report.steps), answer)

    def check_step(self, step: str) -> bool:
        """True when ``step`` holds exactly one equation and ``check_steps`` verifies it."""
        report = check_steps(step)
        return report.num_steps == 1 and report.num_verified == 1

    def step_ends(self, completion: str) -> list[tuple[int, bool]]:
        """``[(end_char, valid)]`` per step: the index of its last character."""
        return [(c.span[1] - 1, c.status == VERIFIED) for c in check_steps(completion).steps]

    def verify(self, completion: str, reference: str) -> Verdict:
        report = check_steps(completion)
        try:
            answer = answers.extract_answer(completion, fallback=False)
        except Exception:  # noqa: BLE001
            answer = None
        correct = answer is not None and answers.verify_answer(
            completion, str(reference), fallback=False
        )
        texts = [_equation(c) for c in report.steps]
        flags = [c.status == VERIFIED for c in report.steps]
        return Verdict(
            answer_correct=bool(correct),
            num_steps=report.num_steps,
            valid_steps=report.num_verified,
            has_answer=bool(answer),
            credited_steps=len(progress_steps(texts, answer, flags)),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))
