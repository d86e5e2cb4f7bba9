"""Pure RL math over arrays: advantages, PPO/GRPO losses, KL estimators,
adaptive controllers and minibatch sampling; the algorithm registry (`algorithms`) and
the static hyper-parameters of an RL iteration (`hyper`). See each module's docstring."""

from r1jax.rl.advantages import gae
from r1jax.rl.algorithms import ALGORITHMS
from r1jax.rl.algorithms import Algorithm
from r1jax.rl.algorithms import get_algorithm
from r1jax.rl.advantages import group_relative_advantages
from r1jax.rl.advantages import whiten
from r1jax.rl.controllers import ClipState
from r1jax.rl.controllers import EntropyCoefState
from r1jax.rl.controllers import KLCoefState
from r1jax.rl.controllers import entropy_coef
from r1jax.rl.controllers import init_clip
from r1jax.rl.controllers import init_entropy_coef
from r1jax.rl.controllers import init_kl_coef
from r1jax.rl.controllers import update_clip
from r1jax.rl.controllers import update_entropy_coef
from r1jax.rl.controllers import update_kl_coef
from r1jax.rl.losses import AGGREGATION_MODES
from r1jax.rl.losses import KL_KINDS
from r1jax.rl.losses import aggregate
from r1jax.rl.losses import entropy_from_logits
from r1jax.rl.losses import high_entropy_mask
from r1jax.rl.losses import kl_estimate
from r1jax.rl.losses import ppo_policy_loss
from r1jax.rl.losses import value_loss
from r1jax.rl.prioritized import prioritized_minibatches
from r1jax.rl.hyper import RLHyper
from r1jax.rl.prioritized import shuffled_minibatches

__all__ = [
    "ALGORITHMS",
    "AGGREGATION_MODES",
    "Algorithm",
    "RLHyper",
    "get_algorithm",
    "KL_KINDS",
    "ClipState",
    "EntropyCoefState",
    "KLCoefState",
    "aggregate",
    "entropy_coef",
    "entropy_from_logits",
    "gae",
    "group_relative_advantages",
    "high_entropy_mask",
    "init_clip",
    "init_entropy_coef",
    "init_kl_coef",
    "kl_estimate",
    "ppo_policy_loss",
    "prioritized_minibatches",
    "shuffled_minibatches",
    "update_clip",
    "update_entropy_coef",
    "update_kl_coef",
    "value_loss",
    "whiten",
]
