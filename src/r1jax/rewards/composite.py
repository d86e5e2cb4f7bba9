"""The composite reward: correctness, efficiency, novelty and format, weighted.

For one completion with verdict ``v`` (see ``verifier.Verdict``), ``n = v.num_steps``::

    step_credit = step_weight * valid_steps / n                 (0 when n == 0)
    correctness = (1 - step_weight) * answer_correct
                  + step_credit * answer_correct   when step_credit_requires_correct
                  + step_credit                    otherwise
    efficiency  = 1 / (1 + n)          efficiency_mode "inverse"
                  decay ** n           efficiency_mode "time_decay"
                  times answer_correct when efficiency_requires_correct
    novelty     = given by the caller  (stateful: ``novelty.NoveltyTracker``, see below)
    format      = format.format_reward(completion)   (R1's <think>…</think><answer>…</answer>)
    total       = w_correctness * correctness + w_efficiency * efficiency
                  + w_novelty * novelty + w_format * format

A solution without step equations earns no step credit (its correctness is at most
``1 - step_weight``): showing no work is not rewarded as if all work were valid.
Efficiency is gated on a correct answer by default, otherwise the shortest way to reward
is to answer at once and wrongly (one ``#### 0`` line scores efficiency 1).

Step credit is gated on a correct answer too (``step_credit_requires_correct``): without
the gate a wrong solution scores higher the fewer steps it writes (fewer chances of an
invalid step), and PPO on the embedded default learned to stop after the first, safe
step: two-step accuracy fell from 16% to 2% while mean steps fell to 1.2. With the gate,
a wrong answer scores 0 however it is written, and among correct answers valid steps
and fewer steps score higher.

Ordering with the defaults (step_weight 0.4), for a one-step problem: concise correct
0.6 + 0.3/2 = 0.75 > verbose correct (with a check step) 0.6 + 0.3/3 = 0.70 > bare
correct ``#### N`` 0.6 * 0.6 + 0.3 = 0.66 > any wrong answer 0.

Novelty needs memory: how often each solution path was already found for the problem.
That memory lives in the trainer's process (``bridge.HostReward`` owns a
``novelty.NoveltyTracker`` and checkpoints it), not in the stateless worker processes
that run ``score``; the workers score novelty 0 and the bridge adds
``w_novelty * novelty`` to ``total`` afterwards. Called directly, ``score`` takes the
novelty value as an argument.

The format part is 0 unless ``w_format > 0``: the embedded arithmetic task does not ask
for R1's tags (its ``format`` column then stays 0 in the logs).

``score`` returns a dict for logging; ``score_vector`` returns the same numbers as a
tuple in ``SCORE_FIELDS`` order, the picklable, fixed-width form the host bridge
(``host.RewardPool``, io_callback) turns into a ``[N, len(SCORE_FIELDS)]`` array.
"""

from __future__ import annotations

import dataclasses
import math

from r1jax.rewards import format as format_lib
from r1jax.rewards import verifier as verifier_lib

__all__ = [
    "EFFICIENCY_MODES",
    "REWARD_PARTS",
    "SCORE_FIELDS",
    "RewardConfig",
    "efficiency",
    "score",
    "score_vector",
]

