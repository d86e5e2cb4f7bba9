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
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from r1jax.errors import ConfigError

SFT_CHECKPOINT = "sft"  # subdirectory holding the SFT warm-start checkpoint


class Checkpointer:
    """Two managers under `<workdir>/checkpoints/`: `sft/` (one step) and `rl/` (rotating)."""

    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(workdir, "checkpoints")
        if "://" not in root:  # local paths must be absolute for Orbax; gs:// etc. stay as-is
            root = os.path.abspath(root)
        self.root = root
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
        self._check_fits(phase, step, target)
        out = self._managers[phase].restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta)

    def saved_fields(self, phase: str, step: int) -> set[str] | None:
        """The top-level fields of the state saved at `step` (from its metadata; nothing is
        read), or None when there is no metadata to tell."""
        path = os.path.join(str(self._managers[phase].directory), str(step), "state")
        try:
            meta = ocp.StandardCheckpointHandler().metadata(epath.Path(path))
        except Exception:  # noqa: BLE001 - restore() reports a checkpoint it cannot read
            return None
        tree = getattr(meta, "tree", meta)
        return set(tree) if isinstance(tree, dict) else None

    def _check_fits(self, phase: str, step: int, target: Any) -> None:
        """Compares the checkpoint's array shapes (its metadata; nothing is read) with
        `target`'s, so a mismatch is one clear ConfigError before Orbax starts reading."""
        path = os.path.join(str(self._managers[phase].directory), str(step), "state")
        try:
            meta = ocp.StandardCheckpointHandler().metadata(epath.Path(path))
        except Exception:  # noqa: BLE001 - no metadata to compare: restore() reports it
            return
        tree = getattr(meta, "tree", meta)
        saved = sorted(tuple(x.shape) for x in jax.tree.leaves(tree) if hasattr(x, "shape"))
        want = sorted(tuple(x.shape) for x in jax.tree.leaves(target))
        if saved != want:
            n = lambda shapes: sum(int(np.prod(s)) for s in shapes)
            raise ConfigError(
                f"the {phase} checkpoint at step {step} in {self.root} does not fit the state "
                f"this config builds (it holds {len(saved)} arrays of {n(saved):,} numbers, "
                f"this config's state {len(want)} arrays of {n(want):,}): a resumed run must "
                "keep what shapes the state (rl.algo ppo/grpo adds or drops the critic; "
                "model, value_model, lora and optimizer settings). Resume with the settings "
                "of the run's config.json, or start a new --workdir"
            )

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
