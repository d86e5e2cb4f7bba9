"""Rewards: safe arithmetic, solution verification, answers, the composite reward, the pool.

Model output is hostile (DESIGN.md, convention 12): ``safe_math`` evaluates it only
through a whitelisted AST walk, and ``host.RewardPool`` scores it in worker processes
with a hard per-item deadline. ``answers`` extracts final answers in any common format
and checks them against references (numbers in-process, sympy in worker processes);
``steps.check_steps`` checks every equation step of a solution (the process reward).
A task's completions are scored by its own verifier through ``scoring``
(``score_completions``, ``TaskScorer``): the trainer, the evaluator and the CLIs all do.
The composite reward's stateful novelty (``novelty``), noise injection (``noise``), R1
format reward (``format``) and the placement of dense/sparse rewards on tokens
(``dense``, ``bridge``) are submodules.
"""

from r1jax.rewards.answers import extract_answer, verify_answer, verify_answers
from r1jax.rewards.composite import (
    EFFICIENCY_MODES,
    REWARD_PARTS,
    SCORE_FIELDS,
    SUBGOAL_SEP,
    RewardConfig,
    efficiency,
    score,
    score_vector,
    split_reference,
    subgoal_credit,
    with_subgoals,
)
from r1jax.rewards.free_form import FreeFormVerifier
from r1jax.rewards.host import RewardPool
from r1jax.rewards.safe_math import (
    parse_answer,
    parse_answer_fraction,
    safe_eval,
    safe_eval_fraction,
)
from r1jax.rewards.scoring import (
    TaskScorer,
    score_completions,
    task_reference,
    task_reward_config,
    task_verifier,
)
from r1jax.rewards.steps import StepCheck, StepReport, check_steps
from r1jax.rewards.verifier import (
    DEFAULT_VERIFIER,
    EquationVerifier,
    ParsedSolution,
    Verdict,
    Verifier,
    check_step,
    parse_solution,
    verify,
)

__all__ = [
    "DEFAULT_VERIFIER",
    "EFFICIENCY_MODES",
    "REWARD_PARTS",
    "SCORE_FIELDS",
    "SUBGOAL_SEP",
    "EquationVerifier",
    "FreeFormVerifier",
    "ParsedSolution",
    "RewardConfig",
    "RewardPool",
    "StepCheck",
    "StepReport",
    "TaskScorer",
    "Verdict",
    "Verifier",
    "check_step",
    "check_steps",
    "efficiency",
    "extract_answer",
    "parse_answer",
    "parse_answer_fraction",
    "parse_solution",
    "safe_eval",
    "safe_eval_fraction",
    "score",
    "score_completions",
    "score_vector",
    "split_reference",
    "subgoal_credit",
    "task_reference",
    "task_reward_config",
    "task_verifier",
    "verify",
    "verify_answer",
    "verify_answers",
    "with_subgoals",
]
