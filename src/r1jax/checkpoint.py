"""Orbax checkpoints that hold everything a resumed run needs.

A checkpoint at global step s holds the whole `TrainState` (params, both optimizers,
reference policy, PRNG key, adaptive clip/entropy controllers, skip counter) plus a
small JSON record (`phase`, SFT/RL progress). The data streams are stateless functions
of (seed, step), so the step *is* the iterator position: restoring step s and
continuing reproduces the uninterrupted run exactly.

The SFT checkpoint (the RL starting point) is kept for good; RL checkpoints rotate.

Saving is atomic (Orbax writes into a temporary directory and renames it when complete),
so a kill during a save leaves the previous checkpoints as they were. Reading is
defensive: `restore_readable` tries the newest checkpoint first and, when it cannot be
read (a truncated or missing file, wrong shapes), says so in one log line and falls back
to the next newest; the unreadable ones are then moved aside into
`checkpoints/unreadable/` (never deleted), so the run saves those steps anew.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from r1jax.errors import ConfigError, RunError

SFT_CHECKPOINT = "sft"  # subdirectory holding the SFT warm-start checkpoint
FILES = "r1jax_files.json"  # in each step directory: every file's size, written after a save
UNREADABLE = "unreadable"  # checkpoints/unreadable/<phase>-<step>: set aside, kept
log = logging.getLogger("r1jax")


# States up to this size are copied to host memory (numpy) before a single-process save:
# Orbax's path for device arrays costs ~1.5 ms per leaf whatever its size (the smoke
# config's 94-leaf TrainState: 0.18 -> 0.085 s a save; a 220-leaf continual state 0.34 ->
# 0.15 s). Larger states, and arrays spread over processes, go through Orbax's own
# device path (it bounds the bytes in flight). Restoring is the same either way.
HOST_COPY_MAX_BYTES = 256 << 20


def _host_copy(state: Any) -> Any:
    leaves = jax.tree.leaves(state)
    arrays = [x for x in leaves if isinstance(x, jax.Array)]
    if (
        jax.process_count() > 1
        or any(not x.is_fully_addressable for x in arrays)
        or any(jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) for x in arrays)
        or sum(x.nbytes for x in arrays) > HOST_COPY_MAX_BYTES
    ):
        return state
    return jax.device_get(state)


class UnreadableCheckpoint(Exception):
    """A checkpoint's files are not what its save wrote (truncated, missing)."""


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
        """Saves atomically (a temporary directory renamed when complete). Raises
        RunError, before writing anything, when the disk lacks the space for the state,
        and when the save fails (the earlier checkpoints are intact either way)."""
        self._check_space(phase, step, state)
        state = _host_copy(state)
        try:
            self._managers[phase].save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
            self._managers[phase].wait_until_finished()
        except Exception as e:  # Orbax and TensorStore raise many types
            raise RunError(
                f"saving the {phase} checkpoint at step {step} under {self.root} failed "
                f"({_reason(e)}): if that disk is full, free space there (or pass another "
                f"--workdir), then rerun the same command; {self._intact()}"
            ) from e
        if "://" not in self.root and jax.process_index() == 0:
            self._write_file_list(phase, step)

    def _intact(self) -> str:
        newest = next(iter(self.candidates()), None)
        if newest is None:
            return "no checkpoint was complete yet"
        return f"the run resumes from its newest complete checkpoint, {newest[0]}/{newest[1]}"

    def _check_space(self, phase: str, step: int, state: Any) -> None:
        if "://" in self.root:
            return
        need = sum(
            int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)
        )
        need += need // 8 + (16 << 20)  # metadata, file system blocks, headroom
        probe = self.root
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        free = shutil.disk_usage(probe).free
        if free < need:
            raise RunError(
                f"not enough free space to save the {phase} checkpoint at step {step} under "
                f"{self.root}: it needs about {need / 2**20:,.0f} MiB, {free / 2**20:,.0f} MiB "
                f"are free: free space there (or pass another --workdir), then rerun the same "
                f"command; {self._intact()}"
            )

    def _step_dir(self, phase: str, step: int) -> str:
        return os.path.join(str(self._managers[phase].directory), str(step))

    def _write_file_list(self, phase: str, step: int) -> None:
        """Records the size of every file of a finished save (`FILES`), so a truncated or
        missing file is found before Orbax reads anything (`verify`)."""
        top = self._step_dir(phase, step)
        sizes = {}
        for d, _, names in os.walk(top):
            for name in names:
                path = os.path.join(d, name)
                rel = os.path.relpath(path, top)
                if rel != FILES:
                    sizes[rel] = os.path.getsize(path)
        tmp = os.path.join(top, FILES + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"sizes": sizes}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(top, FILES))

    def verify(self, phase: str, step: int) -> None:
        """Raises `UnreadableCheckpoint` when a file the save wrote is missing or has a
        different size (`FILES`; checkpoints without the list are checked for their items
        only). Reads no array."""
        if "://" in self.root:
            return
        top = self._step_dir(phase, step)
        for item in ("state", "meta"):
            if not os.path.isdir(os.path.join(top, item)):
                raise UnreadableCheckpoint(f"its {item!r} item is missing")
        listing = os.path.join(top, FILES)
        if not os.path.exists(listing):
            return
        try:
            with open(listing) as f:
                sizes = json.load(f)["sizes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UnreadableCheckpoint(f"its file list {FILES} cannot be read ({e})") from e
        for rel, size in sorted(sizes.items()):
            path = os.path.join(top, rel)
            if not os.path.isfile(path):
                raise UnreadableCheckpoint(f"{rel} is missing")
            actual = os.path.getsize(path)
            if actual != size:
                raise UnreadableCheckpoint(f"{rel} has {actual} bytes, {size} were written")

    def latest(self, phase: str) -> int | None:
        return self._managers[phase].latest_step()

    def steps(self, phase: str) -> list[int]:
        return list(self._managers[phase].all_steps())

    def restore(self, phase: str, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores into the structure, dtypes and shardings of `abstract_state`."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        self.verify(phase, step)
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

    def candidates(self) -> list[tuple[str, int]]:
        """Every checkpoint, newest first: RL steps, then the SFT one."""
        return [(p, s) for p in ("rl", "sft") for s in sorted(self.steps(p), reverse=True)]

    def set_aside(self, phase: str, step: int) -> str:
        """Moves checkpoint `phase`/`step` to `checkpoints/unreadable/<phase>-<step>[-n]`
        (kept for inspection, out of Orbax's sight); returns the new path."""
        src = os.path.join(str(self._managers[phase].directory), str(step))
        base = os.path.join(self.root, UNREADABLE, f"{phase}-{step}")
        dst, n = base, 1
        while os.path.exists(dst):
            n += 1
            dst = f"{base}-{n}"
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        self._managers[phase].reload()
        return dst

    def close(self):
        for m in self._managers.values():
            m.close()


def _reason(e: BaseException) -> str:
    """One short clause for a failed restore: the exception's first line, without the
    TensorStore spec dump Orbax appends to read errors (a bound-method repr)."""
    if isinstance(e, UnreadableCheckpoint):
        return str(e)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0].split(" See full TensorStore details")[0].rstrip(".") if lines else ""
    return f"{type(e).__name__}: {text[:240]}" if text else type(e).__name__


def restore_readable(
    ckpt: Checkpointer,
    restore: Callable[[str, int], Any],
    step: int | None = None,
    set_aside: bool = True,
    sync: Callable[[str], None] | None = None,
) -> tuple[str, int, Any] | None:
    """`(phase, step, restore(phase, step))` of the newest checkpoint that can be read,
    or None when the workdir has no checkpoint (a new run).

    An unreadable checkpoint is logged in one line and the next newest is tried. After a
    fallback the unreadable ones are moved aside (`set_aside`; the resuming trainer does,
    `r1jax-eval` does not); if none can be read, nothing is moved and RunError (or, when
    every checkpoint only has the wrong shapes, the ConfigError that explains the
    config's mismatch) says so. `step` restores that checkpoint only (an error if it
    cannot be read). `sync(name)` (multi-process runs) is a barrier around the moves,
    which process 0 makes when `set_aside` is True there only.
    """
    if step is not None:
        phase, step = ckpt.find(step)
        try:
            return phase, step, restore(phase, step)
        except ConfigError:
            raise
        except Exception as e:  # any failure to read is reported the same
            raise RunError(
                f"checkpoint {phase}/{step} in {ckpt.root} cannot be read ({_reason(e)}): "
                f"pick another --step (available: {sorted(ckpt.steps('sft') + ckpt.steps('rl'))})"
            ) from e
    bad = []
    for phase, at in ckpt.candidates():
        try:
            value = restore(phase, at)
        except Exception as e:  # noqa: BLE001 - truncated files, missing items, shapes
            bad.append((phase, at, e))
            log.warning(
                "checkpoint %s/%d in %s cannot be read (%s): trying the previous one",
                phase,
                at,
                ckpt.root,
                _reason(e),
            )
            continue
        if bad:
            if sync is not None:
                sync("r1jax-set-aside-start")
            for p, s, _ in bad:
                if set_aside:
                    dst = ckpt.set_aside(p, s)
                    log.warning("moved the unreadable checkpoint %s/%d to %s", p, s, dst)
            if sync is not None:
                sync("r1jax-set-aside-done")
                for p in ("rl", "sft"):
                    ckpt._managers[p].reload()
        return phase, at, value
    if not bad:
        return None
    if all(isinstance(e, ConfigError) for _, _, e in bad):
        raise bad[0][2]
    listed = "; ".join(f"{p}/{s}: {_reason(e)}" for p, s, e in bad)
    raise RunError(
        f"no checkpoint in {ckpt.root} can be read ({listed}): move that folder aside to "
        "start the run over, or pass a new --workdir"
    )
