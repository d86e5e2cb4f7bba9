"""Minibatch index sampling: uniform shuffling and prioritized sampling.

Both return integer index arrays [M, mb] (``_mb`` = minibatches x minibatch size)
that the learner gathers from the rollout buffer inside a ``lax.scan`` over
minibatches; shapes are static, so both run under ``jit``.

Reference:
  * Schaul et al. 2016, "Prioritized Experience Replay" (p_i ∝ priority^α and
    importance-sampling correction weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["prioritized_minibatches", "shuffled_minibatches"]


def prioritized_minibatches(
    key: jax.Array,
    priorities_n: jax.Array,
    num_minibatches: int,
    minibatch_size: int,
    alpha: float = 1.0,
    eps: float = 1e-3,
) -> tuple[jax.Array, jax.Array]:
    """Sample minibatch indices with replacement in proportion to priority.

    For N items with priorities u_i (e.g. |advantage| or TD error)::

        q_i = (|u_i| + eps)^α,       p_i = q_i / Σ_j q_j
        w_i = 1 / (N · p_i)  =  Σ_j q_j / (N · q_i)

    Each of the M·mb draws is independent, i ~ p. The importance weights make the
    weighted estimator unbiased for the uniform mean of any per-item quantity g::

        E_{i~p}[w_i · g_i] = Σ_i p_i · g_i / (N p_i) = (1/N) Σ_i g_i

    α = 0 gives uniform sampling with weights exactly 1; larger α concentrates
    the draws on high-priority items. ``eps`` keeps every item reachable.
    Weights are not max-normalised (unlike Schaul et al.), so that unbiasedness
    holds as stated; callers may rescale.

    Args:
      key: PRNG key.
      priorities_n: [N] priorities u_i (sign ignored).
      num_minibatches: M (static).
      minibatch_size: mb (static).
      alpha: α, the priority exponent.
      eps: ε added to |u_i|.

    Returns:
      (idx_mb [M, mb] int32, is_weights_mb [M, mb] float32).
    """
    prio_n = jnp.asarray(priorities_n, jnp.float32)
    n = prio_n.shape[0]
    q_n = (jnp.abs(prio_n) + eps) ** alpha
    total = q_n.sum()
    p_n = q_n / total
    idx_mb = jax.random.choice(key, n, shape=(num_minibatches, minibatch_size), replace=True, p=p_n)
    idx_mb = idx_mb.astype(jnp.int32)
    is_weights_mb = total / (n * q_n[idx_mb])
    return idx_mb, is_weights_mb.astype(jnp.float32)


def shuffled_minibatches(
    key: jax.Array,
    n: int,
    num_minibatches: int,
    minibatch_size: int,
    group_size: int = 1,
) -> jax.Array:
    """Split a uniform random permutation of ``range(n)`` into M minibatches.

    Every item appears exactly once per epoch (sampling without replacement).
    With ``group_size`` G > 1 the items are taken as n / G consecutive groups
    (``[g·G, (g+1)·G)``: the G samples of one prompt) and the *groups* are permuted:
    each minibatch holds whole groups, each group's items consecutive and in order,
    so the learner can run a group's shared prompt once (`sampling.grouped_hidden`).

    Args:
      key: PRNG key.
      n: number of items N (static); must equal M · mb.
      num_minibatches: M (static).
      minibatch_size: mb (static); a multiple of G.
      group_size: G (static), a divisor of mb.

    Returns:
      idx_mb [M, mb] int32.

    Raises:
      ValueError: if num_minibatches * minibatch_size != n, or G does not divide mb.
    """
    if num_minibatches * minibatch_size != n:
        raise ValueError(
            f"num_minibatches * minibatch_size = {num_minibatches} * {minibatch_size}"
            f" = {num_minibatches * minibatch_size} must equal n = {n}"
        )
    if group_size < 1 or minibatch_size % group_size:
        raise ValueError(
            f"group_size={group_size} must be >= 1 and divide minibatch_size={minibatch_size}"
        )
    if group_size == 1:
        perm = jax.random.permutation(key, n)
    else:
        groups = jax.random.permutation(key, n // group_size)
        perm = (groups[:, None] * group_size + jnp.arange(group_size)).reshape(-1)
    return perm.reshape(num_minibatches, minibatch_size).astype(jnp.int32)
