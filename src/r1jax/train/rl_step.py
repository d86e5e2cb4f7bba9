"""One RL iteration as one compiled program.

rollout (KV-cache sampler) → rewards on the host (`io_callback` into the verifier pool)
→ advantages (GAE with the critic, or group-relative for GRPO) → K epochs of policy
minibatch updates (`lax.scan`) and the critic's own epochs at its own learning rate
→ adaptive clip and entropy controllers. The state is donated; metrics stay on device.

Data parallelism with `pmap` (`axis_name`, see `r1jax.train.pmap`): the same function
runs on every device with the state replicated and the prompts split into contiguous
blocks (device d holds global rows `[d·n_loc, (d+1)·n_loc)` of the repeated batch, whole
groups), and it computes what the `jax.jit` path computes on the whole batch:

* sampling keys are per global row (`sampling.generate(row_offset=...)`), so each device
  samples exactly its rows of the one-device rollout;
* rewards: completions and reference ids are all-gathered and *one* `io_callback`
  (on the device with axis index 0, under `lax.cond`) scores the global batch in global
  order, as the jit path does; its output is `psum`'ed (zeros elsewhere) and each
  device keeps its rows. The host reward keeps one call per iteration, its
  index-derived noise and its novelty-tree order;
* every reduction over the batch is global: token counts and loss normalisers, the
  `whiten` statistics, the forking-token threshold, metrics (`psum`); group-relative
  advantages are local (a device holds whole groups);
* minibatches: the rollout buffer (completions, masks, log-probs, advantages, prompts;
  no vocab-sized arrays) is all-gathered once per iteration and every device draws the
  same global index matrix `[M, mb]` (same key, same code as the jit path: shuffled or
  prioritised). Device d trains on columns `[d·mb/D, (d+1)·mb/D)` of global minibatch i,
  so the devices together process exactly global minibatch i;
* losses are each device's contribution (its tokens over the global normaliser), so the
  `psum` of losses and gradients is the global-minibatch loss and gradient (a `pmean`
  would divide it by D); every device then applies the same optax update.

With `axis_name=None` nothing of this is added: the jit path is unchanged.

Shared prompts: the G samples of a prompt are consecutive rows, and every pass that reads
the prompt runs it once per group (`sampling.grouped_hidden`): the rollout's prefill,
the reference log-probs, the critic's values, and the policy and critic updates, whose
minibatches are drawn as whole groups (`rl.shuffled_minibatches(group_size=G)`; rows one
by one when prioritised, or when a device's microbatch would split a group). The
prompt (P = 160 tokens on the default) is longer than the completion, so this halves
the default's RL iteration (BENCHMARKS.md, "Shared-prompt learner").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.experimental import io_callback

from r1jax import rl
from r1jax.models.transformer import causal_mask, positions_from_mask
from r1jax.sampling import (
    generate,
    grouped_hidden,
    grouped_sequence_logits,
    sequence_logits,
    token_logp,
)
from r1jax.train.state import Graphs, TrainState, guarded_update, policy_params


@flax.struct.dataclass
class PromptBatch:
    prompt: jax.Array  # [B, P] int32, left-padded prompts
    prompt_mask: jax.Array  # [B, P] bool
    ref: jax.Array  # [B, 2] int32, ids of the references kept on the host
    # (`HostReward.register`): the reward callback looks each row's problem up by them


@dataclasses.dataclass(frozen=True)
class RLHyper:
    """Static RL hyper-parameters (built from the config; bound with functools.partial)."""

    algo: str  # "ppo" (GAE + critic) or "grpo" (group-relative, no critic)
    group_size: int  # G, samples per prompt
    max_new_tokens: int  # T
    temperature: float  # sampling temperature τ (learner uses the same τ)
    epochs: int  # K, policy epochs per iteration
    num_minibatches: int  # M, minibatches per epoch
    value_epochs: int  # critic epochs per iteration (two time scales)
    gamma: float  # γ
    lam: float  # λ (GAE)
    vf_clip: float  # value clip range
    kl_coef: float  # β, weight of the KL(π‖π_ref) loss term
    kl_estimator: str  # "k1" | "k2" | "k3"
    loss_agg: str  # token aggregation mode, see rl.aggregate
    grpo_scale_by_std: bool  # False = Dr. GRPO
    adaptive_clip: bool  # adapt ε toward clip_target
    clip_signal: str  # "kl" or "clip_frac": the measured quantity
    clip_target: float  # target of that quantity
    clip_rate: float  # multiplicative step of ε
    eps_min: float  # clamp of ε
    eps_max: float
    adaptive_entropy: bool  # adapt the entropy coefficient toward entropy_target
    entropy_target: float  # target mean token entropy (nats)
    entropy_lr: float  # step size on log β_H
    top_entropy_q: float  # policy gradient only on the top-q highest-entropy tokens
    prioritized: bool  # sample minibatches by |advantage| with IS weights
    priority_alpha: float  # α of prioritized sampling
    eos_id: int
    pad_id: int
    grad_accum: int = 1  # microbatches per minibatch: gradients summed, one optimizer update
    entropy_bonus: bool = True  # False: rl.entropy_coef = 0, no entropy term at all
    length_buckets: int = 1  # completion-axis buckets of the learner (`_bucket_sizes`): it
    # runs on the smallest that holds the longest completion; 1 = always all T positions
    logp_chunk: int = 0  # rows per pass of the reference log-probs (0 = all rows at once),
    # rounded down to whole groups (at least one): bounds the [rows, T, V] logits of a
    # large vocabulary


def _chunked_rows(fn, xs, chunk: int):
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


def _forward(graphdef, params, batch, tokens, mask, temperature):
    """Tempered logits `[N, T, V]` predicting `tokens`. `batch.prompt` holds either one
    prompt per row (N rows) or one per group of N / U consecutive rows (U < N rows: the
    shared prompt runs once per group, `sampling.grouped_hidden`)."""
    model = nnx.merge(graphdef, params)
    if batch.prompt.shape[0] == tokens.shape[0]:
        logits = sequence_logits(model, batch.prompt, batch.prompt_mask, tokens, mask)
    else:
        logits = grouped_sequence_logits(model, batch.prompt, batch.prompt_mask, tokens, mask)
    return logits / temperature


def _repeat(x, g):
    return jnp.repeat(x, g, axis=0)


class _Axis:
    """Collectives over the data-parallel axis; identities when `name` is None (jit)."""

    def __init__(self, name: str | None):
        self.name = name
        self.size = 1 if name is None else jax.lax.axis_size(name)

    def psum(self, x):
        return x if self.name is None else jax.lax.psum(x, self.name)

    def gather(self, x):
        """All shards' rows concatenated along axis 0 (global batch order)."""
        return x if self.name is None else jax.lax.all_gather(x, self.name, tiled=True)

    def index(self):
        return 0 if self.name is None else jax.lax.axis_index(self.name)

    def pmax(self, x):
        return x if self.name is None else jax.lax.pmax(x, self.name)

    def local_rows(self, x, n_local):
        """This device's rows of a global array (the inverse of `gather`)."""
        if self.name is None:
            return x
        return jax.lax.dynamic_slice_in_dim(x, self.index() * n_local, n_local, axis=0)

    def local_cols(self, x):
        """This device's share of axis 1 of a global `[M, mb]` index/weight matrix."""
        if self.name is None:
            return x
        per = x.shape[1] // self.size
        return jax.lax.dynamic_slice_in_dim(x, self.index() * per, per, axis=1)


