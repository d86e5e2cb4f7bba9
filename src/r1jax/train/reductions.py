"""Reductions over the data-parallel axis of the RL iteration.

On the `jax.jit` path (`name=None`) a step sees the whole global batch and every helper
here is the identity (or a plain mean); under `pmap` (`name` = the device axis, see
`train.pmap`) each device holds a contiguous block of rows and these helpers make every
reduction global: sums are `psum`s, the rollout buffer is all-gathered for minibatch
indexing, and a device reads back its own rows or its share of a global minibatch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["Axis", "global_mean", "token_count"]


class Axis:
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


def token_count(mask_b, idx, ax: Axis):
    """Valid tokens of the rows `idx` of `mask_b`, summed over the data-parallel axis."""
    return jnp.maximum(ax.psum(mask_b[idx].astype(jnp.float32).sum()), 1.0)


def global_mean(x_n, ax: Axis):
    """Mean over the rows of all shards (`x_n.mean()` on the jit path)."""
    if ax.name is None:
        return x_n.mean()
    return ax.psum(x_n.astype(jnp.float32).sum()) / (x_n.shape[0] * ax.size)
