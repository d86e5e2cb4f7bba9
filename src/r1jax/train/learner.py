"""The learner of an RL iteration: minibatch epochs of the policy and of the critic.

After the rollout, the RL iteration (`train.rl_step`) fills a `RolloutBuffer` (a typed
pytree: completions, masks, π_old and π_ref log-probs, advantages, the policy-gradient
mask, prompts, and the critic's old values and returns) and hands it here:

* `policy_epochs`: K epochs (`lax.scan`) × M minibatches of the clipped policy loss
  (`rl.ppo_policy_loss`) + β·KL(π‖π_ref) − β_H·entropy, each minibatch one optax update
  (skipped when non-finite, `state.guarded_update`); minibatches shuffled, or prioritised
  by |advantage| with importance weights;
* `critic_epochs`: the critic's own epochs at its own learning rate (`rl.value_epochs`,
  its own optimizer: the two time scales), on the clipped value loss;
* `accumulate`: one minibatch's gradient as the sum over `grad_accum` microbatches (only
  one microbatch's activations live at a time).

Sizes are global: under `pmap` the buffer is all-gathered, every device draws the same
`[M, mb]` index matrix and trains on its columns (`reductions.Axis.local_cols`), and the
losses are each device's contribution to the global minibatch's loss (psum'ed).
Minibatches are whole groups (a prompt's G samples are consecutive rows) unless
prioritised; when a device's (micro)batch is whole groups, each prompt's forward runs
once for its group (`sampling.grouped_hidden`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from r1jax import rl
from r1jax.models.transformer import padded_causal, positions_from_mask
from r1jax.sampling import (
    grouped_hidden,
    grouped_sequence_logits,
    sequence_hidden,
    sequence_logits,
    token_logp,
    token_logp_entropy,
)
from r1jax.train.reductions import Axis, token_count
from r1jax.train.state import add_ewc_penalty, guarded_update, policy_params

__all__ = [
    "chunked_rows",
    "Minibatches",
    "RolloutBuffer",
    "accumulate",
    "critic_epochs",
    "forward",
    "forward_logp",
    "policy_epochs",
]


@flax.struct.dataclass
class RolloutBuffer:
    """What the learner trains on: one row per completion (G consecutive rows a prompt)."""

    tokens: jax.Array  # [N, T] int32 completions
    mask_b: jax.Array  # [N, T] bool, completion tokens (EOS included)
    old_logp: jax.Array  # [N, T] f32, log π_old (the sampler's)
    ref_logp: jax.Array  # [N, T] f32, log π_ref
    adv: jax.Array  # [N, T] f32 advantages
    pg_mask: jax.Array  # [N, T] f32, tokens that get a policy gradient
    prompt: jax.Array  # [N, P] int32 left-padded prompts
    prompt_mask: jax.Array  # [N, P] bool
    old_v: Any = None  # [N, T] f32 critic values at the rollout (None: no critic)
    ret: Any = None  # [N, T] f32 returns (None: no critic)

    def take(self, idx, group_size: int | None = None) -> "RolloutBuffer":
        """Rows `idx`; with `group_size` G the prompts once per group (`idx[::G]`)."""
        rows = jax.tree.map(lambda v: v[idx], self.replace(prompt=None, prompt_mask=None))
        pidx = idx[::group_size] if group_size else idx
        return rows.replace(prompt=self.prompt[pidx], prompt_mask=self.prompt_mask[pidx])


@dataclasses.dataclass(frozen=True)
class Minibatches:
    """The minibatch layout of one iteration (global sizes)."""

    n: int  # completions in the global batch
    m: int  # minibatches per epoch
    mb: int  # completions per minibatch
    group_size: int  # G
    groups: int  # draw minibatches as whole groups of this many rows (1: rows one by one)
    group_forward: bool  # a device's (micro)batch is whole groups: prompts run once a group

    @classmethod
    def plan(cls, n: int, hp, ax: Axis) -> "Minibatches":
        m = hp.num_minibatches
        mb = n // m
        if mb % (ax.size * hp.grad_accum):
            raise ValueError(
                f"minibatch size {mb} (= {n} completions / {m} minibatches) must be divisible "
                f"by the {ax.size} data-parallel devices × grad_accum={hp.grad_accum}"
            )
        g = hp.group_size
        whole = g > 1 and mb % g == 0 and not hp.prioritized
        fwd = whole and (mb // (ax.size * hp.grad_accum)) % g == 0
        return cls(n, m, mb, g, g if whole else 1, fwd)

    def take(self, data: RolloutBuffer, idx) -> RolloutBuffer:
        return data.take(idx, self.group_size if self.group_forward else None)

    def shuffled(self, key):
        return rl.shuffled_minibatches(key, self.n, self.m, self.mb, group_size=self.groups)


def chunked_rows(fn, xs, chunk: int):
    """`fn(xs)` on row-batched arrays, computed `chunk` rows at a time (`lax.map`).

    Chunk k holds rows k, k + n/chunk, k + 2n/chunk, ...: the rows are cut along the
    second factor of n = chunk × (n / chunk), so a batch sharded over devices stays
    sharded within each chunk. 0 or chunk >= n: one pass."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if not chunk or chunk >= n:
        return fn(xs)
    if n % chunk:
        raise ValueError(f"a chunk of {chunk} must divide the {n} items of a pass")
    split = lambda x: x.reshape(chunk, n // chunk, *x.shape[1:]).swapaxes(0, 1)
    out = jax.lax.map(fn, jax.tree.map(split, xs))
    return jax.tree.map(lambda y: y.swapaxes(0, 1).reshape(n, *y.shape[2:]), out)


def forward(graphdef, params, prompt, prompt_mask, tokens, mask, temperature):
    """Tempered logits `[N, T, V]` predicting `tokens`. `prompt` holds either one prompt
    per row (N rows) or one per group of N / U consecutive rows (U < N rows: the shared
    prompt runs once per group, `sampling.grouped_hidden`)."""
    model = nnx.merge(graphdef, params)
    if prompt.shape[0] == tokens.shape[0]:
        logits = sequence_logits(model, prompt, prompt_mask, tokens, mask)
    else:
        logits = grouped_sequence_logits(model, prompt, prompt_mask, tokens, mask)
    return logits / temperature


def forward_logp(graphdef, params, prompt, prompt_mask, tokens, mask, temperature, chunk=0):
    """`(log π(token), entropy)` `[N, T]` float32 of the tempered policy at `tokens`
    (`prompt` as in `forward`). `chunk` = 0: from `forward`'s whole logits (the reference
    numbers); `chunk` > 0: from the hidden states, `chunk` positions at a time (one pass
    when `chunk` >= T; `sampling.token_logp_entropy`): no `[N, T, V]` logits in either
    pass, and the forward alone and the forward under `grad` give the same numbers, so
    the reference pass and the learner agree bit for bit on equal shapes (`rl_step`).
    The whole-logits path may differ between those two programs by float rounding."""
    if not chunk:
        lg = forward(graphdef, params, prompt, prompt_mask, tokens, mask, temperature)
        return token_logp(lg, tokens), rl.entropy_from_logits(lg)
    model = nnx.merge(graphdef, params)
    if prompt.shape[0] == tokens.shape[0]:
        h = sequence_hidden(model, prompt, prompt_mask, tokens, mask)
    else:
        h = grouped_hidden(model.model, prompt, prompt_mask, tokens, mask)
    return token_logp_entropy(model, h, tokens, temperature, chunk)


def values(graphs, params, prompt, prompt_mask, tokens, mask_b):
    """Critic values V(s_t) at the positions that predict each completion token: [N, T].

    `prompt`: one prompt per row, or one per group of rows (as `forward`)."""
    if prompt.shape[0] != tokens.shape[0]:
        critic = nnx.merge(graphs.value, params)
        h = grouped_hidden(critic.model, prompt, prompt_mask, tokens, mask_b)
        return critic.value_head(h.astype(jnp.float32))[..., 0]
    p = prompt.shape[1]
    seq = jnp.concatenate([prompt, tokens], axis=1)
    valid = jnp.concatenate([prompt_mask, mask_b], axis=1)
    v = nnx.merge(graphs.value, params)(seq, positions_from_mask(valid), padded_causal(valid))
    return v[:, p - 1 : -1]


# Aux values that add up over the rows of a minibatch (contributions to the loss); the
# others are means over a call's tokens and are averaged with token weights.
_ADDITIVE_AUX = ("pg_loss",)


def accumulate(grad_fn, params, idx, w_b, mb_tokens, steps, mask_b, ax: Axis):
    """`grad_fn(params, idx, w_b, mb_tokens) -> ((loss, aux), grads)` over `steps` microbatches.

    The loss terms are sums over rows divided by minibatch-level normalisers, so the sum
    of the microbatches' losses and gradients is the whole minibatch's loss and gradient
    (up to float reassociation); only one microbatch's activations are live at a time.
    Diagnostics that are token means are combined with token weights.
    """
    if steps == 1:
        return grad_fn(params, idx, w_b, mb_tokens)
    idx_a = idx.reshape(steps, -1)
    w_a = None if w_b is None else w_b.reshape(steps, -1)
    total = token_count(mask_b, idx, ax)

    def micro(acc, xs):
        i, w = xs
        (loss, aux), grads = grad_fn(params, i, w, mb_tokens)
        share = token_count(mask_b, i, ax) / total
        aux = {k: v if k in _ADDITIVE_AUX else v * share for k, v in aux.items()}
        return jax.tree.map(jnp.add, acc, ((loss, aux), grads)), None

    first = jax.eval_shape(grad_fn, params, idx_a[0], None if w_a is None else w_a[0], mb_tokens)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), first)
    out, _ = jax.lax.scan(micro, zeros, (idx_a, w_a))
    return out


