"""One RL iteration, as one compiled program or as two.

rollout (KV-cache sampler) → rewards on the host (the verifier pool) → advantages (GAE with the critic, or group-relative for GRPO) → K epochs of policy
minibatch updates (`lax.scan`) and the critic's own epochs at its own learning rate
→ adaptive clip and entropy controllers. The state is donated; metrics stay on device.

`rollout` is the first phase, `learn` the rest (reference pass onwards). `rl_iteration`
joins them in one program, calling the host reward through `io_callback`
(`reward.host_call="io_callback"`); `train.split_rl` runs them as two programs with the
host reward in Python between them (`"split"`, the default), which JAX's persistent
compilation cache can keep (it never writes a program with host callbacks). Same
functions, same inputs: the same numbers (tests/train/split_rl_test.py).

Data parallelism with `pmap` (`axis_name`, see `r1jax.train.pmap`): the same function
runs on every device with the state replicated and the prompts split into contiguous
blocks (device d holds global rows `[d·n_loc, (d+1)·n_loc)` of the repeated batch, whole
groups), and it computes what the `jax.jit` path computes on the whole batch:

* sampling keys are per global row (`sampling.generate(row_offset=...)`), so each device
  samples exactly its rows of the one-device rollout;
* rewards: one host call on the global batch (`train.reward_callback`, which also has
  the per-shard mode of multi-process jit runs);
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

With `axis_name=None` nothing of this is added: the jit path is unchanged. The
reductions are `train.reductions.Axis`; the learner's epochs `train.learner`; which
algorithm (advantages, critic or not) `rl.ALGORITHMS[hp.algo]`.

Shared prompts: the G samples of a prompt are consecutive rows, and every pass that reads
the prompt runs it once per group (`sampling.grouped_hidden`): the rollout's prefill,
the reference log-probs, the critic's values, and the policy and critic updates, whose
minibatches are drawn as whole groups (`rl.shuffled_minibatches(group_size=G)`; rows one
by one when prioritised, or when a device's microbatch would split a group). The
prompt (P = 160 tokens on the default) is longer than the completion, so this halves
the default's RL iteration (BENCHMARKS.md, "Shared-prompt learner").
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from r1jax import rl
from r1jax.rl.hyper import RLHyper
from r1jax.sampling import generate
from r1jax.train.learner import (
    Minibatches,
    RolloutBuffer,
    chunked_rows,
    critic_epochs,
    forward_logp,
    policy_epochs,
)
from r1jax.train.learner import values as critic_values
from r1jax.train.reductions import Axis, global_mean
from r1jax.train.reward_callback import host_rewards
from r1jax.train.state import Graphs, TrainState, policy_params

__all__ = ["PromptBatch", "RLHyper", "Rollout", "learn", "rl_iteration", "rollout"]


@flax.struct.dataclass
class PromptBatch:
    prompt: jax.Array  # [B, P] int32, left-padded prompts
    prompt_mask: jax.Array  # [B, P] bool
    ref: jax.Array  # [B, 2] int32, ids of the references kept on the host
    # (`HostReward.register`): the reward callback looks each row's problem up by them


def _ref_logp(graphs, state, hp, plan: Minibatches, ax: Axis, batch, rep, tokens, mask_b):
    """log π_ref of the completions `[N, T]` (this device's rows).

    `hp.logp_chunk` = 0: in the learner's shape, passes of one microbatch each (its rows
    per device, the prompt once per group when the learner's is, `plan.group_forward`),
    the same code on the same shapes as the learner's forward: a row's numbers do not
    depend on which rows share its pass, so at iteration 0 (reference = policy) the
    learner's log-probs equal these bit for bit and KL(π‖π_ref) is exactly 0 (test).
    `hp.logp_chunk` > 0: that many rows (whole groups) per pass instead; then the two
    passes may differ by float rounding."""
    g = hp.group_size

    def rows(x):
        prompt, prompt_mask, toks, m = x

        def logp_of(trained):  # the params the learner differentiates (LoRA: the adapters)
            params = policy_params(graphs, trained, state.base)
            logp, _ = forward_logp(
                graphs.policy, params, prompt, prompt_mask, toks, m, hp.temperature, hp.logit_chunk
            )
            return logp

        # The forward of `jax.vjp` (its pullback unused, so XLA drops the residuals), as
        # the learner's pass under `grad`, with respect to the same params: a kernel with a
        # training variant of its own (cuDNN's flash attention keeps softmax statistics for
        # its backward pass) runs that variant wherever the learner's pass does (JAX runs a
        # custom VJP's forward rule where tangents are not zero), not the inference one.
        return jax.vjp(logp_of, state.ref)[0]

    b_loc = batch.prompt.shape[0]
    if hp.logp_chunk:
        grouped, per = True, max(hp.logp_chunk // g, 1)  # prompts per pass
        if b_loc % per:
            raise ValueError(
                f"rl.logp_chunk={hp.logp_chunk} rows = {per} prompt group(s) of {g} per pass "
                f"must divide the {b_loc} prompts of a rollout (per device): choose a multiple "
                f"of group_size that divides prompts_per_iter * group_size"
            )
    else:
        micro = plan.mb // (ax.size * hp.grad_accum)  # the learner's rows per pass
        grouped = plan.group_forward
        per = micro // g if grouped else micro
    if not grouped:  # one prompt per row, as the learner's per-row forward
        return chunked_rows(rows, (rep.prompt, rep.prompt_mask, tokens, mask_b), per)
    by_group = lambda x: x.reshape(-1, g, *x.shape[1:])
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return chunked_rows(
        lambda x: by_group(rows((x[0], x[1], flat(x[2]), flat(x[3])))),
        (batch.prompt, batch.prompt_mask, by_group(tokens), by_group(mask_b)),
        per,
    ).reshape(tokens.shape)


@flax.struct.dataclass
class Rollout:
    """The rollout phase's output, rows in global batch order (this device's rows under
    `pmap`): what the host reward reads (`tokens`, `ref`, `step`) and what the learner
    phase takes from the sampler."""

    tokens: jax.Array  # [N, T] int32 completions (padded after EOS)
    mask: jax.Array  # [N, T] bool, completion tokens up to and including EOS
    logp: jax.Array  # [N, T] float32 log π_old of the sampled tokens (the sampler's)
    entropy: jax.Array  # [N, T] float32 the sampler's per-token entropy
    ref: jax.Array  # [N, 2] int32 reference ids of each row's problem (the host reward's)
    step: jax.Array  # [] int32 the iteration's state.step (the host reward keys its draws)


def _keys(state):
    """(k_sample, k_policy_mb, k_value_mb) of this iteration: the same in both phases."""
    return jax.random.split(jax.random.fold_in(state.rng, state.step), 3)


def _repeat(batch: PromptBatch, g: int, data_sharding) -> PromptBatch:
    """The prompt batch with each prompt repeated for its G samples (rows b·G … b·G+G−1)."""
    rep = PromptBatch(
        *(jnp.repeat(x, g, axis=0) for x in (batch.prompt, batch.prompt_mask, batch.ref))
    )
    if data_sharding is not None:
        rep = jax.lax.with_sharding_constraint(rep, data_sharding)
    return rep


def rollout(
    state: TrainState,
    batch: PromptBatch,
    *,
    graphs: Graphs,
    hp: RLHyper,
    data_sharding=None,
    sampler_shardings=None,
    axis_name: str | None = None,
) -> Rollout:
    """Phase 1 of the RL iteration: G samples per prompt with the KV cache (the state is
    read, not changed). Keyword arguments as `rl_iteration`'s."""
    ax = Axis(axis_name)
    g = hp.group_size
    k_sample, _, _ = _keys(state)
    rep = _repeat(batch, g, data_sharding)
    n_local = rep.prompt.shape[0]
    sampler_params = policy_params(graphs, state.policy, state.base)
    if sampler_shardings is not None:
        sampler_params = jax.lax.with_sharding_constraint(sampler_params, sampler_shardings)
    roll = generate(
        nnx.merge(graphs.policy, sampler_params),
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
    # The sampler's log-probs serve as π_old: same code and dtype as the learner (they agree
    # to ~1e-6, tested), which saves a full forward pass per iteration.
    return Rollout(roll.tokens_bt, roll.mask_bt, roll.logp_bt, roll.entropy_bt, rep.ref, state.step)


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
    """Runs one RL iteration as one program; returns (new_state, metrics dict of device
    scalars): `rollout`, the host reward through `io_callback`
    (`train.reward_callback`), then `learn`. `reward.host_call="split"` runs the same two
    phases as two programs with the host reward between them (`train.split_rl`).

    `axis_name`: inside `pmap` over that axis, `batch` is this device's block of prompts
    and the state is replicated; the result equals the jit path on the global batch
    (module docstring).
    `sampler_shardings`: the policy's parameter layout for the rollout (the sampler rules,
    `parallel.sampler_rules`): on an FSDP mesh the weights are gathered once for the
    whole rollout instead of once per decode step; None keeps the learner layout.
    `reward_mesh`: verify each batch shard on the host that holds it (multi-process
    runs); None makes one host call on the global batch.
    """
    ax = Axis(axis_name)
    roll = rollout(
        state,
        batch,
        graphs=graphs,
        hp=hp,
        data_sharding=data_sharding,
        sampler_shardings=sampler_shardings,
        axis_name=axis_name,
    )
    # 2. Rewards on the host (the task's verifier, through io_callback).
    # scores: SCORE_FIELDS per completion; token_rewards: where PPO's rewards land (the
    # outcome on the last token, optional dense step rewards; rewards.bridge).
    # Under pmap `scores` are global (all rows, for the metrics), `token_rewards` local.
    scores, token_rewards = host_rewards(
        reward_fn, num_score_fields, roll.tokens, roll.ref, state.step, ax, reward_mesh
    )
    return learn(
        state,
        batch,
        roll,
        scores,
        token_rewards,
        graphs=graphs,
        hp=hp,
        policy_tx=policy_tx,
        value_tx=value_tx,
        data_sharding=data_sharding,
        axis_name=axis_name,
    )


def learn(
    state: TrainState,
    batch: PromptBatch,
    roll: Rollout,
    scores: jax.Array,
    token_rewards: jax.Array,
    *,
    graphs: Graphs,
    hp: RLHyper,
    policy_tx,
    value_tx,
    data_sharding=None,
    axis_name: str | None = None,
):
    """Phases 3-6 of the RL iteration, from the rollout and its host rewards (`scores`
    [N_global, F], `token_rewards` [N, T] this device's rows): returns (new_state,
    metrics)."""
    ax = Axis(axis_name)
    algo = rl.get_algorithm(hp.algo)
    g = hp.group_size
    _, k_policy_mb, k_value_mb = _keys(state)
    rep = _repeat(batch, g, data_sharding)
    n_local = rep.prompt.shape[0]
    n = n_local * ax.size  # global number of completions
    tokens, mask_b, old_logp, entropy = roll.tokens, roll.mask, roll.logp, roll.entropy
    mask = mask_b.astype(jnp.float32)
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
        # 3. Reference log-probs, critic values, advantages (the algorithm's).
        plan = Minibatches.plan(n, hp, ax)
        ref_logp = _ref_logp(graphs, state, hp, plan, ax, batch, rep, tokens, mask_b)
        n_tokens = jnp.maximum(ax.psum(mask.sum()), 1.0)
        values = None
        if algo.critic:
            values = critic_values(
                graphs, state.value, batch.prompt, batch.prompt_mask, tokens, mask_b
            )
        adv, returns = algo.advantages(
            hp,
            token_rewards=token_rewards,
            values=values,
            mask=mask,
            reward_n=reward_n,
            axis_name=axis_name,
        )
        pg_mask = mask
        if hp.top_entropy_q < 1.0:
            pg_mask = rl.high_entropy_mask(
                entropy, mask_b, hp.top_entropy_q, axis_name=axis_name
            ).astype(jnp.float32)

        # 4. Policy epochs × minibatches (global sizes; a device trains on mb / D rows of
        # each) over the global rollout buffer (all-gathered under pmap).
        loss_agg = algo.aggregation(hp)
        if loss_agg == "token_mean":
            normalizer = ax.psum(pg_mask.sum()) * plan.mb / n  # expected tokens per minibatch
        elif loss_agg == "seq_mean_token_sum_norm":
            normalizer = plan.mb * hp.max_new_tokens
        else:
            normalizer = plan.mb
        data = ax.gather(
            RolloutBuffer(
                tokens,
                mask_b,
                old_logp,
                ref_logp,
                adv,
                pg_mask,
                rep.prompt,
                rep.prompt_mask,
                old_v=values,
                ret=returns if algo.critic else None,
            )
        )
        ent_coef = rl.entropy_coef(state.ent) if hp.entropy_bonus else jnp.zeros((), jnp.float32)
        # β: the config's, or the adaptive controller's (its state starts at rl.kl_coef)
        kl_coef = state.kl.coef if hp.adaptive_kl else jnp.asarray(hp.kl_coef, jnp.float32)
        new_policy, new_popt, skipped, last = policy_epochs(
            state,
            data,
            k_policy_mb,
            graphs=graphs,
            hp=hp,
            tx=policy_tx,
            plan=plan,
            ax=ax,
            loss_agg=loss_agg,
            normalizer=normalizer,
            clip=state.clip,
            ent_coef=ent_coef,
            kl_coef=kl_coef,
            seq_priority=ax.gather(jnp.abs(adv).sum(1) / jnp.maximum(lengths, 1.0)),
        )

        # 5. Critic epochs on its own optimizer and learning rate (the two time scales).
        new_value, new_vopt, vf_loss = state.value, state.value_opt, jnp.zeros(())
        if algo.critic:
            new_value, new_vopt, skipped, vf_loss = critic_epochs(
                state,
                data,
                k_value_mb,
                skipped,
                graphs=graphs,
                hp=hp,
                tx=value_tx,
                plan=plan,
                ax=ax,
                normalizer=ax.psum(mask.sum()) * plan.mb / n,
            )

        # 6. Controllers: clip range, entropy bonus, KL coefficient.
        mean_entropy = ax.psum((entropy * mask).sum()) / n_tokens
        kl = ax.psum((rl.kl_estimate(old_logp, ref_logp, hp.kl_estimator) * mask).sum()) / n_tokens
        new_clip, new_ent, new_kl = state.clip, state.ent, state.kl
        if hp.adaptive_clip:
            signal = last["approx_kl"] if hp.clip_signal == "kl" else last["clip_frac"]
            new_clip = rl.update_clip(
                state.clip,
                signal,
                target=hp.clip_target,
                rate=hp.clip_rate,
                eps_min=hp.eps_min,
                eps_max=hp.eps_max,
            )
        if hp.adaptive_entropy:
            new_ent = rl.update_entropy_coef(
                state.ent, mean_entropy, target=hp.entropy_target, lr=hp.entropy_lr
            )
        if hp.adaptive_kl:
            new_kl = rl.update_kl_coef(
                state.kl, kl, target=hp.kl_target, horizon=hp.kl_horizon, n_steps=1
            )
        metrics = dict(
            loss=last["loss"],
            pg_loss=last["pg_loss"],
            vf_loss=vf_loss,
            clip_frac=last["clip_frac"],
            approx_kl=last["approx_kl"],
            grad_norm=last["grad_norm"],
            clip_eps=state.clip.eps_low,
            clip_eps_high=state.clip.eps_high,
            entropy=mean_entropy,
            entropy_coef=ent_coef,
            kl=kl,
            ref_kl=last["ref_kl"],
            kl_coef=kl_coef,
            completion_len=global_mean(lengths, ax),
            skipped_updates=skipped,
            score_fields=scores.mean(0),
        )
        if "ewc_penalty" in last:  # continual learning: the EWC term of the policy loss
            metrics["ewc_penalty"] = last["ewc_penalty"]
        new_state = state.replace(
            step=state.step + 1,
            policy=new_policy,
            policy_opt=new_popt,
            value=new_value,
            value_opt=new_vopt,
            clip=new_clip,
            ent=new_ent,
            kl=new_kl,
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
        truncated=global_mean(mask[:, -1] > 0, ax),
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
