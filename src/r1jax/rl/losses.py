"""PPO/GRPO policy and value losses, KL estimators, entropy, forking-token mask.

All functions are pure and jit-compatible over arrays shaped [B, T] (``_bt``);
``logits_btv`` is [B, T, V]. Arithmetic that is sensitive to precision (ratios,
KL estimators, entropy) is done in float32 whatever the input dtype.

Loss aggregation takes an explicit ``normalizer`` so that minibatches and data
shards divide by the count of the whole *global* batch (DESIGN.md, convention 5):
the sum of per-minibatch losses is then exactly the full-batch loss, and the
gradient does not depend on how tokens were split.

Data parallelism with ``pmap`` (``axis_name``): the losses stay this shard's
*contribution* (its tokens over the global Z), so the caller ``psum``s the loss and the
gradients, which gives the global-batch loss and gradient; nothing is ``psum``'ed inside
a differentiated function. The aux metrics (means over valid tokens) and the
forking-token threshold are made global over ``axis_name`` here.

References:
  * Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (clipped
    surrogate, value clipping as in OpenAI baselines).
  * Yu et al. 2025, "DAPO" (clip-higher ε_low ≠ ε_high, token-level mean).
  * Liu et al. 2025, "Understanding R1-Zero-Like Training" (Dr. GRPO, the
    constant ``num_seqs * max_len`` normaliser).
  * Schulman 2020, "Approximating KL Divergence" (k1, k2, k3 estimators).
  * Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive
    Effective RL for LLM Reasoning" (forking tokens).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "AGGREGATION_MODES",
    "KL_KINDS",
    "aggregate",
    "ppo_policy_loss",
    "value_loss",
    "kl_estimate",
    "entropy_from_logits",
    "high_entropy_mask",
]

AGGREGATION_MODES = ("token_mean", "seq_mean_token_sum_norm", "seq_mean_token_mean")
KL_KINDS = ("k1", "k2", "k3")


def _masked_mean(x: jax.Array, valid: jax.Array, axis_name: str | None = None) -> jax.Array:
    """Mean of ``x`` over ``valid`` entries (0 if none); a metric.

    Over this array, or over all shards of the mapped axis ``axis_name``."""
    x = jnp.where(valid, x.astype(jnp.float32), 0.0)
    if axis_name is None:
        return x.sum() / jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    count = jax.lax.psum(valid.sum(), axis_name)
    return jax.lax.psum(x.sum(), axis_name) / jnp.maximum(count, 1).astype(jnp.float32)


def aggregate(
    x_bt: jax.Array,
    mask_bt: jax.Array,
    mode: str,
    normalizer: float | jax.Array,
) -> jax.Array:
    """Reduce a per-token quantity ``x_bt`` [B, T] to a scalar.

    With m the 0/1 mask and ``normalizer`` = Z supplied by the caller:

    * ``"token_mean"`` (DAPO token-level loss)::

          L = Σ_{b,t} x_bt · m_bt / Z,    Z = number of valid tokens in the
                                               whole global batch

      Every token weighs the same, whatever the length of its sequence.
    * ``"seq_mean_token_sum_norm"`` (Dr. GRPO)::

          L = Σ_{b,t} x_bt · m_bt / Z,    Z = num_seqs · max_len (a constant)

      Same formula as ``token_mean``; only the caller's Z differs. A constant Z
      removes the length bias of per-sequence averaging.
    * ``"seq_mean_token_mean"`` (original GRPO / PPO-per-sequence)::

          L = Σ_b [ Σ_t x_bt · m_bt / max(Σ_t m_bt, 1) ] / Z,
              Z = number of sequences in the whole global batch

      Each sequence weighs the same; a sequence with no valid tokens adds 0.

    Args:
      x_bt: [B, T] per-token values (e.g. the clipped surrogate).
      mask_bt: [B, T] bool/0-1 mask of valid tokens.
      mode: one of ``AGGREGATION_MODES``.
      normalizer: Z, a positive scalar (Python or traced), global over shards and
        minibatches.

    Returns:
      float32 scalar.
    """
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    xm_bt = jnp.where(valid_bt, jnp.asarray(x_bt).astype(jnp.float32), 0.0)
    z = jnp.asarray(normalizer, jnp.float32)
    if mode in ("token_mean", "seq_mean_token_sum_norm"):
        return xm_bt.sum() / z
    if mode == "seq_mean_token_mean":
        len_b = jnp.maximum(valid_bt.sum(axis=-1), 1).astype(jnp.float32)
        return (xm_bt.sum(axis=-1) / len_b).sum() / z
    raise ValueError(f"unknown aggregation mode {mode!r}; valid: {AGGREGATION_MODES}")


def ppo_policy_loss(
    logp_bt: jax.Array,
    old_logp_bt: jax.Array,
    adv_bt: jax.Array,
    mask_bt: jax.Array,
    eps_low: float | jax.Array,
    eps_high: float | jax.Array,
    normalizer: float | jax.Array,
    mode: str = "token_mean",
    weights_bt: jax.Array | None = None,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO clipped surrogate with asymmetric clip range (DAPO clip-higher).

    With the per-token ratio ρ_t = exp(log π(a_t) − log π_old(a_t)) (float32)::

        s_t = min(ρ_t · Â_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) · Â_t) · w_t
        L   = −aggregate(s, m, mode, Z)

    where w_t are optional per-token weights (e.g. importance weights from
    prioritized sampling, or a forking-token mask); w ≡ 1 if ``weights_bt`` is None.

    Aux metrics (means over the valid tokens of *this* call, diagnostics only):
      * ``clip_frac``: fraction where the clipped term is the one selected by the
        min and differs from the unclipped one (the gradient is zero there).
      * ``approx_kl``: k3 estimate of KL(π_old ‖ π) with samples from π_old,
        (ρ − 1) − log ρ.
      * ``ratio_mean``: mean of ρ.

    Invalid positions are masked *before* the exponential, so garbage there (e.g.
    −inf logprobs of padding) cannot produce inf/NaN values or gradients.

    Args:
      logp_bt: [B, T] log π_θ(a_t | s_t) of the current policy (differentiable).
      old_logp_bt: [B, T] log π_old(a_t | s_t) from the sampler (no gradient).
      adv_bt: [B, T] advantages Â_t.
      mask_bt: [B, T] valid-token mask.
      eps_low: ε_low, lower clip ratio 1 − ε_low.
      eps_high: ε_high, upper clip ratio 1 + ε_high.
      normalizer: Z, see ``aggregate``.
      mode: aggregation mode, see ``aggregate``.
      weights_bt: optional [B, T] per-token weights w_t.
      axis_name: optional mapped (``pmap``) axis: the aux means are taken over the
        valid tokens of all shards; the loss stays this shard's contribution.

    Returns:
      (loss scalar, aux dict of scalars).
    """
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    log_ratio_bt = jnp.where(
        valid_bt,
        logp_bt.astype(jnp.float32) - jax.lax.stop_gradient(old_logp_bt).astype(jnp.float32),
        0.0,
    )
    ratio_bt = jnp.exp(log_ratio_bt)
    adv_bt = jax.lax.stop_gradient(jnp.asarray(adv_bt, jnp.float32))
    eps_low = jnp.asarray(eps_low, jnp.float32)
    eps_high = jnp.asarray(eps_high, jnp.float32)

    surr1_bt = ratio_bt * adv_bt
    surr2_bt = jnp.clip(ratio_bt, 1.0 - eps_low, 1.0 + eps_high) * adv_bt
    obj_bt = jnp.minimum(surr1_bt, surr2_bt)
    if weights_bt is not None:
        obj_bt = obj_bt * jnp.asarray(weights_bt, jnp.float32)
    loss = -aggregate(obj_bt, valid_bt, mode, normalizer)

    ratio_sg_bt = jax.lax.stop_gradient(ratio_bt)
    log_ratio_sg_bt = jax.lax.stop_gradient(log_ratio_bt)
    clipped_bt = jax.lax.stop_gradient(surr2_bt < surr1_bt)
    aux = {
        "clip_frac": _masked_mean(clipped_bt, valid_bt, axis_name),
        "approx_kl": _masked_mean(
            jnp.expm1(log_ratio_sg_bt) - log_ratio_sg_bt, valid_bt, axis_name
        ),
        "ratio_mean": _masked_mean(ratio_sg_bt, valid_bt, axis_name),
    }
    return loss, aux


