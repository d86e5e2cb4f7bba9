"""Jitted generation with a KV cache, and per-token log-probabilities.

`generate` is a pure function (prefill + a `lax.while_loop` of decode steps that stops
once every row has written EOS) meant to be
called inside a larger jitted program (the RL iteration) or jitted on its own
(evaluation). Prompts are left-padded to a common length P so every row writes the
cache at the same index; completions are `[B, T]` with PAD after the first EOS.

The sampler and the learner compute log-probabilities the same way
(`logits / temperature`, float32 log-softmax), so the PPO ratio starts at 1.

Randomness is per row: the token of row b at decode step t is drawn with the key
`fold_in(fold_in(key, t), row_offset + b)`, so a row's sample does not depend on how the
batch is split. A data-parallel shard holding global rows `[r, r + B)` passes
`row_offset=r` and samples exactly what one device sampling the whole batch would.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from r1jax.models.transformer import causal_mask, init_cache, positions_from_mask


class Rollout(NamedTuple):
    tokens_bt: jax.Array  # [B, T] int32 sampled completion (PAD after EOS)
    logp_bt: jax.Array  # [B, T] float32 log π(token) under the sampling distribution
    mask_bt: jax.Array  # [B, T] bool, True up to and including EOS
    entropy_bt: jax.Array  # [B, T] float32 entropy of the sampling distribution


def _scaled_logp(logits, temperature):
    t = jnp.where(temperature > 0, temperature, 1.0)
    return jax.nn.log_softmax(logits.astype(jnp.float32) / t, axis=-1)


def generate(
    model,
    prompt_bp,
    prompt_mask_bp,
    key,
    *,
    max_new_tokens: int,
    temperature,
    eos_id: int,
    pad_id: int,
    row_offset=0,
) -> Rollout:
    """Samples `max_new_tokens` tokens per prompt (greedy when temperature == 0).

    `row_offset` (int or traced scalar) is the global index of this batch's first row;
    it selects the rows' random streams (module docstring).
    """
    cfg = model.cfg
    b, p = prompt_bp.shape
    s = p + max_new_tokens
    cache = init_cache(cfg, b, s)
    kv_valid_bs = jnp.concatenate([prompt_mask_bp, jnp.zeros((b, max_new_tokens), bool)], 1)
    positions_bp = positions_from_mask(prompt_mask_bp)
    prefill_mask = causal_mask(prompt_mask_bp)  # [B, P, P]
    prefill_mask = jnp.pad(prefill_mask, ((0, 0), (0, 0), (0, max_new_tokens)))
    logits_bpv, cache = model(prompt_bp, positions_bp, prefill_mask, cache, 0)
    last_logits_bv = logits_bpv[:, -1]
    next_pos_b = positions_bp[:, -1] + 1
    temperature = jnp.asarray(temperature, jnp.float32)
    row_ids_b = jnp.asarray(row_offset, jnp.int32) + jnp.arange(b, dtype=jnp.int32)
    fold_rows = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
    categorical_rows = jax.vmap(jax.random.categorical)

    def step(carry):
        t, cache, logits_bv, kv_valid_bs, pos_b, done_b, outs = carry
        logp_bv = _scaled_logp(logits_bv, temperature)
        sampled = categorical_rows(fold_rows(jax.random.fold_in(key, t), row_ids_b), logp_bv)
        tok_b = jnp.where(temperature > 0, sampled, jnp.argmax(logits_bv, axis=-1))
        tok_b = jnp.where(done_b, pad_id, tok_b).astype(jnp.int32)
        lp_b = jnp.take_along_axis(logp_bv, tok_b[:, None], axis=-1)[:, 0]
        ent_b = -jnp.sum(jnp.exp(logp_bv) * logp_bv, axis=-1)
        valid_b = ~done_b
        idx = p + t
        kv_valid_bs = jax.lax.dynamic_update_slice_in_dim(kv_valid_bs, valid_b[:, None], idx, 1)
        mask_b1s = kv_valid_bs[:, None, :] & (jnp.arange(s) <= idx)[None, None, :]
        logits_b1v, cache = model(tok_b[:, None], pos_b[:, None], mask_b1s, cache, idx)
        done_b = done_b | (tok_b == eos_id)
        new = (tok_b, jnp.where(valid_b, lp_b, 0.0), valid_b, jnp.where(valid_b, ent_b, 0.0))
        outs = tuple(
            jax.lax.dynamic_update_slice_in_dim(o, x[:, None].astype(o.dtype), t, 1)
            for o, x in zip(outs, new)
        )
        return (t + 1, cache, logits_b1v[:, 0], kv_valid_bs, pos_b + 1, done_b, outs)

    def not_finished(carry):
        t, done_b = carry[0], carry[5]
        return (t < max_new_tokens) & ~jnp.all(done_b)

    # Decode until every row has written EOS (or T tokens): a while loop, so a batch of
    # short answers stops early. Positions never reached keep PAD / 0 / False, exactly
    # what a full-length scan writes after EOS.
    outs = (
        jnp.full((b, max_new_tokens), pad_id, jnp.int32),
        jnp.zeros((b, max_new_tokens), jnp.float32),
        jnp.zeros((b, max_new_tokens), bool),
        jnp.zeros((b, max_new_tokens), jnp.float32),
    )
    init = (jnp.int32(0), cache, last_logits_bv, kv_valid_bs, next_pos_b, jnp.zeros((b,), bool))
    *_, outs = jax.lax.while_loop(not_finished, step, (*init, outs))
    return Rollout(*outs)


def sequence_logits(model, prompt_bp, prompt_mask_bp, completion_bt, completion_mask_bt):
    """Runs the model on prompt ++ completion; returns logits predicting each completion token.

    Returns `[B, T, V]`: row t holds the logits that predicted `completion_bt[:, t]`.
    """
    p = prompt_bp.shape[1]
    tokens = jnp.concatenate([prompt_bp, completion_bt], axis=1)
    valid = jnp.concatenate([prompt_mask_bp, completion_mask_bt], axis=1)
    logits, _ = model(tokens, positions_from_mask(valid), causal_mask(valid))
    return logits[:, p - 1 : -1]


def token_logp(logits_btv, tokens_bt, temperature=1.0):
    """log π(token) under `softmax(logits / temperature)`, float32."""
    logp = _scaled_logp(logits_btv, jnp.asarray(temperature, jnp.float32))
    return jnp.take_along_axis(logp, tokens_bt[..., None], axis=-1)[..., 0]