def _per_shard_rewards(reward_fn, num_fields, tokens, ref, step, mesh):
    """Host rewards with each batch shard verified where it lives (multi-process jit).

    A `shard_map` over the batch axes (`data` × `fsdp`) hands each device its rows and
    their global offset; the devices of one `tensor` group hold the same rows, so only
    the first of them calls the host (the others add zeros). On several processes each
    host therefore verifies only the samples it holds, and the scores come back in their
    shards. The result equals the single global call (`HostReward` keys every draw by the
    global row index).
    """
    from jax.sharding import PartitionSpec as P

    from r1jax.parallel import BATCH_AXES

    axes = tuple(a for a in BATCH_AXES if a in mesh.shape)
    shards = 1
    for a in axes:
        shards *= mesh.shape[a]
    n_local = tokens.shape[0] // shards
    shapes = (
        jax.ShapeDtypeStruct((n_local, num_fields), jnp.float32),
        jax.ShapeDtypeStruct((n_local, tokens.shape[1]), jnp.float32),
    )

    def local(tokens, ref, step):
        offset = jax.lax.axis_index(axes) * n_local if axes else 0

        def call(_):
            return io_callback(reward_fn, shapes, tokens, ref, step, offset)

        def zeros(_):
            return tuple(jnp.zeros(x.shape, x.dtype) for x in shapes)

        if "tensor" not in mesh.shape or mesh.shape["tensor"] == 1:
            return call(None)
        out = jax.lax.cond(jax.lax.axis_index("tensor") == 0, call, zeros, None)
        return jax.lax.psum(out, "tensor")

    spec = P(axes or None)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(spec, spec, P()),
        out_specs=(spec, spec),
        check_vma=False,
    )(tokens, ref, step)


