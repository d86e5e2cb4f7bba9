"""Adaptive controllers for the clip range, entropy bonus and KL coefficient.

Each controller is a ``flax.struct.dataclass`` of float32 jnp scalars (a pytree),
so it lives inside the jitted train state, is updated on device without host
round-trips, and is saved/restored by the checkpoint with everything else
(DESIGN.md, convention 9). Update rules are pure functions ``(state, measurement,
*, hyper-parameters) -> state`` built from ``jnp.where``/``jnp.clip`` only.

References:
  * Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"
    (adaptive KL controller).
  * Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"
    (entropy-coefficient tuning towards a target entropy, in log space).
  * Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (the adaptive
    KL penalty's ×1.5 band, reused here for the clip range).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "ClipState",
    "init_clip",
    "update_clip",
    "EntropyCoefState",
    "init_entropy_coef",
    "update_entropy_coef",
    "entropy_coef",
    "KLCoefState",
    "init_kl_coef",
    "update_kl_coef",
]

_LOG_COEF_MIN = math.log(1e-6)  # lower clamp of log β_H
_LOG_COEF_MAX = math.log(1.0)  # upper clamp of log β_H


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


# --------------------------------------------------------------------------- clip


@struct.dataclass
class ClipState:
    """State of the adaptive PPO clip range."""

    eps_low: jax.Array  # ε_low: ratio clipped below at 1 − ε_low (scalar f32)
    eps_high: jax.Array  # ε_high: ratio clipped above at 1 + ε_high (scalar f32)


def init_clip(eps_low: float, eps_high: float) -> ClipState:
    """Initial clip range [1 − ε_low, 1 + ε_high]."""
    return ClipState(eps_low=_f32(eps_low), eps_high=_f32(eps_high))


def update_clip(
    state: ClipState,
    measured: float | jax.Array,
    *,
    target: float,
    rate: float,
    eps_min: float,
    eps_max: float,
) -> ClipState:
    """Adapt the clip range so a measured step size tracks ``target``.

    ``measured`` is whatever step-size statistic the caller chose, measured on the
    last update: either the approximate KL between old and new policy
    (``aux["approx_kl"]`` of ``ppo_policy_loss``) or the clip fraction
    (``aux["clip_frac"]``); ``target`` must be in the same unit. With factor
    f = 1 + rate::

        measured > 1.5 · target  →  ε ← ε / f    (steps too large: tighten)
        measured < target / 1.5  →  ε ← ε · f    (steps too small: loosen)
        otherwise                →  ε unchanged

    applied to ε_low and ε_high alike (their ratio is preserved until a clamp),
    then each is clamped to [eps_min, eps_max].

    Args:
      state: current ``ClipState``.
      measured: scalar statistic (KL or clip fraction).
      target: desired value of ``measured``.
      rate: relative change per update (f = 1 + rate).
      eps_min: lower clamp of each ε.
      eps_max: upper clamp of each ε.

    Returns:
      The new ``ClipState``.
    """
    measured = _f32(measured)
    factor = _f32(1.0 + rate)
    scale = jnp.where(
        measured > 1.5 * target, 1.0 / factor, jnp.where(measured < target / 1.5, factor, _f32(1.0))
    )
    return ClipState(
        eps_low=jnp.clip(state.eps_low * scale, eps_min, eps_max),
        eps_high=jnp.clip(state.eps_high * scale, eps_min, eps_max),
    )


# ----------------------------------------------------------------------- entropy


@struct.dataclass
class EntropyCoefState:
    """State of the adaptive entropy-bonus coefficient β_H, kept in log space."""

    log_coef: jax.Array  # log β_H, clamped to [log 1e-6, log 1] (scalar f32)


def init_entropy_coef(coef: float) -> EntropyCoefState:
    """Initial coefficient β_H = ``coef`` (> 0), clamped to [1e-6, 1]."""
    if coef <= 0:
        raise ValueError(f"entropy coefficient must be positive, got {coef}")
    return EntropyCoefState(log_coef=jnp.clip(_f32(math.log(coef)), _LOG_COEF_MIN, _LOG_COEF_MAX))


def update_entropy_coef(
    state: EntropyCoefState,
    entropy: float | jax.Array,
    *,
    target: float,
    lr: float,
) -> EntropyCoefState:
    """Move β_H so the policy entropy H tracks the target H̄ (SAC-style)::

        log β_H ← clip(log β_H + lr · (H̄ − H), log 1e-6, log 1)

    The bonus grows when the entropy falls below target (fights entropy
    collapse) and shrinks when it is above.

    Args:
      state: current ``EntropyCoefState``.
      entropy: measured mean token entropy H (nats).
      target: H̄, the target entropy (nats).
      lr: step size on log β_H.
    """
    log_coef = state.log_coef + lr * (target - _f32(entropy))
    return EntropyCoefState(log_coef=jnp.clip(log_coef, _LOG_COEF_MIN, _LOG_COEF_MAX))


def entropy_coef(state: EntropyCoefState) -> jax.Array:
    """β_H = exp(log β_H)."""
    return jnp.exp(state.log_coef)


# ---------------------------------------------------------------------------- KL


@struct.dataclass
class KLCoefState:
    """State of the adaptive KL-penalty coefficient β (Ziegler et al. 2019)."""

    coef: jax.Array  # β, the KL penalty coefficient (scalar f32)


def init_kl_coef(coef: float) -> KLCoefState:
    """Initial coefficient β = ``coef``."""
    return KLCoefState(coef=_f32(coef))


def update_kl_coef(
    state: KLCoefState,
    kl: float | jax.Array,
    *,
    target: float,
    horizon: float,
    n_steps: int | jax.Array,
) -> KLCoefState:
    """Adaptive KL controller of Ziegler et al. 2019 (proportional control)::

        e_t = clip(KL_t / KL_target − 1, −0.2, 0.2)
        β   ← β · (1 + K_β · e_t),   K_β = n_steps / horizon

    Args:
      state: current ``KLCoefState``.
      kl: measured KL between policy and reference (KL_t).
      target: KL_target.
      horizon: H, the controller's horizon (in samples/steps).
      n_steps: number of samples/steps since the last update (n).
    """
    err = jnp.clip(_f32(kl) / target - 1.0, -0.2, 0.2)
    mult = 1.0 + err * _f32(n_steps) / horizon
    return KLCoefState(coef=state.coef * mult)
