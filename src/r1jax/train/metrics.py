"""Metric sinks: `metrics.jsonl`, TensorBoard events and a PNG plot.

On resume the JSONL file is cut back to the restored step, so the file reads as if the
run had never stopped. Each JSONL row is `{"step", "phase", ...scalars}`.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else None


class MetricsWriter:
    """`enabled=False` (every process but 0 of a multi-host run) writes nothing; `write`
    still returns the row."""

    def __init__(self, workdir: str, resume_step: int | None = None, enabled: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        if resume_step is None:
            open(self.path, "w").close()
        else:
            self._truncate(resume_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

    def _truncate(self, step: int):
        rows = read_metrics(self.path) if os.path.exists(self.path) else []
        keep = [r for r in rows if r["step"] <= step]
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


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(metrics_path: str, out_png: str) -> str:
    """Reward and accuracy over steps (RL rollouts and held-out evaluations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for phase, style in (("rl", "-"), ("eval", "o-")):
        sel = [r for r in rows if r["phase"] == phase]
        if not sel:
            continue
        steps = np.array([r["step"] for r in sel])
        for ax, key in ((axes[0], "reward_mean"), (axes[1], "accuracy")):
            vals = [r.get(key) for r in sel]
            if any(v is not None for v in vals):
                ax.plot(
                    steps, [np.nan if v is None else v for v in vals], style, label=f"{phase} {key}"
                )
    for ax, title in ((axes[0], "reward (RL rollouts)"), (axes[1], "accuracy")):
        ax.set_xlabel("global step (SFT steps, then RL iterations)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
