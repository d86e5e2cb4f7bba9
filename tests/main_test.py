"""Command lines: bad flags and bad config values exit with code 2 and a clear message."""

import json
import os
import subprocess
import sys

import pytest

from r1jax._testing import cli_forked, xla_env

ENV = dict(os.environ, JAX_PLATFORMS="cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module_fn, *args, cwd=None):
    code = f"import sys; from r1jax.main import {module_fn}; {module_fn}(['prog', *sys.argv[1:]])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
    )


BAD_INPUTS = [
    (["--no_such_flag=1"], "no_such_flag"),
    (["--config.rl.algo=sac"], "rl.algo"),
    (["--config.rl.num_minibatches=7"], "rl.num_minibatches"),
    (["--config.sft.lr=-1"], "sft.lr"),
    (["--config.rl.no_such_field=1"], "no_such_field"),
    (["--config=/no/such/file.py"], "config"),
    (["--config.max_new_tokens=10"], "max_new_tokens"),
    (["--config.rl.level_weights=(1.0,-1.0,0.0)"], "level_weights"),
    (["--config.reward.dense_mix=2"], "reward.dense_mix"),
    (["--config.reward.noise_std=-0.1"], "reward.noise_std"),
    (["--config.reward.step_shaping=0.3", "--config.rl.gamma=0.9"], "step_shaping"),
    (["--config.task_kwargs.max_operan=5"], "did you mean --config.task_kwargs.max_operand?"),
    (["--config.task_kwargs.nonexist=3"], "--config.task_kwargs.nonexist is not among"),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """`r1jax-train` on each bad command line of BAD_INPUTS (the embedded default config),
    each in a fork of one parent that imported JAX once (`_testing.cli_forked`)."""
    base = tmp_path_factory.mktemp("bad_inputs")
    cmds = [[f"--workdir={base / f'w{i}'}", *args] for i, (args, _) in enumerate(BAD_INPUTS)]
    return base, cli_forked("train_entry", cmds, env=ENV)


@pytest.mark.parametrize("i", range(len(BAD_INPUTS)), ids=[n for _, n in BAD_INPUTS])
def test_train_rejects_bad_input_with_exit_2(bad_input_runs, i):
    base, runs = bad_input_runs
    needle, r = BAD_INPUTS[i][1], runs[i]
    assert r.returncode == 2, r.stderr[-2000:]
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    # Nothing half-written: no checkpoint was started.
    assert not os.path.exists(base / f"w{i}" / "checkpoints")


def test_eval_requires_an_existing_run(tmp_path):
    r = _run("eval_entry")
    assert r.returncode == 2 and "--workdir is required" in r.stderr
    r = _run("eval_entry", f"--workdir={tmp_path}")
    assert r.returncode == 2 and "r1jax-train" in r.stderr
    r = _run("eval_entry", "--step=abc", f"--workdir={tmp_path}")
    assert r.returncode == 2 and "step" in r.stderr


def test_eval_checks_output_before_evaluating(tmp_path):
    """A bad --output is refused in one line before any evaluation (the workdir holds no
    run, so an evaluation would fail with another message), and nothing is written."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, needle in [
        (tmp_path, "is a directory"),
        (afile / "x.json", "is a file, so no file can be made"),
    ]:
        r = _run("eval_entry", f"--workdir={tmp_path / 'nope'}", f"--output={out}")
        assert r.returncode == 2 and needle in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and f"--output={out}" in r.stderr
    assert afile.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["afile"]


def test_an_interrupted_run_says_how_to_resume(tmp_path):
    """Ctrl-C during training: one line that says how to resume, exit code 130 (no
    traceback); the training itself is replaced by one that is interrupted at once."""
    code = (
        "import sys, r1jax.train.loop as loop\n"
        "def train(*a, **k): raise KeyboardInterrupt\n"
        "loop.train = train\n"
        "from r1jax.main import train_entry; train_entry(['prog', *sys.argv[1:]])"
    )
    w = tmp_path / "w"
    r = subprocess.run(
        [sys.executable, "-c", code, f"--workdir={w}"],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert r.returncode == 130, r.stderr[-2000:]
    assert f"interrupted: rerun the same command to resume --workdir={w}" in r.stderr
    assert "Traceback" not in r.stderr


def test_compile_only_reports_memory_for_a_sharded_mesh_and_writes_nothing(tmp_path):
    env = xla_env(devices=8, env=ENV)
    code = "import sys; from r1jax.main import train_entry; train_entry(['prog', *sys.argv[1:]])"
    args = [
        "--config=" + os.path.join(ROOT, "experiments", "arith_tiny.py") + ":smoke",
        "--compile_only",
        f"--workdir={tmp_path / 'w'}",
        "--config.mesh.data=2",
        "--config.mesh.fsdp=2",
        "--config.mesh.tensor=2",
    ]
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["devices"] == 8 and out["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    for step in ("sft_step", "rl_iteration"):
        assert out[step]["peak_bytes_estimate"] > out[step]["argument_bytes"] > 0
    assert not os.path.exists(tmp_path / "w")


def test_compile_only_works_from_shapes_for_a_state_larger_than_this_machine(tmp_path):
    """A ~40B-parameter policy (about 167 GB of state with its optimizer and reference
    copy: seven times this machine's memory) compiles: nothing is allocated or read."""
    args = [
        "--config=" + os.path.join(ROOT, "experiments", "arith_tiny.py") + ":smoke",
        "--compile_only",
        f"--workdir={tmp_path / 'w'}",
        "--config.model.d_model=16384",
        "--config.model.n_heads=128",
        "--config.model.n_kv_heads=8",
        "--config.model.head_dim=128",
        "--config.model.mlp_dim=65536",
        "--config.model.n_layers=2",
    ]
    r = _run("train_entry", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["rl_iteration"]["argument_bytes"] > 100 * 2**30
    assert not os.path.exists(tmp_path / "w")


def test_a_domain_trains_and_evaluates_from_the_command_line(tmp_path):
    """`r1jax-train --config.task=<domain>` on the embedded default's config (the
    arithmetic task_kwargs the domain does not take dropped, with a note) trains it; `r1jax-eval` scores
    the run's checkpoint on that domain's held-out problems, and a task_kwargs the
    domain does take is kept."""
    w = tmp_path / "w"
    r = _run(
        "train_entry",
        f"--workdir={w}",
        "--config=experiments/arith_tiny.py:smoke",
        "--config.task=physics",
        "--config.rl.iterations=1",
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "does not take the config file's task_kwargs" in r.stderr
    saved = json.loads((w / "config.json").read_text())
    # the arithmetic-only arguments are dropped; test_fraction, which physics takes, stays
    assert saved["task"] == "physics" and saved["task_kwargs"] == {"test_fraction": 0.1}
    e = _run("eval_entry", f"--workdir={w}", "--num_problems=4", cwd=ROOT)
    assert e.returncode == 0, e.stderr[-3000:]
    result = json.loads(e.stdout[e.stdout.index("{") :])
    assert result["config"]["task"] == "physics" and result["num_problems"] == 4
    # Arguments the new task takes are the user's: kept, and checked by the task.
    bad = _run(
        "train_entry",
        f"--workdir={tmp_path / 'v'}",
        "--config=experiments/arith_tiny.py:smoke",
        "--config.task=physics",
        "--config.task_kwargs.test_fraction=2.0",
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "test_fraction" in bad.stderr, bad.stderr[-2000:]


@pytest.mark.parametrize(
    "rl_steps, want",
    [(1.89, "33% fewer steps"), (3.5, "25% more steps"), (2.81, "0% fewer steps")],
)
def test_the_summary_line_says_fewer_or_more_steps(rl_steps, want, capsys):
    from r1jax.main import _print_summary

    def row(acc, steps):
        return {"accuracy": acc, "mean_steps": steps, "num_problems": 256}

    _print_summary(
        {"sft": row(0.598, 2.81), "rl": row(0.711, rl_steps), "wall_seconds": 382.0}, "w"
    )
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("RL vs SFT"))
    assert line == f"RL vs SFT: +11.3 accuracy points, {want}, 382 s wall", line
