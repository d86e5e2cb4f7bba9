"""The RL algorithm, chosen in one place: how advantages are formed, whether a critic learns.

`ALGORITHMS[config.rl.algo]` is the only switch the RL iteration reads (`train.rl_step`):

* **ppo**: a critic V learns on its own time scale; advantages are GAE(γ, λ) over the
  per-token rewards, whitened over the global batch (Schulman et al. 2017).
* **grpo**: no critic; each completion's total reward minus its group's mean, divided by
  the group's std unless `rl.grpo_scale_by_std=False` (Shao et al. 2024, DeepSeek-R1).
* **dr_grpo**: no critic, group mean subtracted without the std division, and the loss
  summed over tokens with a constant normaliser (`seq_mean_token_sum_norm`), so neither
  a group's spread nor a completion's length scales its gradient (Liu et al. 2025,
  "Understanding R1-Zero-Like Training").

A new variant is one `Algorithm` entry here (its advantages and, if it fixes one, its
loss aggregation); the config accepts every key of `ALGORITHMS`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from r1jax.rl.advantages import gae, group_relative_advantages, whiten

__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm"]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How one RL algorithm turns rewards into advantages."""

    name: str
    critic: bool  # a value network learns (GAE); False: group-relative, no critic state
    scale_by_std: bool | None = None  # group-relative: divide by the group's std; None =
    # `rl.grpo_scale_by_std`
    loss_agg: str | None = None  # token aggregation the algorithm fixes; None = rl.loss_agg

    def aggregation(self, hp) -> str:
        return self.loss_agg or hp.loss_agg

    def advantages(self, hp, *, token_rewards, values, mask, reward_n, axis_name=None):
        """`(adv [N, T], returns [N, T])`: `token_rewards` `[N, T]` (PPO's placement),
        `values` `[N, T]` (critic; unused without one), `mask` `[N, T]` float,
        `reward_n` `[N]` total rewards (rows of a group consecutive)."""
        if self.critic:
            adv, returns = gae(token_rewards * mask, values, mask, hp.gamma, hp.lam)
            return whiten(adv, mask, axis_name=axis_name), returns
        scale = hp.grpo_scale_by_std if self.scale_by_std is None else self.scale_by_std
        adv_n = group_relative_advantages(reward_n, hp.group_size, scale_by_std=scale)
        return adv_n[:, None] * mask, jnp.zeros_like(mask)


ALGORITHMS = {
    "ppo": Algorithm("ppo", critic=True),
    "grpo": Algorithm("grpo", critic=False),
    "dr_grpo": Algorithm(
        "dr_grpo", critic=False, scale_by_std=False, loss_agg="seq_mean_token_sum_norm"
    ),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown RL algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]