def _host_rewards(reward_fn, num_fields, tokens, ref, step, ax: _Axis, mesh=None):
    """(scores [N_global, F], token_rewards [n_local, T]) from the host reward function.

    `mesh` (jit path only): verify per shard (`_per_shard_rewards`) instead of one call.
    """
    if mesh is not None and ax.name is None:
        return _per_shard_rewards(reward_fn, num_fields, tokens, ref, step, mesh)
    if ax.name is None:
        return io_callback(
            reward_fn,
            (
                jax.ShapeDtypeStruct((tokens.shape[0], num_fields), jnp.float32),
                jax.ShapeDtypeStruct(tokens.shape, jnp.float32),
            ),
            tokens,
            ref,
            step,
            ordered=False,
        )
    n_local = tokens.shape[0]
    g_tokens, g_ref = ax.gather(tokens), ax.gather(ref)
    shapes = (
        jax.ShapeDtypeStruct((g_tokens.shape[0], num_fields), jnp.float32),
        jax.ShapeDtypeStruct(g_tokens.shape, jnp.float32),
    )

    def call(_):
        return io_callback(reward_fn, shapes, g_tokens, g_ref, step, ordered=False)

    def zeros(_):
        return tuple(jnp.zeros(x.shape, x.dtype) for x in shapes)

    out = jax.lax.cond(ax.index() == 0, call, zeros, None)
    scores, token_rewards = ax.psum(out)  # x + 0 is exact: device 0's values everywhere
    return scores, ax.local_rows(token_rewards, n_local)