REWARD_PARTS = ("correctness", "efficiency", "novelty", "format")
SCORE_FIELDS = (
    "total",
    "correctness",
    "efficiency",
    "novelty",
    "format",
    "answer_correct",
    "num_steps",
    "valid_steps",
)
EFFICIENCY_MODES = ("inverse", "time_decay")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Weights and shapes of the composite reward (see the module docstring)."""

    # Weight of the correctness part in ``total`` (answer and step validity).
    w_correctness: float = 0.6
    # Weight of the efficiency part in ``total`` (fewer steps score higher).
    w_efficiency: float = 0.3
    # Weight of the novelty part in ``total`` (tree-search novelty of correct solutions).
    w_novelty: float = 0.1
    # Weight of the R1 format part (``<think>…</think><answer>…</answer>``); 0 = off.
    w_format: float = 0.0
    # Share of correctness given to valid steps (fraction of valid step equations);
    # the rest, 1 - step_weight, goes to the final answer. In [0, 1].
    step_weight: float = 0.4
    # "inverse": efficiency = 1 / (1 + num_steps);
    # "time_decay": efficiency = decay ** num_steps.
    efficiency_mode: str = "inverse"
    # Per-step decay factor γ of the "time_decay" mode, in (0, 1]; 1 disables it.
    decay: float = 0.8
    # Efficiency is 0 unless the answer is correct: without this, a short wrong answer
    # out-scores a long right one on efficiency (the "answer at once" reward hack).
    efficiency_requires_correct: bool = True
    # Step credit only for a correct answer: otherwise truncating a wrong solution to its
    # safe first steps raises its reward (see the module docstring).
    step_credit_requires_correct: bool = True

    def __post_init__(self):
        for name in ("w_correctness", "w_efficiency", "w_novelty", "w_format"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"RewardConfig.{name}={value!r}: weights must be finite numbers >= 0; "
                    f"set {name} to a value such as 0.0 to switch the part off."
                )
        sw = self.step_weight
        if not isinstance(sw, (int, float)) or not 0.0 <= sw <= 1.0:
            raise ValueError(
                f"RewardConfig.step_weight={sw!r}: must lie in [0, 1] (the share of "
                "correctness given to valid steps); use e.g. 0.2."
            )
        if self.efficiency_mode not in EFFICIENCY_MODES:
            raise ValueError(
                f"RewardConfig.efficiency_mode={self.efficiency_mode!r}: must be one of "
                f"{EFFICIENCY_MODES}."
            )
        d = self.decay
        if not isinstance(d, (int, float)) or not 0.0 < d <= 1.0:
            raise ValueError(
                f"RewardConfig.decay={d!r}: must lie in (0, 1] (efficiency = decay ** "
                "num_steps); use e.g. 0.8, or 1.0 for no decay."
            )
        for name in ("efficiency_requires_correct", "step_credit_requires_correct"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"RewardConfig.{name}={getattr(self, name)!r}: must be True or False."
                )


def efficiency(num_steps: int, answer_correct: bool, cfg: RewardConfig) -> float:
    """The efficiency part for a solution of ``num_steps`` steps (module docstring)."""
    if cfg.efficiency_requires_correct and not answer_correct:
        return 0.0
    if cfg.efficiency_mode == "inverse":
        return 1.0 / (1.0 + num_steps)
    return float(cfg.decay) ** num_steps


def score(
    completion: str,
    reference_answer: str,
    cfg: RewardConfig | None = None,
    verifier: verifier_lib.Verifier | None = None,
    novelty: float = 0.0,
) -> dict[str, float]:
    """Scores one completion; keys are ``SCORE_FIELDS`` (the four parts, "total",
    "answer_correct", "num_steps", "valid_steps"), all floats.

    ``cfg`` defaults to ``RewardConfig()``, ``verifier`` to ``EquationVerifier``.
    ``novelty`` (in [0, 1], from a ``NoveltyTracker``) counts only for a correct answer.
    """
    cfg = RewardConfig() if cfg is None else cfg
    verifier = verifier_lib.DEFAULT_VERIFIER if verifier is None else verifier
    verdict = verifier.verify(completion, reference_answer)
    correct = 1.0 if verdict.answer_correct else 0.0
    n = int(verdict.num_steps)
    valid = int(verdict.valid_steps)
    correctness = (1.0 - cfg.step_weight) * correct
    if n > 0 and (correct or not cfg.step_credit_requires_correct):
        correctness += cfg.step_weight * valid / n
    parts = {
        "correctness": correctness,
        "efficiency": efficiency(n, verdict.answer_correct, cfg),
        "novelty": float(novelty) if verdict.answer_correct else 0.0,
        "format": format_lib.format_reward(completion) if cfg.w_format > 0 else 0.0,
    }
    total = (
        cfg.w_correctness * parts["correctness"]
        + cfg.w_efficiency * parts["efficiency"]
        + cfg.w_novelty * parts["novelty"]
        + cfg.w_format * parts["format"]
    )
    return {
        "total": float(total),
        **parts,
        "answer_correct": correct,
        "num_steps": float(n),
        "valid_steps": float(valid),
    }


def score_vector(
    completion: str,
    reference_answer: str,
    cfg: RewardConfig | None = None,
    verifier: verifier_lib.Verifier | None = None,
) -> tuple[float, ...]:
    """``score`` as a tuple in ``SCORE_FIELDS`` order, for ``host.RewardPool``.

    Bind the config with ``functools.partial(score_vector, cfg=cfg)``: the partial of a
    module-level function and a frozen dataclass pickles into spawn workers.
    """
    s = score(completion, reference_answer, cfg, verifier)
    return tuple(s[k] for k in SCORE_FIELDS)