def policy_epochs(
    state,
    data: RolloutBuffer,
    key,
    *,
    graphs,
    hp,
    tx,
    plan: Minibatches,
    ax: Axis,
    loss_agg: str,
    normalizer,
    clip,
    ent_coef,
    kl_coef,
    seq_priority,
):
    """K policy epochs; returns `(params, opt_state, skipped, last-epoch diagnostics)`."""

    def policy_loss(params, d: RolloutBuffer, w_b, mb_tokens):
        full = policy_params(graphs, params, state.base)
        logp, ent_tok = forward_logp(
            graphs.policy,
            full,
            d.prompt,
            d.prompt_mask,
            d.tokens,
            d.mask_b,
            hp.temperature,
            hp.logit_chunk,
        )
        tm = d.mask_b.astype(jnp.float32)
        w = w_b[:, None] * jnp.ones_like(tm)
        pg, aux = rl.ppo_policy_loss(
            logp,
            d.old_logp,
            d.adv,
            d.pg_mask,
            clip.eps_low,
            clip.eps_high,
            normalizer,
            loss_agg,
            weights_bt=w,
            axis_name=ax.name,
        )
        kl_tok = rl.kl_estimate(logp, d.ref_logp, hp.kl_estimator)
        kl = rl.aggregate(kl_tok * w, tm, "token_mean", mb_tokens)
        ent = rl.aggregate(ent_tok * w, tm, "token_mean", mb_tokens)
        loss = pg + kl_coef * kl - ent_coef * ent
        return loss, dict(
            pg_loss=pg, clip_frac=aux["clip_frac"], approx_kl=aux["approx_kl"], ref_kl=kl
        )

    def grads_of(params, idx, w_b, mb_tokens):
        d = plan.take(data, idx)
        return jax.value_and_grad(policy_loss, has_aux=True)(params, d, w_b, mb_tokens)

    def mb_step(carry, xs):
        params, opt, skipped = carry
        idx, w_b = xs
        mb_tokens = token_count(data.mask_b, idx, ax)  # tokens of the global minibatch
        (loss, aux), grads = accumulate(
            grads_of, params, idx, w_b, mb_tokens, hp.grad_accum, data.mask_b, ax
        )
        # Shard contributions → global minibatch loss and gradient.
        loss, grads, aux["pg_loss"] = ax.psum((loss, grads, aux["pg_loss"]))
        # Continual learning: the EWC penalty at the current params (0 without EWC).
        loss, grads, aux = add_ewc_penalty(state.ewc, params, loss, grads, aux)
        params, opt, bad = guarded_update(tx, grads, opt, params, loss)
        aux = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads))
        return (params, opt, skipped + bad), aux

    def epoch(carry, k):
        if hp.prioritized:
            idx, w = rl.prioritized_minibatches(
                k, seq_priority, plan.m, plan.mb, alpha=hp.priority_alpha
            )
        else:
            idx = plan.shuffled(k)
            w = jnp.ones(idx.shape, jnp.float32)
        return jax.lax.scan(mb_step, carry, (ax.local_cols(idx), ax.local_cols(w)))

    (params, opt, skipped), aux = jax.lax.scan(
        epoch, (state.policy, state.policy_opt, state.skipped), jax.random.split(key, hp.epochs)
    )
    return params, opt, skipped, jax.tree.map(lambda x: x[-1].mean(), aux)


