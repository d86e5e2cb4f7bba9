"""Metric sinks load only what they use: TensorBoard events without torch (tensorboardX
tries to import it), the plot without pyplot; a torch the process already has is kept."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from r1jax.train.metrics import MetricsWriter, plot_metrics, read_metrics

ROWS = [
    (1, "sft", {"loss": 2.5}),
    (2, "sft", {"loss": 2.0}),
    (3, "rl", {"reward_mean": 0.25, "correctness": 0.5, "loss": 0.1}),
    (3, "curve", {"accuracy": 0.5, "mean_steps": 2.0}),
    (4, "rl", {"reward_mean": 0.5, "correctness": 0.75, "loss": float("nan")}),
    (4, "eval", {"accuracy": 0.75, "mean_steps": 1.5}),
]


def _events(workdir) -> bytes:
    d = os.path.join(workdir, "tensorboard")
    (name,) = os.listdir(d)
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def test_a_run_logs_and_plots_without_torch_or_pyplot(tmp_path):
    pytest.importorskip("torch")  # installed: tensorboardX would import it
    code = textwrap.dedent(f"""
        import json, sys
        from r1jax.train.metrics import MetricsWriter, plot_metrics
        w = MetricsWriter({str(tmp_path)!r})
        for step, phase, scalars in json.loads({json.dumps(ROWS)!r}):
            w.write(step, phase, scalars)
        w.close()
        plot_metrics({str(tmp_path / "metrics.jsonl")!r}, {str(tmp_path / "plot.png")!r})
        loaded = [m for m in ("torch", "matplotlib.pyplot") if m in sys.modules]
        import torch  # still importable afterwards
        print(json.dumps({{"loaded": loaded, "torch": torch.__version__}}))
    """)
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["torch"]
    events = _events(tmp_path)
    for tag in (
        b"sft/loss",
        b"rl/reward_mean",
        b"rl/correctness",
        b"curve/accuracy",
        b"eval/mean_steps",
    ):
        assert tag in events, tag
    assert b"rl/loss" in events  # step 3's value; step 4's NaN is left out
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["phase"]) for r in rows] == [(s, p) for s, p, _ in ROWS]
    assert rows[4]["loss"] is None
    png = (tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_the_writer_works_beside_a_loaded_torch(tmp_path):
    torch = pytest.importorskip("torch")
    w = MetricsWriter(str(tmp_path))
    w.write(1, "sft", {"loss": 1.5})
    w.close()
    assert sys.modules["torch"] is torch  # left alone
    assert b"sft/loss" in _events(tmp_path)
    assert plot_metrics(str(tmp_path / "metrics.jsonl"), str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 10_000
