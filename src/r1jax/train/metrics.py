"""Metric sinks: `metrics.jsonl`, TensorBoard events and a PNG plot.

On resume the JSONL file is cut back to the restored step, so the file reads as if the
run had never stopped. Each JSONL row is `{"step", "phase", ...scalars}`; phases:
`sft` (training loss), `rl` (rollout reward by part and learner diagnostics, each the
mean over the iterations since the previous row), `curve` (the fixed held-out subset,
every `eval.curve_every` RL iterations), `eval` (the full held-out set). TensorBoard
gets every scalar as `phase/name`, so it shows the same curves as the plot
(`plot_metrics`: `reward_accuracy.png`).
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else None


class MetricsWriter:
    """`enabled=False` (every process but 0 of a multi-host run) writes nothing; `write`
    still returns the row."""

    def __init__(
        self,
        workdir: str,
        resume_step: int | None = None,
        enabled: bool = True,
        drop_evals_at_resume: bool = False,
    ):
        """`resume_step`: the step of the checkpoint a resumed run starts from: the rows
        after it are dropped (they are written again). `drop_evals_at_resume`: the "eval"
        rows at `resume_step` itself go too (the final evaluation follows the last
        checkpoint, and a rerun of a finished run writes it again)."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        if resume_step is None:
            open(self.path, "w").close()
        else:
            self._truncate(resume_step, drop_evals_at_resume)
        self._tb = summary_writer_class()(os.path.join(workdir, "tensorboard"), flush_secs=30)

    def _truncate(self, step: int, drop_evals_at_step: bool = False):
        rows = read_metrics(self.path) if os.path.exists(self.path) else []
        keep = [
            r
            for r in rows
            if r["step"] < step
            or (r["step"] == step and not (drop_evals_at_step and r["phase"] == "eval"))
        ]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)
        os.replace(tmp, self.path)

    def write(self, step: int, phase: str, scalars: dict) -> dict:
        row = {"step": int(step), "phase": phase}
        row.update({k: _clean(v) for k, v in scalars.items()})
        if not self.enabled:
            return row
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("step", "phase") and v is not None:
                self._tb.add_scalar(f"{phase}/{k}", v, step)
        return row

    def close(self):
        if self._tb is not None:
            self._tb.close()


def summary_writer_class():
    """`tensorboardX.SummaryWriter`, imported without torch. tensorboardX's writer module
    tries `import torch` when it is loaded (to accept torch tensors), which costs 1.4 s
    on an idle 2-core machine (4-5 s on a loaded one) wherever torch is installed; this
    writer logs Python floats only. A torch the process already imported is left alone."""
    if "torch" in sys.modules or "tensorboardX.writer" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError: tensorboardX goes on
    try:
        from tensorboardX import SummaryWriter
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return SummaryWriter


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


PARTS = ("correctness", "efficiency", "novelty", "format", "subgoal")


def _series(rows, phase, key):
    sel = [r for r in rows if r["phase"] == phase and r.get(key) is not None]
    return np.array([r["step"] for r in sel]), np.array([r[key] for r in sel], float)


def _ema(values, alpha: float = 0.3):
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return np.array(out)


def plot_metrics(metrics_path: str, out_png: str) -> str:
    """The run's story in four panels (module doc): the SFT loss; over RL the held-out
    accuracy and mean steps (the fixed curve subset every `eval.curve_every` iterations,
    and the full held-out set at the SFT checkpoint and at the end); the rollout reward
    per part, averaged over each logging window and smoothed (EMA)."""
    # A Figure of its own, drawn by the Agg canvas `savefig` picks for PNG: no pyplot
    # (its import and global figure registry), no GUI backend, safe beside a user's
    # pyplot session.
    from matplotlib.figure import Figure

    rows = read_metrics(metrics_path)
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
    (ax_sft, ax_acc), (ax_steps, ax_rew) = axes
    steps, loss = _series(rows, "sft", "loss")
    if len(steps):
        ax_sft.plot(steps, loss, "-", color="C0", label="SFT loss (train batches)")
    ax_sft.set_title("SFT warm start")
    ax_sft.set_xlabel("SFT step")
    ax_sft.set_yscale("log")
    for ax, key, title in (
        (ax_acc, "accuracy", "held-out accuracy (greedy)"),
        (ax_steps, "mean_steps", "held-out mean reasoning steps"),
    ):
        for phase, style, label in (("curve", ".-", "fixed subset"), ("eval", "o", "full set")):
            s, v = _series(rows, phase, key)
            if len(s):
                ax.plot(s, v, style, label=label, markersize=8 if phase == "eval" else 5)
        ax.set_title(title)
        ax.set_xlabel("global step (SFT steps, then RL iterations)")
    for i, key in enumerate(("reward_mean",) + PARTS):
        s, v = _series(rows, "rl", key)
        if len(s) and (key == "reward_mean" or np.any(v != 0)):
            label = "total" if key == "reward_mean" else key
            ax_rew.plot(
                s, _ema(v), "-", color=f"C{i}", lw=2.5 if key == "reward_mean" else 1.5, label=label
            )
            ax_rew.plot(s, v, ".", color=f"C{i}", alpha=0.3)
    ax_rew.set_title("rollout reward by part (window mean, EMA line)")
    ax_rew.set_xlabel("global step")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png
