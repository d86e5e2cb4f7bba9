"""Orbax checkpoints that hold everything a resumed run needs.

A checkpoint at global step s holds the whole `TrainState` (params, both optimizers,
reference policy, PRNG key, adaptive clip/entropy controllers, skip counter) plus a
small JSON record (`phase`, SFT/RL progress). The data streams are stateless functions
of (seed, step), so the step *is* the iterator position: restoring step s and
continuing reproduces the uninterrupted run exactly.

The SFT checkpoint (the RL starting point) is kept for good; RL checkpoints rotate.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

SFT_CHECKPOINT = "sft"  # subdirectory holding the SFT warm-start checkpoint


class Checkpointer:
    """Two managers under `<workdir>/checkpoints/`: `sft/` (one step) and `rl/` (rotating)."""

    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(workdir, "checkpoints")
        if "://" not in root:  # local paths must be absolute for Orbax; gs:// etc. stay as-is
            root = os.path.abspath(root)
        opts = lambda n: ocp.CheckpointManagerOptions(max_to_keep=n, create=True)
        self._managers = {
            "sft": ocp.CheckpointManager(
                os.path.join(root, SFT_CHECKPOINT), options=opts(1), item_names=("state", "meta")
            ),
            "rl": ocp.CheckpointManager(
                os.path.join(root, "rl"), options=opts(keep), item_names=("state", "meta")
            ),
        }

    def save(self, phase: str, step: int, state: Any, meta: dict) -> None:
        self._managers[phase].save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._managers[phase].wait_until_finished()

    def latest(self, phase: str) -> int | None:
        return self._managers[phase].latest_step()

    def steps(self, phase: str) -> list[int]:
        return list(self._managers[phase].all_steps())

    def restore(self, phase: str, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores into the structure, dtypes and shardings of `abstract_state`."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self._managers[phase].restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta)

    def find(self, step: int | None) -> tuple[str, int]:
        """The phase and step of `step` (None = the newest: latest RL, else SFT)."""
        if step is None:
            for phase in ("rl", "sft"):
                if self.latest(phase) is not None:
                    return phase, self.latest(phase)
            raise FileNotFoundError(
                "no checkpoint found: run r1jax-train with this --workdir first"
            )
        for phase in ("rl", "sft"):
            if step in self.steps(phase):
                return phase, step
        avail = sorted(self.steps("sft") + self.steps("rl"))
        raise FileNotFoundError(f"no checkpoint at step {step}; available steps: {avail}")

    def close(self):
        for m in self._managers.values():
            m.close()
