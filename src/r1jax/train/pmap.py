"""The `pmap` path (`--config.parallelism=pmap`): data parallelism with explicit collectives.

For users of older pod recipes built around `jax.pmap`: the SFT step and the RL
iteration are the same pure functions as on the `jax.jit` path (`sft_step`,
`rl_iteration`), mapped over the local devices with `axis_name=AXIS`, which turns every
batch reduction into a `psum` over the devices (loss normalisers, whitening statistics,
metrics, gradients). On one host the results equal the jit path on one device up to
float reassociation (tests/train/pmap_test.py: 1e-5 in float32); how the RNG, the host
rewards and the minibatches are kept identical is in `r1jax.train.rl_step`'s docstring.

Layout. The state is replicated: every leaf gets a leading device axis (`replicate`,
`unreplicate` for checkpoints and evaluation). A global batch is split into contiguous
row blocks, `[n_devices, rows / n_devices, ...]` (`shard_batch`); the step functions
returned by `make_pmap_steps` take the global host batch (as `Experiment.sft_batch` /
`rl_batch` return it), split it themselves, and return metrics without the device axis.

Sizes: `sft.rows` and `rl.prompts_per_iter` must be divisible by the number of
devices, and so must the RL minibatch size (`prompts_per_iter · group_size /
num_minibatches`), since every device trains on its share of each global minibatch.
Parameters are replicated (no FSDP or tensor parallelism: use the jit path's mesh for
those). Single host: the device axis spans `jax.local_devices()`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.train import split_rl
from r1jax.train.sft_step import sft_step
from r1jax.train.state import start_rl

__all__ = ["AXIS", "PmapSteps", "make_pmap_steps", "replicate", "shard_batch", "unreplicate"]

AXIS = "data"  # the pmap axis name handed to the steps as `axis_name`


def _device_sharding(devices) -> NamedSharding:
    return NamedSharding(Mesh(np.asarray(devices), ("device",)), P("device"))


def replicate(tree, devices):
    """A copy of `tree` on every device, stacked on a new leading axis (pmap layout)."""
    devices = list(devices)
    sharding = _device_sharding(devices)

    def one(x):
        x = jax.numpy.asarray(x)[None]
        shards = [jax.device_put(x, d) for d in devices]
        return jax.make_array_from_single_device_arrays(
            (len(devices),) + x.shape[1:], sharding, shards
        )

    return jax.tree.map(one, tree)


@jax.jit
def _first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def unreplicate(tree):
    """Device 0's copy of a replicated tree (for checkpoints, evaluation, logging).

    One program for the whole tree, not one `x[0]` per leaf: every program over several
    CPU devices is a gang-scheduled launch, and dispatching dozens of them back to back
    (a 94-leaf state) can fill XLA:CPU's 32 in-flight slots per device; the next launch
    then blocks a pool thread that a running collective needs (the hang is described
    at `r1jax.parallel.cpu_pool_env`).
    """
    return _first(tree)


def shard_batch(batch, n_devices: int, devices=None):
    """Splits every leaf's leading (row) axis into `[n_devices, rows / n_devices, ...]`.

    Device d gets rows `[d·k, (d+1)·k)`; with `devices` the blocks are put on them.
    """

    def one(x):
        x = np.asarray(x)
        if x.shape[0] % n_devices:
            raise ValueError(
                f"batch of {x.shape[0]} rows is not divisible by {n_devices} pmap devices"
            )
        return x.reshape((n_devices, x.shape[0] // n_devices) + x.shape[1:])

    out = jax.tree.map(one, batch)
    if devices is not None:
        out = jax.device_put(out, _device_sharding(list(devices)))
    return out


class PmapSteps(NamedTuple):
    """The pmap counterparts of `Experiment.sft_fn` / `rl_fn` and their helpers.

    `sft_fn(state_r, batch)` and `rl_fn(state_r, batch)` take the replicated state (donated)
    and a global host batch; they return (new replicated state, metrics of device 0).
    """

    sft_fn: Callable
    rl_fn: Callable
    start_rl: Callable  # replicated SFT-finished state -> replicated RL start (donated)
    replicate: Callable  # state -> replicated state on `devices`
    unreplicate: Callable  # replicated state -> one copy
    devices: tuple
    n_devices: int
    sft_pmapped: Callable  # the raw pmapped steps ([n_devices, rows/n, ...] batches); .lower
    rl_pmapped: Callable  # with reward.host_call="split": the `split_rl.SplitIteration`


def check_sizes(c, n_devices: int) -> None:
    """Raises ValueError unless the batch and minibatch sizes split over `n_devices`."""
    r = c.rl
    sizes = {
        "sft.rows": c.sft.rows,
        "rl.prompts_per_iter": r.prompts_per_iter,
        "the RL minibatch size (rl.prompts_per_iter * rl.group_size / rl.num_minibatches)": (
            r.prompts_per_iter * r.group_size // max(r.num_minibatches, 1)
        ),
    }
    for what, n in sizes.items():
        if n % n_devices:
            raise ValueError(
                f"parallelism=pmap over {n_devices} devices: {what}={n} is not divisible by "
                f"{n_devices}; choose a multiple of {n_devices}"
            )


def make_pmap_steps(exp, devices=None) -> PmapSteps:
    """pmap'ed SFT and RL steps for an `Experiment` (its graphs, optimizers, host reward).

    `devices`: the devices of the pmap axis (default: all local devices).
    """
    devices = tuple(jax.local_devices() if devices is None else devices)
    n = len(devices)
    c = exp.c
    check_sizes(c, n)
    pmap = functools.partial(jax.pmap, axis_name=AXIS, devices=devices, donate_argnums=0)
    sft_p = pmap(
        functools.partial(
            sft_step,
            graphs=exp.graphs,
            tx=exp.sft_tx,
            axis_name=AXIS,
            grad_accum=c.sft.grad_accum,
            logit_chunk=c.sft.logit_chunk,
        )
    )

    def wrap(fn):
        def step(state_r, batch):
            state_r, metrics = fn(state_r, shard_batch(batch, n, devices))
            return state_r, unreplicate(metrics)

        return step

    if getattr(exp, "split", False):  # rollout and learner programs (train.split_rl)
        step_kw = exp.rl_step().keywords
        rl_p = split_rl.pmap_split(
            step_kw,
            reward_fn=exp.host_reward,
            num_fields=step_kw["num_score_fields"],
            axis=AXIS,
            devices=devices,
            shard=lambda batch: shard_batch(batch, n, devices),
            unreplicate=unreplicate,
        )
        rl_fn = rl_p
    else:
        rl_p = pmap(exp.rl_step(axis_name=AXIS))
        rl_fn = wrap(rl_p)
    start_p = pmap(functools.partial(start_rl, policy_tx=exp.policy_tx, value_tx=exp.value_tx))

    return PmapSteps(
        sft_fn=wrap(sft_p),
        rl_fn=rl_fn,
        start_rl=start_p,
        replicate=functools.partial(replicate, devices=devices),
        unreplicate=unreplicate,
        devices=devices,
        n_devices=n,
        sft_pmapped=sft_p,
        rl_pmapped=rl_p,
    )
