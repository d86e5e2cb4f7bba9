"""Dense (per-step) rewards: credit placed on the tokens that end each reasoning step.

The outcome reward arrives once, at the last token, so a critic must learn by itself
which step of a failed solution went wrong. Step checks tell us directly. This module
turns them into per-step rewards, positioned at the character that ends each step; the
trainer maps characters to tokens (``token_rewards``) and adds them to the sparse
outcome reward at the last token ("dense + sparse").

``step_shaping`` is potential-based (Ng, Harada & Russell 1999). With the potential

    Φ(prefix) = α  while every step so far checks out,   0 after the first wrong step,

and Φ = 0 at the end of the episode, the shaping reward ``Φ(s') − Φ(s)`` is

    −α  on the character that ends the first wrong step, or
    −α  on the last character when no step is wrong,

so it sums to −α on *every* completion: the return of every completion moves by the
same constant, and the policy that maximises the shaped return is the one that
maximises the original. It cannot be gamed (writing many trivial true steps earns
nothing; stopping early earns nothing), yet the penalty sits on the step that broke the
solution, where a token-level advantage (GAE) can see it without the critic first
learning to check arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from r1jax.rewards import verifier as verifier_lib

__all__ = ["step_ends", "step_shaping", "token_rewards"]


def step_ends(text: str, check: Callable[[str], bool] = verifier_lib.check_step):
    """``[(end_char, valid)]`` for each step line before the ``####`` answer line.

    ``end_char`` is the index of the step's last non-blank character in ``text``.
    Steps are found as in ``verifier.parse_solution`` (lines containing ``=``); a task's
    verifier gives its own (``Verifier.step_ends``).
    """
    return verifier_lib.step_ends(text, check=check)


def step_shaping(text: str, alpha: float, ends=None) -> list[tuple[int, float]]:
    """Potential-based step shaping as ``[(char_index, reward)]`` (module docstring).

    ``ends``: the steps as ``[(end_char, valid)]`` (a verifier's ``step_ends``; default
    ``step_ends(text)``). The entry for "no wrong step" sits at ``len(text)``: one past
    the last character, which the trainer maps to the final (EOS) token.
    """
    if alpha == 0.0:
        return []
    for end, valid in step_ends(text) if ends is None else ends:
        if not valid:
            return [(end, -alpha)]
    return [(len(text), -alpha)]


def token_rewards(
    char_rewards: Sequence[tuple[int, float]], char_to_token: np.ndarray, length: int
) -> np.ndarray:
    """Places ``[(char_index, reward)]`` on tokens: ``[length]`` float32.

    ``char_to_token[i]`` is the token index that produced character ``i`` of the
    decoded completion, with one extra final entry for the position after the text (the
    EOS token, or the last token of a truncated completion). Indices are clipped to
    ``length - 1``.
    """
    row = np.zeros(length, np.float32)
    for ch, r in char_rewards:
        ch = min(max(ch, 0), len(char_to_token) - 1)
        row[min(int(char_to_token[ch]), length - 1)] += r
    return row