def rl_iteration(
    state: TrainState,
    batch: PromptBatch,
    *,
    graphs: Graphs,
    hp: RLHyper,
    policy_tx,
    value_tx,
    reward_fn: Callable,
    num_score_fields: int,
    data_sharding=None,
    sampler_shardings=None,
    reward_mesh=None,
    axis_name: str | None = None,
):
    """Runs one RL iteration; returns (new_state, metrics dict of device scalars).

    `axis_name`: inside `pmap` over that axis, `batch` is this device's block of prompts
    and the state is replicated; the result equals the jit path on the global batch
    (module docstring).
    `sampler_shardings`: the policy's parameter layout for the rollout (the sampler rules,
    `parallel.sampler_rules`): on an FSDP mesh the weights are gathered once for the
    whole rollout instead of once per decode step; None keeps the learner layout.
    `reward_mesh`: verify each batch shard on the host that holds it (multi-process
    runs); None makes one host call on the global batch.
    """
    ax = _Axis(axis_name)
    g = hp.group_size
    key = jax.random.fold_in(state.rng, state.step)
    k_sample, k_policy_mb, k_value_mb = jax.random.split(key, 3)
    rep = PromptBatch(*(_repeat(x, g) for x in (batch.prompt, batch.prompt_mask, batch.ref)))
    if data_sharding is not None:
        rep = jax.lax.with_sharding_constraint(rep, data_sharding)
    n_local = rep.prompt.shape[0]
    n = n_local * ax.size  # global number of completions

    # 1. Rollout with the KV cache.
    sampler_params = policy_params(graphs, state.policy, state.base)
    if sampler_shardings is not None:
        sampler_params = jax.lax.with_sharding_constraint(sampler_params, sampler_shardings)
    policy = nnx.merge(graphs.policy, sampler_params)
    roll = generate(
        policy,
        batch.prompt,
        batch.prompt_mask,
        k_sample,
        max_new_tokens=hp.max_new_tokens,
        temperature=hp.temperature,
        eos_id=hp.eos_id,
        pad_id=hp.pad_id,
        row_offset=ax.index() * n_local,
        num_samples=g,  # rows [b·G, (b+1)·G) sample prompt b (= rep), its prefill shared
    )
    tokens, mask_b = roll.tokens_bt, roll.mask_bt
    mask = mask_b.astype(jnp.float32)
    # The sampler's log-probs serve as π_old: same code and dtype as the learner (they agree
    # to ~1e-6, tested), which saves a full forward pass per iteration.
    old_logp, entropy = roll.logp_bt, roll.entropy_bt

    # 2. Rewards on the host.
    # scores: SCORE_FIELDS per completion; token_rewards: where PPO's rewards land (the
    # outcome on the last token, optional dense step rewards; rewards.bridge).
    # Under pmap `scores` are global (all rows, for the metrics), `token_rewards` local.
    scores, token_rewards = _host_rewards(
        reward_fn, num_score_fields, tokens, rep.ref, state.step, ax, reward_mesh
    )
    reward_n = ax.local_rows(scores[:, 0], n_local)

    # 3-6 run on the completion axis cut to the smallest length bucket that holds the
    # batch's longest completion (`_bucket_sizes`): positions past it are padding in every
    # row, and causal attention never lets a kept position read them, so the result is
    # the uncut computation's (to float reassociation). One `lax.switch` branch per
    # bucket: one program, no recompilation whatever the lengths.
    lengths = mask.sum(1)
    sizes = _bucket_sizes(hp.max_new_tokens, hp.length_buckets)

    def learn(tb, tokens, mask_b, old_logp, entropy, token_rewards):
        tokens, mask_b, old_logp, entropy, token_rewards = (
            x[:, :tb] for x in (tokens, mask_b, old_logp, entropy, token_rewards)
        )
        mask = mask_b.astype(jnp.float32)
        # 3. Old/ref log-probs, entropy, values; advantages.
        ref_params = policy_params(graphs, state.ref, state.base)

        def ref_rows(x):
            prompt, prompt_mask, toks, m = x
            lg = _forward(
                graphs.policy,
                ref_params,
                PromptBatch(prompt, prompt_mask, None),
                toks,
                m,
                hp.temperature,
            )
            return token_logp(lg, toks)

        # The rollout's rows are whole groups: each prompt's forward runs once for its group
        # (`_forward`); chunks of the reference pass are whole groups too.
        b_loc = batch.prompt.shape[0]
        chunk = max(hp.logp_chunk // g, 1) if hp.logp_chunk else 0  # prompts per pass
        if chunk and b_loc % chunk:
            raise ValueError(
                f"rl.logp_chunk={hp.logp_chunk} rows = {chunk} prompt group(s) of {g} per pass "
                f"must divide the {b_loc} prompts of a rollout (per device): choose a multiple "
                f"of group_size that divides prompts_per_iter * group_size"
            )
        by_group = lambda x: x.reshape(-1, g, *x.shape[1:])
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        ref_logp = _chunked_rows(
            lambda x: by_group(ref_rows((x[0], x[1], flat(x[2]), flat(x[3])))),
            (batch.prompt, batch.prompt_mask, by_group(tokens), by_group(mask_b)),
            chunk,
        ).reshape(tokens.shape)
        n_tokens = jnp.maximum(ax.psum(mask.sum()), 1.0)
        if hp.algo == "ppo":
            values = _values(graphs, state.value, batch, tokens, mask_b)
            rewards_bt = token_rewards * mask
            adv, returns = rl.gae(rewards_bt, values, mask, hp.gamma, hp.lam)
            adv = rl.whiten(adv, mask, axis_name=axis_name)
        else:
            values = jnp.zeros_like(mask)
            returns = values
            adv_n = rl.group_relative_advantages(reward_n, g, scale_by_std=hp.grpo_scale_by_std)
            adv = adv_n[:, None] * mask
        pg_mask = mask
        if hp.top_entropy_q < 1.0:
            pg_mask = rl.high_entropy_mask(
                entropy, mask_b, hp.top_entropy_q, axis_name=axis_name
            ).astype(jnp.float32)

        # 4. Policy epochs × minibatches (global sizes; a device trains on mb / D rows of each).
        m = hp.num_minibatches
        mb = n // m
        if mb % (ax.size * hp.grad_accum):
            raise ValueError(
                f"minibatch size {mb} (= {n} completions / {m} minibatches) must be divisible "
                f"by the {ax.size} data-parallel devices × grad_accum={hp.grad_accum}"
            )
        # Minibatches of whole groups (a group's rows consecutive) unless prioritised (rows
        # drawn one by one); when a device's (micro)batch is whole groups too, the learner
        # runs each group's prompt once (`_forward`) instead of once per sample.
        group_mb = g > 1 and mb % g == 0 and not hp.prioritized
        group_fwd = group_mb and (mb // (ax.size * hp.grad_accum)) % g == 0
        mb_groups = g if group_mb else 1

        def take(src, idx):
            """Rows `idx` of the buffer `src`; prompts once per group under `group_fwd`."""
            d = {k: v[idx] for k, v in src.items() if k not in ("prompt", "prompt_mask")}
            pidx = idx[::g] if group_fwd else idx
            return dict(d, prompt=src["prompt"][pidx], prompt_mask=src["prompt_mask"][pidx])

        ent_coef = rl.entropy_coef(state.ent) if hp.entropy_bonus else jnp.zeros((), jnp.float32)
        clip = state.clip
        if hp.loss_agg == "token_mean":
            normalizer = ax.psum(pg_mask.sum()) * mb / n  # expected tokens per minibatch, global
        elif hp.loss_agg == "seq_mean_token_sum_norm":
            normalizer = mb * hp.max_new_tokens
        else:
            normalizer = mb
        # The minibatches index the global rollout buffer (all-gathered under pmap).
        data = ax.gather(
            dict(
                tokens=tokens,
                mask_b=mask_b,
                old_logp=old_logp,
                ref_logp=ref_logp,
                adv=adv,
                pg_mask=pg_mask,
                prompt=rep.prompt,
                prompt_mask=rep.prompt_mask,
            )
        )

        def policy_loss(params, d, w_b, mb_tokens):
            ex = PromptBatch(d["prompt"], d["prompt_mask"], None)
            full = policy_params(graphs, params, state.base)
            lg = _forward(graphs.policy, full, ex, d["tokens"], d["mask_b"], hp.temperature)
            logp = token_logp(lg, d["tokens"])
            tm = d["mask_b"].astype(jnp.float32)
            w = w_b[:, None] * jnp.ones_like(tm)
            pg, aux = rl.ppo_policy_loss(
                logp,
                d["old_logp"],
                d["adv"],
                d["pg_mask"],
                clip.eps_low,
                clip.eps_high,
                normalizer,
                hp.loss_agg,
                weights_bt=w,
                axis_name=axis_name,
            )
            kl_tok = rl.kl_estimate(logp, d["ref_logp"], hp.kl_estimator)
            ent_tok = rl.entropy_from_logits(lg)
            kl = rl.aggregate(kl_tok * w, tm, "token_mean", mb_tokens)
            ent = rl.aggregate(ent_tok * w, tm, "token_mean", mb_tokens)
            loss = pg + hp.kl_coef * kl - ent_coef * ent
            return loss, dict(pg_loss=pg, clip_frac=aux["clip_frac"], approx_kl=aux["approx_kl"])

        def policy_grads(params, idx, w_b, mb_tokens):
            d = take(data, idx)
            return jax.value_and_grad(policy_loss, has_aux=True)(params, d, w_b, mb_tokens)

        def policy_mb_step(carry, xs):
            params, opt, skipped = carry
            idx, w_b = xs
            mb_tokens = _tokens(data["mask_b"], idx, ax)  # tokens of the global minibatch
            (loss, aux), grads = _accumulate(
                policy_grads, params, idx, w_b, mb_tokens, hp.grad_accum, data["mask_b"], ax
            )
            # Shard contributions → global minibatch loss and gradient.
            loss, grads, aux["pg_loss"] = ax.psum((loss, grads, aux["pg_loss"]))
            params, opt, bad = guarded_update(policy_tx, grads, opt, params, loss)
            aux = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads))
            return (params, opt, skipped + bad), aux

        seq_priority = ax.gather(jnp.abs(adv).sum(1) / jnp.maximum(lengths, 1.0))

        def policy_epoch(carry, k):
            if hp.prioritized:
                idx, w = rl.prioritized_minibatches(k, seq_priority, m, mb, alpha=hp.priority_alpha)
            else:
                idx = rl.shuffled_minibatches(k, n, m, mb, group_size=mb_groups)
                w = jnp.ones(idx.shape, jnp.float32)
            return jax.lax.scan(policy_mb_step, carry, (ax.local_cols(idx), ax.local_cols(w)))

        (new_policy, new_popt, skipped), paux = jax.lax.scan(
            policy_epoch,
            (state.policy, state.policy_opt, state.skipped),
            jax.random.split(k_policy_mb, hp.epochs),
        )
        last_epoch = jax.tree.map(lambda x: x[-1].mean(), paux)

        # 5. Critic epochs on its own optimizer (PPO only).
        new_value, new_vopt, vf_loss = state.value, state.value_opt, jnp.zeros(())
        if hp.algo == "ppo":
            vdata = dict(
                {k: data[k] for k in ("tokens", "mask_b", "prompt", "prompt_mask")},
                **ax.gather({"old_v": values, "ret": returns}),
            )
            vnorm = ax.psum(mask.sum()) * mb / n

            def value_grads(vp, idx, _w, _tokens):
                d = take(vdata, idx)

                def loss_fn(p):
                    v = _values(
                        graphs,
                        p,
                        PromptBatch(d["prompt"], d["prompt_mask"], None),
                        d["tokens"],
                        d["mask_b"],
                    )
                    loss, _ = rl.value_loss(
                        v, d["old_v"], d["ret"], d["mask_b"].astype(jnp.float32), hp.vf_clip, vnorm
                    )
                    return loss, {}

                return jax.value_and_grad(loss_fn, has_aux=True)(vp)

            def value_mb_step(carry, idx):
                vp, vo, skipped = carry
                (loss, _), grads = _accumulate(
                    value_grads, vp, idx, None, None, hp.grad_accum, vdata["mask_b"], ax
                )
                loss, grads = ax.psum((loss, grads))
                vp, vo, bad = guarded_update(value_tx, grads, vo, vp, loss)
                return (vp, vo, skipped + bad), loss

            def value_epoch(carry, k):
                idx = rl.shuffled_minibatches(k, n, m, mb, group_size=mb_groups)
                return jax.lax.scan(value_mb_step, carry, ax.local_cols(idx))

            (new_value, new_vopt, skipped), vlosses = jax.lax.scan(
                value_epoch,
                (state.value, state.value_opt, skipped),
                jax.random.split(k_value_mb, hp.value_epochs),
            )
            vf_loss = vlosses[-1].mean()

        # 6. Controllers.
        mean_entropy = ax.psum((entropy * mask).sum()) / n_tokens
        new_clip = clip
        if hp.adaptive_clip:
            signal = last_epoch["approx_kl"] if hp.clip_signal == "kl" else last_epoch["clip_frac"]
            new_clip = rl.update_clip(
                clip,
                signal,
                target=hp.clip_target,
                rate=hp.clip_rate,
                eps_min=hp.eps_min,
                eps_max=hp.eps_max,
            )
        new_ent = state.ent
        if hp.adaptive_entropy:
            new_ent = rl.update_entropy_coef(
                state.ent, mean_entropy, target=hp.entropy_target, lr=hp.entropy_lr
            )

        kl_tok = rl.kl_estimate(old_logp, ref_logp, hp.kl_estimator)
        metrics = dict(
            loss=last_epoch["loss"],
            pg_loss=last_epoch["pg_loss"],
            vf_loss=vf_loss,
            clip_frac=last_epoch["clip_frac"],
            approx_kl=last_epoch["approx_kl"],
            grad_norm=last_epoch["grad_norm"],
            clip_eps=clip.eps_low,
            clip_eps_high=clip.eps_high,
            entropy=mean_entropy,
            entropy_coef=ent_coef,
            kl=ax.psum((kl_tok * mask).sum()) / n_tokens,
            completion_len=_global_mean(lengths, ax),
            skipped_updates=skipped,
            score_fields=scores.mean(0),
        )
        new_state = state.replace(
            step=state.step + 1,
            policy=new_policy,
            policy_opt=new_popt,
            value=new_value,
            value_opt=new_vopt,
            clip=new_clip,
            ent=new_ent,
            skipped=skipped,
        )
        return new_state, metrics

    operands = (tokens, mask_b, old_logp, entropy, token_rewards)
    branch = jnp.zeros((), jnp.int32)
    if len(sizes) == 1:
        new_state, metrics = learn(sizes[0], *operands)
    else:
        longest = ax.pmax(jnp.max(lengths))  # the same branch on every device
        branch = jnp.sum(longest > jnp.asarray(sizes[:-1], jnp.float32)).astype(jnp.int32)
        branches = [functools.partial(learn, tb) for tb in sizes]
        new_state, metrics = jax.lax.switch(branch, branches, *operands)
    metrics.update(
        truncated=_global_mean(mask[:, -1] > 0, ax),
        learn_len=jnp.asarray(sizes, jnp.float32)[branch],  # completion positions trained on
    )
    return new_state, metrics


