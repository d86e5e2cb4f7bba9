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

A host reward that raises must stop the iteration on every device at once: a callback
that fails on one device leaves the others waiting in the next collective (XLA's CPU
runtime aborts the process after 40 s, NCCL may wait for ever). So the reward function
never raises into XLA here (`_Guarded`): on an exception it logs it, returns zeros and a
failure flag; the flag is summed over all devices and a second, tiny callback on every
device (`_Guarded.check`) raises `RewardError` with the failure's message when it is
set. The rewards pass an `optimization_barrier` with that check's output, so nothing
uses them before it ran. The jitted call then fails with `jax.errors.JaxRuntimeError`
(`HostReward.raise_if_failed` turns it back into the `RewardError`).
"""

from __future__ import annotations

import logging
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jax.sharding import PartitionSpec as P

from r1jax.errors import RewardError
from r1jax.parallel import BATCH_AXES
from r1jax.train.reductions import Axis

__all__ = ["host_rewards"]

_log = logging.getLogger(__name__)
_FLAG = jax.ShapeDtypeStruct((), jnp.int32)
_CHECK = jax.ShapeDtypeStruct((), jnp.float32)


def _zeros(shapes):
    return tuple(jnp.zeros(x.shape, x.dtype) for x in shapes)


class _Guarded:
    """`reward_fn` for `io_callback` that never raises into XLA (module doc).

    Returns the reward function's outputs and a flag 0, or zeros and a flag 1 (after
    logging the exception and keeping its message); `check(flag)` raises `RewardError`
    with that message on every device when the summed flag is set.
    """

    def __init__(self, reward_fn, shapes):
        self.reward_fn, self.shapes = reward_fn, tuple(shapes)
        self.message: str | None = None
        self._lock = threading.Lock()

    def __call__(self, *args):
        try:
            out = tuple(self.reward_fn(*args))
            if len(out) != len(self.shapes):
                raise ValueError(f"returned {len(out)} arrays, expected {len(self.shapes)}")
            out = tuple(np.asarray(x, s.dtype) for x, s in zip(out, self.shapes))
            for x, s in zip(out, self.shapes):
                if x.shape != s.shape:
                    raise ValueError(f"returned shape {x.shape}, expected {s.shape}")
            return (*out, np.int32(0))
        except Exception as e:  # noqa: BLE001  (any failure: flagged, raised on every device)
            msg = str(e) if isinstance(e, RewardError) else f"host reward failed: {e!r}"
            with self._lock:
                self.message = msg  # the latest failure: the one this iteration checks
            _log.error("%s", msg, exc_info=True)
            return (*(np.zeros(s.shape, s.dtype) for s in self.shapes), np.int32(1))

    def check(self, failed):
        if int(np.asarray(failed)) == 0:
            return np.float32(0)
        with self._lock:
            msg = self.message
        raise RewardError(
            msg or "host reward failed in another process at this RL iteration (see its log)"
        )


def _after_check(guard, failed, outputs, mesh=None):
    """`outputs`, available only once `guard.check(failed)` ran (on each device of
    `mesh`: a manual `shard_map`, as a callback in an automatically partitioned program
    runs on one device only)."""

    def check(failed):
        return io_callback(guard.check, _CHECK, failed, ordered=False)

    if mesh is not None:
        check = jax.shard_map(check, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)
    *outputs, _ = jax.lax.optimization_barrier((*outputs, check(failed)))
    return tuple(outputs)


def _mesh_of(*xs):
    """The (abstract) device mesh of the traced arrays, if they span several devices."""
    for x in xs:
        mesh = getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)
        if mesh is not None and not mesh.empty and mesh.size > 1:
            return mesh
    return None


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
    guard = _Guarded(reward_fn, shapes)

    def local(tokens, ref, step):
        offset = jax.lax.axis_index(axes) * n_local if axes else 0

        def call(_):
            return io_callback(guard, (*shapes, _FLAG), tokens, ref, step, offset)

        if "tensor" not in mesh.shape or mesh.shape["tensor"] == 1:
            out = call(None)
        else:
            zeros = _zeros((*shapes, _FLAG))
            out = jax.lax.cond(jax.lax.axis_index("tensor") == 0, call, lambda _: zeros, None)
            out = jax.lax.psum(out, "tensor")
        *out, failed = out
        failed = jax.lax.psum(failed, tuple(mesh.axis_names))  # every device: any shard
        return _after_check(guard, failed, out)

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

    `mesh` (jit path only): verify per shard instead of one call (module doc). If the
    reward function raises, every device raises `RewardError` (module doc).
    """
    if mesh is not None and ax.name is None:
        return _per_shard(reward_fn, num_fields, tokens, ref, step, mesh)
    if ax.name is None:
        shapes = (
            jax.ShapeDtypeStruct((tokens.shape[0], num_fields), jnp.float32),
            jax.ShapeDtypeStruct(tokens.shape, jnp.float32),
        )
        guard = _Guarded(reward_fn, shapes)
        *out, failed = io_callback(guard, (*shapes, _FLAG), tokens, ref, step, ordered=False)
        return _after_check(guard, failed, out, _mesh_of(tokens, ref))
    n_local = tokens.shape[0]
    g_tokens, g_ref = ax.gather(tokens), ax.gather(ref)
    shapes = (
        jax.ShapeDtypeStruct((g_tokens.shape[0], num_fields), jnp.float32),
        jax.ShapeDtypeStruct(g_tokens.shape, jnp.float32),
    )
    guard = _Guarded(reward_fn, shapes)

    def call(_):
        return io_callback(guard, (*shapes, _FLAG), g_tokens, g_ref, step, ordered=False)

    out = jax.lax.cond(ax.index() == 0, call, lambda _: _zeros((*shapes, _FLAG)), None)
    *out, failed = ax.psum(out)  # x + 0 is exact: device 0's values everywhere
    scores, token_rewards = _after_check(guard, failed, out)
    return scores, ax.local_rows(token_rewards, n_local)
