"""Device meshes and shardings.

The foundation uses a 1-D data-parallel mesh: the state is replicated, batches are
split along their leading axis over `data`. Because the RL step is one `jax.jit`
program over global arrays, every reduction (token counts, loss normalisers, advantage
statistics) is global, and the result equals the single-device run up to float
reassociation. FSDP/tensor axes and multi-host initialisation come with the scale-out
issue.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(data: int = -1, devices=None) -> Mesh:
    """A ('data',) mesh over `data` devices (-1 = all)."""
    devices = list(jax.devices() if devices is None else devices)
    if data == -1:
        data = len(devices)
    if not 1 <= data <= len(devices):
        raise ValueError(
            f"mesh.data={data} but {len(devices)} devices are visible: use -1 or a "
            f"value in [1, {len(devices)}]"
        )
    return Mesh(np.asarray(devices[:data]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest replicated."""
    return NamedSharding(mesh, P("data"))


def check_divisible(n: int, mesh: Mesh, what: str):
    d = mesh.shape["data"]
    if n % d:
        raise ValueError(
            f"{what}={n} is not divisible by the {d} data-parallel devices: "
            f"choose a multiple of {d} or set mesh.data to a divisor of it"
        )