def value_loss(
    values_bt: jax.Array,
    old_values_bt: jax.Array,
    returns_bt: jax.Array,
    mask_bt: jax.Array,
    clip_range: float | jax.Array,
    normalizer: float | jax.Array,
    mode: str = "token_mean",
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped value loss (PPO, OpenAI baselines)::

        V^clip_t = V_old,t + clip(V_t − V_old,t, −c, c)
        ℓ_t      = ½ · max((V_t − R_t)², (V^clip_t − R_t)²)
        L        = aggregate(ℓ, m, mode, Z)

    Aux: ``vf_clip_frac``, the fraction of valid tokens where the clipped term is
    the larger (selected) one and differs from the unclipped one.

    Args:
      values_bt: [B, T] current value predictions V_t (differentiable).
      old_values_bt: [B, T] values at rollout time V_old,t (no gradient).
      returns_bt: [B, T] value targets R_t (e.g. GAE returns; no gradient).
      mask_bt: [B, T] valid-token mask.
      clip_range: c, the value clip range.
      normalizer: Z, see ``aggregate``.
      mode: aggregation mode, see ``aggregate``.
      axis_name: optional mapped (``pmap``) axis: ``vf_clip_frac`` is taken over all
        shards; the loss stays this shard's contribution.

    Returns:
      (loss scalar, aux dict of scalars).
    """
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    v_bt = jnp.asarray(values_bt).astype(jnp.float32)
    old_bt = jax.lax.stop_gradient(jnp.asarray(old_values_bt, jnp.float32))
    ret_bt = jax.lax.stop_gradient(jnp.asarray(returns_bt, jnp.float32))
    c = jnp.asarray(clip_range, jnp.float32)
    v_clipped_bt = old_bt + jnp.clip(v_bt - old_bt, -c, c)
    l1_bt = (v_bt - ret_bt) ** 2
    l2_bt = (v_clipped_bt - ret_bt) ** 2
    loss = 0.5 * aggregate(jnp.maximum(l1_bt, l2_bt), valid_bt, mode, normalizer)
    aux = {"vf_clip_frac": _masked_mean(jax.lax.stop_gradient(l2_bt > l1_bt), valid_bt, axis_name)}
    return loss, aux


def kl_estimate(logp_bt: jax.Array, ref_logp_bt: jax.Array, kind: str) -> jax.Array:
    """Per-token estimators of KL(π ‖ π_ref) from samples a ~ π (Schulman 2020).

    With d_t = log π_ref(a_t) − log π(a_t) (float32)::

        k1 = −d                 (unbiased, high variance, can be negative)
        k2 = ½ · d²             (biased, low variance, ≥ 0)
        k3 = (e^d − 1) − d      (unbiased, low variance, ≥ 0; via expm1)

    Args:
      logp_bt: [B, T] log π(a_t) of the sampling/current policy.
      ref_logp_bt: [B, T] log π_ref(a_t) of the reference policy.
      kind: one of ``KL_KINDS``.

    Returns:
      [B, T] float32 per-token estimates (unmasked; aggregate with the mask).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator kind {kind!r}; valid kinds: {KL_KINDS}")
    d_bt = ref_logp_bt.astype(jnp.float32) - logp_bt.astype(jnp.float32)
    if kind == "k1":
        return -d_bt
    if kind == "k2":
        return 0.5 * d_bt**2
    return jnp.expm1(d_bt) - d_bt


def entropy_from_logits(logits_btv: jax.Array) -> jax.Array:
    """Entropy of the categorical distribution over the last axis, in nats::

        H = −Σ_v p_v · log p_v,    log p = log_softmax(logits)   (float32)

    Entries with logit −inf (masked vocabulary) contribute 0 and give finite
    gradients.

    Args:
      logits_btv: [B, T, V] logits (any float dtype).

    Returns:
      [B, T] float32 entropies.
    """
    logp_btv = jax.nn.log_softmax(logits_btv.astype(jnp.float32), axis=-1)
    p_btv = jnp.exp(logp_btv)
    safe_logp_btv = jnp.where(jnp.isfinite(logp_btv), logp_btv, 0.0)
    return -jnp.sum(p_btv * safe_logp_btv, axis=-1)


def high_entropy_mask(
    entropy_bt: jax.Array,
    mask_bt: jax.Array,
    top_q: float | jax.Array,
    axis_name: str | None = None,
) -> jax.Array:
    """Mask of "forking tokens": the valid tokens with the highest entropy.

    Following Wang et al. 2025, keep the top ``top_q`` fraction (0 < q ≤ 1) of the
    valid tokens of the whole batch by entropy. With n valid tokens,
    k = ceil(q · n) (computed dynamically; clipped to [1, n]) and τ the k-th
    largest valid entropy::

        out_bt = m_bt ∧ (H_bt ≥ τ)

    Ties at τ are all kept, so slightly more than k tokens may be marked. Shapes
    are static (a sort over all B·T entries with invalid ones set to −inf), so
    this runs under ``jit``. ``top_q == 1`` returns the mask itself; no valid
    tokens gives all False.

    Args:
      entropy_bt: [B, T] per-token entropies (e.g. from ``entropy_from_logits``).
      mask_bt: [B, T] valid-token mask.
      top_q: q, the kept fraction (Python float or traced scalar).
      axis_name: optional mapped (``pmap``) axis: the arrays are this device's rows
        of a batch split along axis 0 and the threshold τ is that of the whole batch
        (the entropies are all-gathered), so the mask equals the global one's rows.

    Returns:
      [B, T] bool mask.
    """
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    if isinstance(top_q, (int, float)):
        if not 0.0 < top_q <= 1.0:
            raise ValueError(f"top_q must be in (0, 1], got {top_q}")
        if top_q == 1.0:
            return valid_bt
    ent_bt = jnp.asarray(entropy_bt, jnp.float32)
    all_valid, all_ent = valid_bt, ent_bt
    if axis_name is not None:
        all_valid = jax.lax.all_gather(valid_bt, axis_name, tiled=True)
        all_ent = jax.lax.all_gather(ent_bt, axis_name, tiled=True)
    flat_n = jnp.where(all_valid, all_ent, -jnp.inf).reshape(-1)
    desc_n = -jnp.sort(-flat_n)  # descending; invalid (−inf) last
    num_valid = all_valid.sum()
    k = jnp.ceil(jnp.asarray(top_q, jnp.float32) * num_valid.astype(jnp.float32))
    k = jnp.clip(k.astype(jnp.int32), 1, jnp.maximum(num_valid, 1))
    threshold = desc_n[k - 1]
    return valid_bt & (ent_bt >= threshold)