def critic_epochs(
    state,
    data: RolloutBuffer,
    key,
    skipped,
    *,
    graphs,
    hp,
    tx,
    plan: Minibatches,
    ax: Axis,
    normalizer,
):
    """The critic's epochs on its own optimizer; returns `(params, opt, skipped, loss)`."""

    def grads_of(vp, idx, _w, _tokens):
        d = plan.take(data, idx)

        def loss_fn(p):
            v = values(graphs, p, d.prompt, d.prompt_mask, d.tokens, d.mask_b)
            loss, _ = rl.value_loss(
                v, d.old_v, d.ret, d.mask_b.astype(jnp.float32), hp.vf_clip, normalizer
            )
            return loss, {}

        return jax.value_and_grad(loss_fn, has_aux=True)(vp)

    def mb_step(carry, idx):
        vp, vo, skipped = carry
        (loss, _), grads = accumulate(grads_of, vp, idx, None, None, hp.grad_accum, data.mask_b, ax)
        loss, grads = ax.psum((loss, grads))
        vp, vo, bad = guarded_update(tx, grads, vo, vp, loss)
        return (vp, vo, skipped + bad), loss

    def epoch(carry, k):
        return jax.lax.scan(mb_step, carry, ax.local_cols(plan.shuffled(k)))

    (vp, vo, skipped), losses = jax.lax.scan(
        epoch, (state.value, state.value_opt, skipped), jax.random.split(key, hp.value_epochs)
    )
    return vp, vo, skipped, losses[-1].mean()
