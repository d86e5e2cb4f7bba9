"""The composite reward: correctness, efficiency, novelty and format, weighted.

For one completion with verdict ``v`` (see ``verifier.Verdict``), ``n = v.num_steps``::

    step_credit = step_weight * c / (c + n - valid_steps)     (0 when c == 0)
                  c = v.credited_steps: the valid steps that make progress
    correctness = (1 - step_weight) * answer_correct
                  + step_credit * answer_correct   when step_credit_requires_correct
                  + step_credit                    otherwise
    efficiency  = 1 / (1 + n)          efficiency_mode "inverse"
                  decay ** n           efficiency_mode "time_decay"
                  times answer_correct when efficiency_requires_correct
    novelty     = given by the caller  (stateful: ``novelty.NoveltyTracker``, see below)
    format      = format.format_reward(completion)   (R1's <think>…</think><answer>…</answer>)
    subgoal     = 1                                      for a correct answer
                  |reached| / max(|subgoals|, n - 1)     otherwise (0 with no subgoals)
    total       = w_correctness * correctness + w_efficiency * efficiency
                  + w_novelty * novelty + w_format * format + w_subgoal * subgoal

A solution without step equations earns no step credit (its correctness is at most
``1 - step_weight``): showing no work is not rewarded as if all work were valid.
Step credit is the share of valid steps among the steps that matter: the valid steps
that make progress (``novelty.progress_steps``: not a restatement such as ``1=1`` or
``13*1=13``, used by a later step or the answer, a recomputation used once) and the
invalid ones. An idle valid step is neutral here (efficiency already charges it as a
step), and a solution whose valid steps are all idle earns none: ``1=1`` before a bare
answer scores 0.51, below the bare answer's 0.66 (it used to score 0.75, like a real
step; found in review). A verifier that does not count progress steps
(``Verdict.credited_steps`` None) gets ``c = valid_steps``.
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

The subgoal part (process credit; 0 unless ``w_subgoal > 0``) scores a wrong answer by
how far it got: ``subgoals`` are the intermediate values of a shortest reference solution
(``Problem.subgoals``, e.g. ``("30", "27")`` for ``5*6=30``, ``30-3=27``,
``27+10=37``), carried to the scorer in the reference string as ``"37|30,27"``
(``with_subgoals`` / ``split_reference``). A subgoal is *reached* when a valid step's
last side equals it exactly (as a rational). Unlike step credit it is not gated on the
answer: a two-step solution with a correct first step and a slip in the second
(``9+4=13``, ``13-8=9``) earns it, where the outcome reward gives such a completion the
same 0 as a wholly wrong one. It cannot be farmed the ways step credit could: stopping
early reaches fewer subgoals (each counts once), the values are unknown to the policy
until it computes them, and enumerating equations to hit them (``2+1=3``, ``3+1=4``, …)
divides the credit by the number of steps written (the ``n - 1`` in the denominator; a
shortest solution has ``|subgoals| + 1`` steps). A correct answer gets the full part
whatever its route, so among correct solutions it changes nothing: no route (a novel one
included) is preferred for passing through the reference's values.

The format part is 0 unless ``w_format > 0``: the embedded arithmetic task does not ask
for R1's tags (its ``format`` column then stays 0 in the logs).

``score`` returns a dict for logging; ``score_vector`` returns the same numbers as a
tuple in ``SCORE_FIELDS`` order, the picklable, fixed-width form the host bridge
(``host.RewardPool``, io_callback) turns into a ``[N, len(SCORE_FIELDS)]`` array.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from r1jax.rewards import format as format_lib
from r1jax.rewards import safe_math
from r1jax.rewards import verifier as verifier_lib

__all__ = [
    "EFFICIENCY_MODES",
    "REWARD_PARTS",
    "SCORE_FIELDS",
    "SUBGOAL_SEP",
    "RewardConfig",
    "efficiency",
    "score",
    "score_vector",
    "split_reference",
    "subgoal_credit",
    "with_subgoals",
]

REWARD_PARTS = ("correctness", "efficiency", "novelty", "format", "subgoal")
SCORE_FIELDS = (
    "total",
    "correctness",
    "efficiency",
    "novelty",
    "format",
    "subgoal",
    "answer_correct",
    "num_steps",
    "valid_steps",
    "has_answer",
)
EFFICIENCY_MODES = ("inverse", "time_decay")
SUBGOAL_SEP = "|"  # reference string: "<answer>|<subgoal>,<subgoal>,..."
MAX_SUBGOAL_STEPS = 64  # steps beyond this many are not searched for subgoals


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
    # Weight of the subgoal (process) part: share of the reference's intermediate values
    # reached by valid steps, for wrong answers too (module docstring); 0 = off.
    w_subgoal: float = 0.0
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
        for name in ("w_correctness", "w_efficiency", "w_novelty", "w_format", "w_subgoal"):
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


def with_subgoals(answer: str, subgoals=()) -> str:
    """The reference string carrying ``answer`` and the ``subgoals`` (module docstring):
    ``answer`` itself when there are none. Raises ``ValueError`` if a part contains
    the separators ``|`` or ``,`` (or is empty)."""
    if not subgoals:
        return answer
    parts = [str(x).strip() for x in subgoals]
    bad = [x for x in parts if not x or SUBGOAL_SEP in x or "," in x]
    if SUBGOAL_SEP in answer or bad:
        raise ValueError(
            f"reference {answer!r} with subgoals {tuple(subgoals)!r}: the answer must not "
            f"contain {SUBGOAL_SEP!r} and each subgoal must be a non-empty value without "
            f"{SUBGOAL_SEP!r} or ','; give plain values such as '27'"
        )
    return answer + SUBGOAL_SEP + ",".join(parts)


def split_reference(reference: str) -> tuple[str, tuple[str, ...]]:
    """``(answer, subgoals)`` from a reference string (inverse of ``with_subgoals``)."""
    answer, sep, rest = reference.partition(SUBGOAL_SEP)
    if not sep:
        return reference, ()
    return answer, tuple(x.strip() for x in rest.split(",") if x.strip())


def subgoal_credit(steps, subgoals, check_step=None) -> float:
    """``|reached| / max(|subgoals|, len(steps) - 1)``: a subgoal is reached when a step
    that ``check_step`` accepts has a last side equal to it as an exact rational. Step
    sides are parsed by ``safe_math`` (an AST whitelist; model text is never evaluated
    otherwise); a subgoal that does not parse is never reached."""
    goals = {safe_math.safe_eval_fraction(g) for g in subgoals} - {None}
    if not subgoals or not goals:
        return 0.0
    check_step = verifier_lib.check_step if check_step is None else check_step
    reached = set()
    for step in steps[:MAX_SUBGOAL_STEPS]:
        if check_step(step):
            value = safe_math.safe_eval_fraction(step.rsplit("=", 1)[-1])
            if value in goals:
                reached.add(value)
    return len(reached) / max(len(subgoals), len(steps) - 1)


def checked_verdict(verdict, verifier=None) -> verifier_lib.Verdict:
    """``verdict`` if it is a well-formed ``Verdict``; else a ``TypeError`` naming the
    verifier, the field and the fix (a user's verifier returning ``None``, a NaN or the
    string ``"False"`` would otherwise count as a failure or, worse, as correct).

    ``answer_correct`` and ``has_answer`` are bools (0/1 ints and NumPy bools too);
    ``num_steps >= valid_steps >= 0`` and ``credited_steps`` (None or >= 0) are ints."""
    who = f"{type(verifier).__name__}.verify" if verifier is not None else "verify"
    if not isinstance(verdict, verifier_lib.Verdict):
        raise TypeError(
            f"{who} returned {type(verdict).__name__} {verdict!r:.80}: return a "
            "rewards.Verdict(answer_correct, num_steps, valid_steps, has_answer)"
        )
    for name in ("answer_correct", "has_answer"):
        v = getattr(verdict, name)
        if not (isinstance(v, (bool, np.bool_)) or (type(v) is int and v in (0, 1))):
            raise TypeError(f"{who}: Verdict.{name}={v!r:.80} must be a bool (True/False)")
    counts = {"num_steps": verdict.num_steps, "valid_steps": verdict.valid_steps}
    if verdict.credited_steps is not None:
        counts["credited_steps"] = verdict.credited_steps
    for name, v in counts.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise TypeError(f"{who}: Verdict.{name}={v!r:.80} must be an int >= 0")
    if verdict.valid_steps > verdict.num_steps:
        raise TypeError(
            f"{who}: Verdict.valid_steps={verdict.valid_steps} is more than "
            f"num_steps={verdict.num_steps}: count the valid steps among the steps"
        )
    return verdict


def score(
    completion: str,
    reference_answer: str,
    cfg: RewardConfig | None = None,
    verifier: verifier_lib.Verifier | None = None,
    novelty: float = 0.0,
    subgoals: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """Scores one completion; keys are ``SCORE_FIELDS`` (the five parts, "total",
    "answer_correct", "num_steps", "valid_steps", "has_answer"), all floats.

    ``subgoals``: the problem's intermediate values (``Problem.subgoals``); None reads
    them from ``reference_answer`` (``with_subgoals``), whose answer alone is checked
    then. ``cfg`` defaults to ``RewardConfig()``, ``verifier`` to ``EquationVerifier``.
    ``novelty`` (in [0, 1], from a ``NoveltyTracker``) counts only for a correct answer.
    """
    cfg = RewardConfig() if cfg is None else cfg
    verifier = verifier_lib.DEFAULT_VERIFIER if verifier is None else verifier
    if subgoals is None:
        reference_answer, subgoals = split_reference(reference_answer)
    verdict = checked_verdict(verifier.verify(completion, reference_answer), verifier)
    correct = 1.0 if verdict.answer_correct else 0.0
    n = int(verdict.num_steps)
    valid = int(verdict.valid_steps)
    credited = verdict.credited_steps
    credited = valid if credited is None else min(int(credited), valid)
    correctness = (1.0 - cfg.step_weight) * correct
    if credited > 0 and (correct or not cfg.step_credit_requires_correct):
        correctness += cfg.step_weight * credited / (credited + n - valid)
    parts = {
        "correctness": correctness,
        "efficiency": efficiency(n, verdict.answer_correct, cfg),
        "novelty": float(novelty) if verdict.answer_correct else 0.0,
        "format": format_lib.format_reward(completion) if cfg.w_format > 0 else 0.0,
        "subgoal": 0.0,
    }
    if cfg.w_subgoal > 0 and subgoals:
        if verdict.answer_correct:
            parts["subgoal"] = 1.0
        else:
            parse = getattr(verifier, "parse", verifier_lib.parse_solution)
            check = getattr(verifier, "check_step", verifier_lib.check_step)
            parts["subgoal"] = subgoal_credit(parse(completion).steps, subgoals, check)
    total = (
        cfg.w_correctness * parts["correctness"]
        + cfg.w_efficiency * parts["efficiency"]
        + cfg.w_novelty * parts["novelty"]
        + cfg.w_format * parts["format"]
        + cfg.w_subgoal * parts["subgoal"]
    )
    return {
        "total": float(total),
        **parts,
        "answer_correct": correct,
        "num_steps": float(n),
        "valid_steps": float(valid),
        "has_answer": 1.0 if verdict.has_answer else 0.0,
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
