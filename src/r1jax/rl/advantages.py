"""Advantage estimators: token-level GAE, group-relative (GRPO / Dr. GRPO), whitening.

All functions are pure, shape-static and jit-compatible; ``whiten`` takes an optional
``axis_name`` so its statistics stay global under ``pmap`` (data-parallel shards). Shapes follow the repo
convention: ``_bt`` = [B, T] (sequences x completion tokens), ``_n`` = [N] (flat).

References:
    * Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
        Advantage Estimation" (GAE).
    * Shao et al. 2024, "DeepSeekMath" (GRPO, group-relative advantages).
    * Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective"
        (Dr. GRPO: drop the per-group std scaling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gae", "group_relative_advantages", "whiten"]


def _psum(x, axis_name):
    """``psum`` over a mapped axis, or the identity when ``axis_name`` is None."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def gae(
    rewards_bt: jax.Array,
    values_bt: jax.Array,
    mask_bt: jax.Array,
    gamma: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Token-level Generalized Advantage Estimation (Schulman et al. 2016).

    For every valid token t of a row (``mask_bt[b, t]`` true)::

            δ_t = r_t + γ · V_{t+1} − V_t
            Â_t = δ_t + γ · λ · Â_{t+1}
            R_t = Â_t + V_t                      (the λ-return, the value target)

    where ``V_{t+1} = 0`` and ``Â_{t+1} = 0`` after the last valid token: the
    completion ends the episode (terminal state, no bootstrap).

    The mask must mark a contiguous prefix of each row (possibly empty); positions
    outside it are ignored on input and set to 0 on output. Rewards at invalid
    positions never leak into valid ones because the recursion is reset to zero at
    every invalid position, scanning right to left with ``lax.scan(reverse=True)``.

    Args:
        rewards_bt: [B, T] per-token rewards r_t (typically the outcome reward on the
            last valid token, optionally minus a per-token KL penalty).
        values_bt: [B, T] value predictions V_t = V(s_t).
        mask_bt: [B, T] bool/0-1 mask of valid completion tokens.
        gamma: discount γ.
        lam: GAE trace parameter λ.

    Returns:
        (advantages_bt, returns_bt), both [B, T] float32, zero at invalid positions.
    """
    rewards_bt = jnp.asarray(rewards_bt, jnp.float32)
    values_bt = jnp.asarray(values_bt, jnp.float32)
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    gamma = jnp.asarray(gamma, jnp.float32)
    lam = jnp.asarray(lam, jnp.float32)

    def step(carry, xs):
        next_value_b, next_adv_b = carry  # [B], [B]
        r_b, v_b, m_b = xs
        delta_b = r_b + gamma * next_value_b - v_b
        adv_b = delta_b + gamma * lam * next_adv_b
        adv_b = jnp.where(m_b, adv_b, 0.0)
        # At an invalid position reset the recursion: V=0, A=0 (episode boundary).
        new_carry = (jnp.where(m_b, v_b, 0.0), adv_b)
        return new_carry, adv_b

    batch = rewards_bt.shape[0]
    init = (jnp.zeros((batch,), jnp.float32), jnp.zeros((batch,), jnp.float32))
    xs = (rewards_bt.T, values_bt.T, valid_bt.T)  # time-major [T, B]
    _, adv_tb = jax.lax.scan(step, init, xs, reverse=True)
    advantages_bt = adv_tb.T
    returns_bt = jnp.where(valid_bt, advantages_bt + values_bt, 0.0)
    return advantages_bt, returns_bt


def group_relative_advantages(
    rewards_n: jax.Array,
    group_size: int,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> jax.Array:
    """Group-relative advantages (GRPO, Shao et al. 2024; Dr. GRPO, Liu et al. 2025).

    Rewards are laid out flat as [B·G] with each group of G completions of the same
    prompt contiguous: sample i belongs to group ``i // G``. With group mean μ_g and
    *population* standard deviation σ_g (ddof=0, i.e. divide by G, not G−1)::

            GRPO       (scale_by_std=True):   Â_i = (r_i − μ_g) / (σ_g + eps)
            Dr. GRPO   (scale_by_std=False):  Â_i =  r_i − μ_g

    A group whose rewards are all equal gets Â = 0 in both forms (no signal).

    The statistics are per group, so under ``pmap`` a shard holding whole groups
    (the G samples of a prompt are adjacent) needs no collective.

    Args:
        rewards_n: [B·G] scalar reward per completion.
        group_size: G, static Python int; must divide the length of ``rewards_n``.
        scale_by_std: divide by σ_g (GRPO) or not (Dr. GRPO).
        eps: ε added to σ_g in the denominator.

    Returns:
        [B·G] float32 advantages, one per completion (broadcast over its tokens by
        the caller).
    """
    rewards_n = jnp.asarray(rewards_n, jnp.float32)
    n = rewards_n.shape[0]
    if group_size <= 0 or n % group_size != 0:
        raise ValueError(f"group_size={group_size} must be positive and divide len(rewards)={n}")
    rewards_bg = rewards_n.reshape(n // group_size, group_size)  # [B, G]
    mean_b1 = rewards_bg.mean(axis=1, keepdims=True)
    adv_bg = rewards_bg - mean_b1
    if scale_by_std:
        std_b1 = jnp.sqrt(jnp.mean(adv_bg**2, axis=1, keepdims=True))  # ddof=0
        adv_bg = adv_bg / (std_b1 + eps)
    return adv_bg.reshape(n)


def whiten(
    x: jax.Array, mask: jax.Array, eps: float = 1e-8, axis_name: str | None = None
) -> jax.Array:
    """Masked whitening (advantage normalisation), as in PPO implementations.

    Over the valid entries (``mask`` true) with mean μ and population variance σ²::

            x̂ = (x − μ) / sqrt(σ² + eps)

    Invalid entries are set to 0. With no valid entries the output is all zeros.

    Under ``pmap``/``shard_map`` with ``axis_name`` set, ``x`` is this device's shard
    and μ, σ² are those of the valid entries of *all* shards (the count and the two
    sums are ``psum``'ed), so the result equals whitening the concatenated batch.

    Args:
        x: array of any shape (e.g. advantages [B, T]).
        mask: bool/0-1 array broadcastable to ``x``.
        eps: ε inside the square root.
        axis_name: optional mapped axis to reduce the statistics over.

    Returns:
        float32 array shaped like ``x``.
    """
    x = jnp.asarray(x, jnp.float32)
    m = jnp.broadcast_to(jnp.asarray(mask).astype(bool), x.shape)
    mf = m.astype(jnp.float32)
    count = jnp.maximum(_psum(mf.sum(), axis_name), 1.0)
    mean = _psum(jnp.sum(jnp.where(m, x, 0.0)), axis_name) / count
    centred = jnp.where(m, x - mean, 0.0)
    var = _psum(jnp.sum(centred**2), axis_name) / count
    return centred * jax.lax.rsqrt(var + eps)
