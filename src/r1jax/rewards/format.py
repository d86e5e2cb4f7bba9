"""The R1 format reward: ``<think>…</think>`` then ``<answer>…</answer>``, nothing else.

DeepSeek-R1 trains its policy to put its reasoning between ``<think>`` tags and its final
solution between ``<answer>`` tags, and pays a small rule-based *format reward* for
following that layout. Here::

    format_reward(text) = 1.0  if text matches  WS <think> T </think> WS <answer> A </answer> WS
                          0.0  otherwise

where ``WS`` is any (possibly empty) run of whitespace, and ``T`` and ``A`` are the
*contents*: each must contain at least one non-whitespace character and no tag of its
own. Each of the four tags ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` must
occur exactly once in the whole text, in that order, so nested or duplicated tags
(``<think><think>x</think></think>``, two ``<answer>`` blocks, an ``<answer>`` inside
the thinking) and any text before ``<think>`` or after ``</answer>`` score 0. Tags are
matched exactly and case-sensitively; ``<THINK>`` is ordinary text.

``split_think_answer`` returns the stripped contents ``(T, A)`` for a well-formed text
and ``(None, None)`` otherwise (the reward is exactly ``1.0`` iff both are not ``None``),
so a trainer can hand only ``A`` to the verifier.

Model output is hostile: nothing here uses a backtracking regular expression. The check
is a handful of ``str.count`` / ``str.find`` calls, linear in the text length with small
constants (a few ms for 10 MB), and never raises: anything that is not a ``str`` scores 0.
"""

from __future__ import annotations

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "THINK_CLOSE",
    "THINK_OPEN",
    "format_reward",
    "split_think_answer",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def split_think_answer(text: str) -> tuple[str | None, str | None]:
    """``(think, answer)`` contents (stripped) of a well-formed text, else ``(None, None)``.

    Well-formed is exactly what ``format_reward`` pays for (see the module docstring).
    """
    if not isinstance(text, str):
        return None, None
    # Each tag exactly once. str.count is linear and stops being relevant past 2, but a
    # full count keeps this simple and still O(len(text)) per tag.
    for tag in _TAGS:
        if text.count(tag) != 1:
            return None, None
    body = text.strip()
    if not body.startswith(THINK_OPEN) or not body.endswith(ANSWER_CLOSE):
        return None, None
    think_end = body.find(THINK_CLOSE)
    answer_start = body.find(ANSWER_OPEN)
    # Tags are unique, so these positions are the tags; the order must be
    # <think> .. </think> .. <answer> .. </answer> with only whitespace in between.
    if think_end < len(THINK_OPEN) or answer_start < think_end + len(THINK_CLOSE):
        return None, None
    answer_end = len(body) - len(ANSWER_CLOSE)
    if answer_end < answer_start + len(ANSWER_OPEN):
        return None, None  # e.g. "<think>x</think><answer</answer>" overlaps
    gap = body[think_end + len(THINK_CLOSE) : answer_start]
    if gap.strip():
        return None, None
    think = body[len(THINK_OPEN) : think_end].strip()
    answer = body[answer_start + len(ANSWER_OPEN) : answer_end].strip()
    if not think or not answer:
        return None, None
    return think, answer


def format_reward(text: str) -> float:
    """1.0 when ``text`` is exactly ``<think>T</think><answer>A</answer>`` up to
    whitespace, with non-empty ``T`` and ``A`` and each tag once; 0.0 otherwise."""
    think, answer = split_think_answer(text)
    return 1.0 if think is not None and answer is not None else 0.0
