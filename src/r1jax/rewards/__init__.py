"""Rewards: safe arithmetic, solution verification, the composite reward, the host pool.

Model output is hostile (DESIGN.md, convention 12): ``safe_math`` evaluates it only
through a whitelisted AST walk, and ``host.RewardPool`` scores it in worker processes
with a hard per-item deadline.
"""

from r1jax.rewards.composite import (
    EFFICIENCY_MODES,
    REWARD_PARTS,
    SCORE_FIELDS,
    RewardConfig,
    efficiency,
    novelty,
    score,
    score_vector,
)
from r1jax.rewards.host import RewardPool
from r1jax.rewards.safe_math import (
    parse_answer,
    parse_answer_fraction,
    safe_eval,
    safe_eval_fraction,
)
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
    "EquationVerifier",
    "ParsedSolution",
    "RewardConfig",
    "RewardPool",
    "Verdict",
    "Verifier",
    "check_step",
    "efficiency",
    "novelty",
    "parse_answer",
    "parse_answer_fraction",
    "parse_solution",
    "safe_eval",
    "safe_eval_fraction",
    "score",
    "score_vector",
    "verify",
]
