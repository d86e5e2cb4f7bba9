"""The RL iteration's one crossing to the host: rewards through `io_callback`.

The host reward (`rewards.bridge.HostReward`) takes `(tokens [N, T], ref ids [N, 2],
step[, row_offset])` and returns `(scores [N, F], token_rewards [N, T])`. Three modes:

* **global** (jit, one process): one `io_callback` on the whole batch;
* **per shard** (jit, `reward_mesh`; several processes): a `shard_map` over the batch
  axes hands each device its rows and their global offset, so each host verifies only
  the samples it holds (the devices of one `tensor` group hold the same rows: only the
  first calls the host, the others add zeros); the result equals the global call, since
  the host reward keys every random draw by the global row index;
* **pmap** (`Axis` with a name): completions and reference ids are all-gathered and one
  `io_callback` on the device with axis index 0 (under `lax.cond`) scores the global
  batch in global order; its output is `psum`'ed (zeros elsewhere) and each device keeps
  its rows, so the host reward keeps one call per iteration and its novelty-tree order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import io_callback
from jax.sharding import PartitionSpec as P

from r1jax.parallel import BATCH_AXES
from r1jax.train.reductions import Axis

__all__ = ["host_rewards"]


def _zeros(shapes):
    return tuple(jnp.zeros(x.shape, x.dtype) for x in shapes)


def _per_shard(reward_fn, num_fields, tokens, ref, step, mesh):
    """Host rewards with each batch shard verified where it lives (module doc)."""
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

        if "tensor" not in mesh.shape or mesh.shape["tensor"] == 1:
            return call(None)
        out = jax.lax.cond(jax.lax.axis_index("tensor") == 0, call, lambda _: _zeros(shapes), None)
        return jax.lax.psum(out, "tensor")

    spec = P(axes or None)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(spec, spec, P()),
        out_specs=(spec, spec),
        check_vma=False,
    )(tokens, ref, step)


def host_rewards(reward_fn, num_fields, tokens, ref, step, ax: Axis, mesh=None):
    """(scores [N_global, F], token_rewards [n_local, T]) from the host reward function.

    `mesh` (jit path only): verify per shard instead of one call (module doc).
    """
    if mesh is not None and ax.name is None:
        return _per_shard(reward_fn, num_fields, tokens, ref, step, mesh)
    if ax.name is None:
        shapes = (
            jax.ShapeDtypeStruct((tokens.shape[0], num_fields), jnp.float32),
            jax.ShapeDtypeStruct(tokens.shape, jnp.float32),
        )
        return io_callback(reward_fn, shapes, tokens, ref, step, ordered=False)
    n_local = tokens.shape[0]
    g_tokens, g_ref = ax.gather(tokens), ax.gather(ref)
    shapes = (
        jax.ShapeDtypeStruct((g_tokens.shape[0], num_fields), jnp.float32),
        jax.ShapeDtypeStruct(g_tokens.shape, jnp.float32),
    )

    def call(_):
        return io_callback(reward_fn, shapes, g_tokens, g_ref, step, ordered=False)

    out = jax.lax.cond(ax.index() == 0, call, lambda _: _zeros(shapes), None)
    scores, token_rewards = ax.psum(out)  # x + 0 is exact: device 0's values everywhere
    return scores, ax.local_rows(token_rewards, n_local)
