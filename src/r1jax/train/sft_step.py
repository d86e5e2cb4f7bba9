"""Supervised warm start (R1's cold start): next-token cross-entropy on references.

Examples are packed several to a row (segment ids keep them from attending to each
other, positions restart per example), which on the embedded default cuts the padded
tokens a step processes by about 2.5x.

Under `pmap` (`axis_name`, `r1jax.train.pmap`) each device holds a block of rows: the
token count that normalises the loss is `psum`'ed, each device's loss is its tokens'
share of the global mean, and the `psum` of losses and gradients is the global-batch
loss and gradient, so every device applies the jit path's update.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax.models.transformer import packed_causal
from r1jax.sampling import _lm_head, map_position_chunks
from r1jax.train.state import Graphs, TrainState, add_ewc_penalty, guarded_update, policy_model


@flax.struct.dataclass
class SFTBatch:
    """Packed rows: several (prompt, solution) examples per row, separated by segment ids."""

    tokens: jax.Array  # [R, S] int32 inputs
    targets: jax.Array  # [R, S] int32 next token at each position
    loss_mask: jax.Array  # [R, S] bool, True where the target is a solution token or EOS
    segments: jax.Array  # [R, S] int32 example id within the row (0 = padding)
    positions: jax.Array  # [R, S] int32 position within its example


def pack_examples(examples, rows: int, length: int, pad_id: int) -> SFTBatch:
    """Greedy first-fit packing of (prompt_ids, solution_ids) pairs into `rows` x `length`.

    Examples that no longer fit are dropped (the caller samples more than enough).
    """
    arr = {
        k: np.zeros((rows, length), np.int32)
        for k in ("tokens", "targets", "segments", "positions")
    }
    arr["tokens"][:] = pad_id
    loss = np.zeros((rows, length), bool)
    fill = np.zeros(rows, np.int64)
    count = np.zeros(rows, np.int64)
    for prompt, solution in examples:
        seq = list(prompt) + list(solution)
        n = len(seq)
        r = int(np.argmax(fill + n <= length)) if (fill + n <= length).any() else -1
        if r < 0:
            continue
        a = int(fill[r])
        count[r] += 1
        arr["tokens"][r, a : a + n] = seq
        arr["targets"][r, a : a + n - 1] = seq[1:]
        arr["segments"][r, a : a + n] = count[r]
        arr["positions"][r, a : a + n] = np.arange(n)
        loss[r, a + len(prompt) - 1 : a + n - 1] = True  # predict solution tokens and EOS
        fill[r] += n
    return SFTBatch(arr["tokens"], arr["targets"], loss, arr["segments"], arr["positions"])


def _global_tokens(batch: SFTBatch, axis_name):
    n = batch.loss_mask.astype(jnp.float32).sum()
    return jnp.maximum(n if axis_name is None else jax.lax.psum(n, axis_name), 1.0)


def sft_loss(
    params,
    batch: SFTBatch,
    graphs: Graphs,
    axis_name: str | None = None,
    n_tok=None,
    base=None,
    logit_chunk: int = 0,
):
    """(loss, aux): token-mean cross-entropy; with `axis_name`, this shard's contribution.

    `logit_chunk` > 0: the loss from the hidden states, that many positions at a time
    (`sampling.map_position_chunks`), so no `[rows, S, V]` logits tensor is formed in
    either pass (`sft.logit_chunk`; same numbers up to float rounding).

    `n_tok`: the normalising token count (default: this batch's, global over the axis);
    gradient accumulation passes the whole batch's count to each microbatch.
    `base`: the frozen weights when `params` are LoRA adapters (`graphs.lora`).
    """
    model = policy_model(graphs, params, base)
    mask = packed_causal(batch.segments)  # [R, S, S]: causal within each packed sequence
    m = batch.loss_mask.astype(jnp.float32)
    if logit_chunk:  # [R, chunk, V] logits at a time, recomputed in the backward pass
        h, _ = model.model(batch.tokens, batch.positions, mask)  # [R, S, D]

        def ce_hit(h_c, targets_c):
            logits = _lm_head(model, h_c)
            lse = jax.nn.logsumexp(logits, axis=-1)
            picked = jnp.take_along_axis(logits, targets_c[..., None], axis=-1)[..., 0]
            return lse - picked, jnp.argmax(logits, -1) == targets_c

        ce, hit = map_position_chunks(ce_hit, h, batch.targets, logit_chunk)
    else:
        logits, _ = model(batch.tokens, batch.positions, mask)  # [R, S, V]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
        hit = jnp.argmax(logits, -1) == batch.targets
    if n_tok is None:
        n_tok = _global_tokens(batch, axis_name)
    loss = (ce * m).sum() / n_tok
    acc = (hit * m).sum() / n_tok
    return loss, dict(token_accuracy=acc, tokens=m.sum())


def sft_step(
    state: TrainState,
    batch: SFTBatch,
    *,
    graphs: Graphs,
    tx,
    axis_name=None,
    grad_accum=1,
    logit_chunk=0,
):
    """One AdamW step on the policy; returns (new_state, metrics).

    With `state.ewc` (continual learning) the loss includes the EWC penalty, also
    reported on its own as `ewc_penalty` (`loss` is cross-entropy + penalty).

    `axis_name`: inside `pmap`, `batch` is this device's rows and the state replicated.
    `grad_accum`: the rows are processed in that many sequential microbatches whose
    losses and gradients add up to the whole batch's (one update, less activation memory).
    `logit_chunk`: positions per logits chunk (`sft_loss`; 0 = whole logits).
    """
    grad = jax.value_and_grad(functools.partial(sft_loss, logit_chunk=logit_chunk), has_aux=True)
    rows = batch.tokens.shape[0]
    if rows % grad_accum:
        raise ValueError(f"{rows} rows per device are not divisible by grad_accum={grad_accum}")
    if grad_accum == 1:
        (loss, aux), grads = grad(state.policy, batch, graphs, axis_name, base=state.base)
    else:
        n_tok = _global_tokens(batch, axis_name)
        micro_bs = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)

        def micro_grad(mb):
            return grad(state.policy, mb, graphs, axis_name, n_tok, base=state.base)

        def micro(acc, mb):
            return jax.tree.map(jnp.add, acc, micro_grad(mb)), None

        first = jax.eval_shape(micro_grad, jax.tree.map(lambda x: x[0], micro_bs))
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), first)
        ((loss, aux), grads), _ = jax.lax.scan(micro, zeros, micro_bs)
    if axis_name is not None:
        loss, grads, aux = jax.lax.psum((loss, grads, aux), axis_name)
    # Continual learning: the EWC penalty of earlier tasks (0 without EWC).
    loss, grads, aux = add_ewc_penalty(state.ewc, state.policy, loss, grads, aux)
    params, opt, bad = guarded_update(tx, grads, state.policy_opt, state.policy, loss)
    skipped = state.skipped + bad
    new_state = state.replace(step=state.step + 1, policy=params, policy_opt=opt, skipped=skipped)
    return new_state, dict(loss=loss, skipped_updates=skipped, **aux)
