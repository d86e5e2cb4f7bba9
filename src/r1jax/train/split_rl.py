"""The RL iteration as two compiled programs with the host reward between them.

`reward.host_call="split"` (the default). JAX never writes a program that calls back
into Python (`io_callback`) to its persistent compilation cache (`jax/_src/compiler.py`:
"Not writing persistent cache entry ... because it uses host callbacks"), so the
one-program iteration (`reward.host_call="io_callback"`, `rl_step.rl_iteration`) is
compiled again by every process start: every resume, restart and second run. Here the
same iteration runs as

1. the **rollout** program (`rl_step.rollout`: the state is read, not donated),
2. the **host reward** in Python on the rollout's completions (the same `HostReward`
   call the `io_callback` makes, on the same rows in the same order), and
3. the **learner** program (`rl_step.learn`: reference pass, advantages, epochs,
   controllers; the state is donated),

both pure XLA programs that the persistent cache keeps like the SFT step. The functions
and their inputs are the one-program iteration's, so the numbers are too
(tests/train/split_rl_test.py compares them bit for bit). The host round trip is the one
the callback already made: the learner needs the rewards before it can start.

Layouts (how the host reads the completions and hands the rewards back):

* **jit, global** (one process): one host call on the whole batch;
* **jit, per shard** (`reward_mesh`, several processes): each process scores the row
  blocks it holds, each with its global row offset (the host reward keys its draws by
  global row, so the blocks together compute the global call), and builds the global
  reward arrays from its own shards; whether any process failed is agreed on with a host
  all-gather of one flag, so every process raises together and none waits in the
  learner's collectives;
* **pmap**: the rollout's `[D, n, ...]` blocks in global row order, one host call,
  scores replicated and token rewards split back into blocks.

A host reward that raises raises its `RewardError` here, before the learner runs: the
state, donated only to the learner, is still valid.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax
import numpy as np

from r1jax.errors import RewardError
from r1jax.train.rl_step import Rollout, learn, rollout

__all__ = ["SplitIteration", "jit_split", "pmap_split"]


def _bind(fn, step_kw: dict, **extra):
    """`fn` with the keyword arguments of `step_kw` (an `rl_iteration` partial's) that it
    takes, and `extra`."""
    names = inspect.signature(fn).parameters
    return functools.partial(fn, **{k: v for k, v in step_kw.items() if k in names}, **extra)


def _call_reward(reward_fn, *args):
    """The host reward's `(scores, token_rewards)` as float32 arrays; a `RewardError` is
    taken from the reward's record (`HostReward.raise_if_failed`) so it is not raised a
    second time by a later iteration."""
    try:
        scores, token_rewards = reward_fn(*args)
    except RewardError:
        take = getattr(reward_fn, "raise_if_failed", None)
        if take is not None:
            take()
        raise
    return np.asarray(scores, np.float32), np.asarray(token_rewards, np.float32)


def _check(out, n: int, num_fields: int, t: int):
    scores, token_rewards = out
    want = ((n, num_fields), (n, t))
    if (scores.shape, token_rewards.shape) != want:
        raise RewardError(
            f"host reward returned shapes {scores.shape} and {token_rewards.shape}, "
            f"expected {want[0]} and {want[1]}"
        )
    return scores, token_rewards


class SplitIteration:
    """`rl_fn(state, batch) -> (new_state, metrics)` run as rollout program, host reward,
    learner program (module doc). `rollout_fn` and `learn_fn` are the compiled programs
    (for `lower`, `_cache_size`); `host` maps a rollout to the learner's reward inputs."""

    def __init__(
        self, rollout_fn, learn_fn, host: Callable, arg_shapes: Callable, prep=None, post=None
    ):
        self.rollout_fn, self.learn_fn = rollout_fn, learn_fn
        self._host, self._arg_shapes = host, arg_shapes
        self._prep = prep or (lambda state, batch: (state, batch))
        self._post = post or (lambda metrics: metrics)

    def __call__(self, state, batch):
        state, batch = self._prep(state, batch)
        roll = self.rollout_fn(state, batch)
        scores, token_rewards = self._host(roll)
        state, metrics = self.learn_fn(state, batch, roll, scores, token_rewards)
        return state, self._post(metrics)

    def _cache_size(self) -> int:
        """Compiled variants of the busier program (1 when nothing recompiled)."""
        return max(self.rollout_fn._cache_size(), self.learn_fn._cache_size())

    def programs(self, state, batch) -> list:
        """`[(name, compiled function, argument shapes)]` for an ahead-of-time compile
        (`experiment.compile_report`); `state` and `batch` as the programs take them."""
        roll = jax.eval_shape(self.rollout_fn, state, batch)
        return [
            ("rollout", self.rollout_fn, (state, batch)),
            ("learn", self.learn_fn, (state, batch, roll, *self._arg_shapes(roll))),
        ]


def jit_split(
    step_kw: dict,
    *,
    reward_fn,
    num_fields: int,
    state_sh,
    data_sh,
    repl,
    per_shard: bool,
    under_mesh=lambda fn: fn,
) -> SplitIteration:
    """The jit path's split iteration. `step_kw`: the keyword arguments of
    `rl_step.rl_iteration` (graphs, hyper-parameters, optimizers, `data_sharding`,
    `sampler_shardings`); `per_shard`: each process scores the rows it holds;
    `under_mesh`: wraps each program's function (`parallel.traced_under_mesh`)."""
    roll_sh = Rollout(data_sh, data_sh, data_sh, data_sh, data_sh, repl)
    rollout_fn = jax.jit(
        under_mesh(_bind(rollout, step_kw)),
        in_shardings=(state_sh, data_sh),
        out_shardings=roll_sh,
    )
    learn_fn = jax.jit(
        under_mesh(_bind(learn, step_kw)),
        in_shardings=(state_sh, data_sh, roll_sh, data_sh, data_sh),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )

    def shapes(roll):
        n, t = roll.tokens.shape
        return (
            jax.ShapeDtypeStruct((n, num_fields), np.float32),
            jax.ShapeDtypeStruct((n, t), np.float32),
        )

    def host_global(roll):
        tokens = np.asarray(roll.tokens)
        n, t = tokens.shape
        out = _check(
            _call_reward(reward_fn, tokens, np.asarray(roll.ref), np.asarray(roll.step)),
            n,
            num_fields,
            t,
        )
        return tuple(jax.device_put(x, data_sh) for x in out)

    def host_per_shard(roll):
        n, t = roll.tokens.shape
        blocks = {}  # row offset -> (tokens, ref) of one block this process holds
        refs = {s.device: s for s in roll.ref.addressable_shards}
        for s in roll.tokens.addressable_shards:
            start = s.index[0].start or 0
            if start not in blocks:  # a tensor group's devices hold the same rows
                blocks[start] = (np.asarray(s.data), np.asarray(refs[s.device].data))
        step = np.asarray(roll.step.addressable_data(0))
        out, error = {}, None
        try:
            for start in sorted(blocks):
                tokens, ref = blocks[start]
                out[start] = _check(
                    _call_reward(reward_fn, tokens, ref, step, start),
                    len(tokens),
                    num_fields,
                    t,
                )
        except RewardError as e:
            error = e
        _agree(error, int(step))
        return tuple(
            jax.make_array_from_callback(shape, data_sh, lambda idx, k=k: out[idx[0].start or 0][k])
            for k, shape in enumerate(((n, num_fields), (n, t)))
        )

    return SplitIteration(
        rollout_fn, learn_fn, host_per_shard if per_shard else host_global, shapes
    )


def _agree(error: RewardError | None, step: int) -> None:
    """Raises on every process when the host reward failed on any (module doc)."""
    failed = np.int32(error is not None)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        failed = np.asarray(multihost_utils.process_allgather(failed)).sum()
    if error is not None:
        raise error
    if failed:
        raise RewardError(
            f"host reward failed in another process at global step {step} (see its log)"
        )


def pmap_split(
    step_kw: dict, *, reward_fn, num_fields: int, axis: str, devices, shard, unreplicate
) -> SplitIteration:
    """The pmap path's split iteration: `shard(batch)` splits a host batch into the
    device blocks (`pmap.shard_batch`); metrics come back without the device axis."""
    devices = tuple(devices)
    d = len(devices)
    pmap = functools.partial(jax.pmap, axis_name=axis, devices=devices)
    rollout_fn = pmap(_bind(rollout, step_kw, axis_name=axis))
    learn_fn = pmap(_bind(learn, step_kw, axis_name=axis), donate_argnums=0)

    def shapes(roll):
        _, n_loc, t = roll.tokens.shape
        return (
            jax.ShapeDtypeStruct((d, d * n_loc, num_fields), np.float32),
            jax.ShapeDtypeStruct((d, n_loc, t), np.float32),
        )

    def host(roll):
        tokens = np.asarray(roll.tokens)
        _, n_loc, t = tokens.shape
        n = d * n_loc
        scores, token_rewards = _check(
            _call_reward(
                reward_fn,
                tokens.reshape(n, t),
                np.asarray(roll.ref).reshape(n, 2),
                np.asarray(roll.step)[0],
            ),
            n,
            num_fields,
            t,
        )
        return (
            np.broadcast_to(scores, (d, *scores.shape)),  # global scores on every device
            token_rewards.reshape(d, n_loc, t),
        )

    return SplitIteration(
        rollout_fn,
        learn_fn,
        host,
        shapes,
        prep=lambda state, batch: (state, shard(batch)),
        post=unreplicate,
    )
