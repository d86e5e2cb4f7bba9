"""Supervised warm start (R1's cold start): next-token cross-entropy on references."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from r1jax.sampling import sequence_logits
from r1jax.train.state import Graphs, TrainState, all_finite, apply_if_finite
from flax import nnx


@flax.struct.dataclass
class SFTBatch:
  prompt: jax.Array        # [B, P] int32, left-padded prompts
  prompt_mask: jax.Array   # [B, P] bool
  target: jax.Array        # [B, T] int32, reference solution + EOS, right-padded
  target_mask: jax.Array   # [B, T] bool


def sft_loss(params, batch: SFTBatch, graphs: Graphs):
  model = nnx.merge(graphs.policy, params)
  logits = sequence_logits(model, batch.prompt, batch.prompt_mask, batch.target,
                           batch.target_mask)                     # [B, T, V]
  mask = batch.target_mask.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.target)
  n_tok = jnp.maximum(mask.sum(), 1.0)                            # global token count
  loss = (ce * mask).sum() / n_tok
  acc = ((jnp.argmax(logits, -1) == batch.target) * mask).sum() / n_tok
  return loss, dict(token_accuracy=acc)


def sft_step(state: TrainState, batch: SFTBatch, *, graphs: Graphs, tx):
  """One AdamW step on the policy; returns (new_state, metrics)."""
  (loss, aux), grads = jax.value_and_grad(sft_loss, has_aux=True)(state.policy, batch, graphs)
  updates, new_opt = tx.update(grads, state.policy_opt, state.policy)
  new_params = jax.tree.map(jnp.add, state.policy, updates)
  ok = all_finite(loss, grads)
  params, opt = apply_if_finite(ok, (new_params, new_opt), (state.policy, state.policy_opt))
  skipped = state.skipped + (~ok).astype(jnp.int32)
  new_state = state.replace(step=state.step + 1, policy=params, policy_opt=opt,
                            skipped=skipped)
  return new_state, dict(loss=loss, skipped_updates=skipped, **aux)