def _bucket_sizes(max_new_tokens: int, buckets: int) -> tuple[int, ...]:
    """Completion lengths the learner is compiled for: `buckets` equal steps up to T
    (T = 96, 3 buckets: 32, 64, 96); the learner runs on the first that holds the batch's
    longest completion."""
    if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
        raise ValueError(f"length_buckets must be a positive integer, got {buckets!r}")
    k = min(buckets, max_new_tokens)
    return tuple(sorted({-(-max_new_tokens * i // k) for i in range(1, k + 1)}))


def _tokens(mask_b, idx, ax: _Axis):
    """Valid tokens of the rows `idx` of `mask_b`, summed over the data-parallel axis."""
    return jnp.maximum(ax.psum(mask_b[idx].astype(jnp.float32).sum()), 1.0)


# Aux values that add up over the rows of a minibatch (contributions to the loss); the
# others are means over a call's tokens and are averaged with token weights.
_ADDITIVE_AUX = ("pg_loss",)


def _accumulate(grad_fn, params, idx, w_b, mb_tokens, steps, mask_b, ax: _Axis):
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
    total = _tokens(mask_b, idx, ax)

    def micro(acc, xs):
        i, w = xs
        (loss, aux), grads = grad_fn(params, i, w, mb_tokens)
        share = _tokens(mask_b, i, ax) / total
        aux = {k: v if k in _ADDITIVE_AUX else v * share for k, v in aux.items()}
        return jax.tree.map(jnp.add, acc, ((loss, aux), grads)), None

    first = jax.eval_shape(grad_fn, params, idx_a[0], None if w_a is None else w_a[0], mb_tokens)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), first)
    out, _ = jax.lax.scan(micro, zeros, (idx_a, w_a))
    return out


def _global_mean(x_n, ax: _Axis):
    """Mean over the rows of all shards (`x_n.mean()` on the jit path)."""
    if ax.name is None:
        return x_n.mean()
    return ax.psum(x_n.astype(jnp.float32).sum()) / (x_n.shape[0] * ax.size)


def _values(graphs, params, batch, tokens, mask_b):
    """Critic values V(s_t) at the positions that predict each completion token: [N, T].

    `batch.prompt`: one prompt per row, or one per group of rows (as `_forward`)."""
    if batch.prompt.shape[0] != tokens.shape[0]:
        critic = nnx.merge(graphs.value, params)
        h = grouped_hidden(critic.model, batch.prompt, batch.prompt_mask, tokens, mask_b)
        return critic.value_head(h.astype(jnp.float32))[..., 0]
    p = batch.prompt.shape[1]
    seq = jnp.concatenate([batch.prompt, tokens], axis=1)
    valid = jnp.concatenate([batch.prompt_mask, mask_b], axis=1)
    v = nnx.merge(graphs.value, params)(seq, positions_from_mask(valid), causal_mask(valid))
    return v[:, p - 1 : -1]
