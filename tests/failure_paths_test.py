"""Failure paths: bad input is one clear line and exit 2, a refused command never changes a
run, unreadable checkpoints fall back, saves are atomic, a full disk is reported."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from r1jax._testing import cli_forked
from r1jax.checkpoint import Checkpointer, restore_readable
from r1jax.configs.arith_tiny import get_config
from r1jax.errors import ConfigError, RunError
from r1jax.train.loop import train
from r1jax.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "experiments", "arith_tiny.py") + ":smoke"
GSM8K_CONFIG = os.path.join(ROOT, "src", "r1jax", "configs", "gsm8k_qwen.py")
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
FIX_WORDS = ("must", "pass ", "drop", "did you mean", "set ", "give", "free space", "raise")


def _cli(fn: str, *args, prelude: str = "", timeout: int = 300):
    code = f"{prelude}\nimport sys\nfrom r1jax.main import {fn}\n{fn}(['prog', *sys.argv[1:]])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def _cli_forked(fn: str, arg_lists, timeout: int = 900):
    """`_cli(fn, *args)` for each of `arg_lists`, run by forks of one parent."""
    return cli_forked(fn, arg_lists, env=ENV, timeout=timeout)


def _digest(path) -> str:
    """Every file's relative path and bytes (logs aside): equal digests, equal workdirs."""
    h = hashlib.sha256()
    for d, dirs, names in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".log"):
                continue
            p = os.path.join(d, name)
            h.update(os.path.relpath(p, path).encode() + b"\0")
            with open(p, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k != "iter_seconds"} for r in rows]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished smoke run made by the command line, one for all xdist workers of this
    session (no test changes it: the refusals leave it byte-identical)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir = shared / "failure_paths_finished_run"
    with FileLock(str(workdir) + ".lock"):
        if not (workdir / "summary.json").exists():
            r = _cli("train_entry", f"--config={SMOKE}", f"--workdir={workdir}")
            assert r.returncode == 0, r.stderr[-3000:]
    return str(workdir)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    return lines[0]


def _bad_inputs(tmp):
    """(flags, the words the first line must contain) of bad command lines."""
    afile = tmp / "afile"
    afile.write_text("x")
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's")
    foreign_cfg = tmp / "foreign_cfg"
    foreign_cfg.mkdir()
    (foreign_cfg / "config.json").write_text('{"model_type": "qwen2"}')
    broken = tmp / "broken.py"
    broken.write_text("def get_config(:\n")
    field_cases = [
        ("rl.weight_decay=-5", "--config.rl.weight_decay"),
        ("seed=-1", "--config.seed"),
        ("seed=1.5", "--config.seed"),
        ("rl.iterations=0", "--config.rl.iterations"),
        ("rl.iterations=abc", "--config.rl.iterations"),
        ("sft.steps=-1", "--config.sft.steps"),
        ("sft.rows=0", "--config.sft.rows"),
        ("sft.warmup=-1", "--config.sft.warmup"),
        ("rl.warmup=-2", "--config.rl.warmup"),
        ("sft.lr=0", "--config.sft.lr"),
        ("rl.policy_lr=-1e-4", "--config.rl.policy_lr"),
        ("rl.gamma=1.5", "--config.rl.gamma"),
        ("rl.lam=-0.1", "--config.rl.lam"),
        ("rl.temperature=0", "--config.rl.temperature"),
        ("rl.eps_low=2", "--config.rl.eps_low"),
        ("rl.top_entropy_q=0", "--config.rl.top_entropy_q"),
        ("rl.num_minibatches=7", "--config.rl.num_minibatches"),
        ("rl.length_buckets=0", "--config.rl.length_buckets"),
        ("rl.logp_chunk=-1", "--config.rl.logp_chunk"),
        ("rl.group_size=0", "--config.rl.group_size"),
        ("reward.dense_mix=2", "--config.reward.dense_mix"),
        ("reward.noise_std=-0.1", "--config.reward.noise_std"),
        ("reward.perturb_prob=1.5", "--config.reward.perturb_prob"),
        ("reward.deadline_s=0", "--config.reward.deadline_s"),
        ("reward.num_workers=-1", "--config.reward.num_workers"),
        ("eval.num_problems=0", "--config.eval.num_problems"),
        ("eval.every=-1", "--config.eval.every"),
        ("log_every=0", "--config.log_every"),
        ("checkpoint_every=0", "--config.checkpoint_every"),
        ("keep_checkpoints=0", "--config.keep_checkpoints"),
        ("model.d_model=0", "--config.model.d_model"),
        ("mesh.data=-2", "--config.mesh.data"),
        ("lora.rank=-1", "--config.lora.rank"),
        ("max_new_tokens=10", "max_new_tokens"),
        ("rl.algo=sac", "--config.rl.algo"),
        ("rl.kl_estimator=k9", "--config.rl.kl_estimator"),
        ("model.dtype=int8", "--config.model.dtype"),
        ("parallelism=xla", "--config.parallelism"),
        ("reward.verify_where=local", "--config.reward.verify_where"),
        ("rl.adaptive_clip=maybe", "--config.rl.adaptive_clip"),
        ("rl.itrations=3", "--config.rl.itrations"),
        ("no_such=1", "--config.no_such"),
        ("rl.level_weights=(1.0,-1.0,0.0)", "rl.level_weights"),
        ("task=nosuch", "--config.task"),
    ]
    cases = [([f"--config.{a}"], needle) for a, needle in field_cases]
    cases += [
        # Options that do nothing under the chosen settings are errors.
        (["--config.rl.algo=grpo", "--config.reward.dense_mix=0.5"], "--config.reward.dense_mix"),
        (["--config.rl.algo=grpo", "--config.reward.step_shaping=0.1"], "step_shaping"),
        (["--config.rl.algo=grpo", "--config.rl.value_lr=0.01"], "--config.rl.value_lr"),
        (["--config.rl.entropy_target=0.5"], "--config.rl.entropy_target"),
        (["--config.rl.adaptive_clip=False", "--config.rl.clip_target=0.01"], "clip_target"),
        (["--config.lora.alpha=32"], "--config.lora.alpha"),
        (["--config.rl.priority_alpha=0.5"], "--config.rl.priority_alpha"),
        # Ranges that depend on another field.
        (["--config.rl.adaptive_entropy=True", "--config.rl.entropy_lr=0"], "rl.entropy_lr"),
        (["--config.rl.adaptive_kl=True", "--config.rl.kl_target=0"], "rl.kl_target"),
        (["--config.reward.step_shaping=0.3", "--config.rl.gamma=0.9"], "step_shaping"),
        # Flags and config files.
        (["--no_such_flag=1"], "no_such_flag"),
        (["--config=/no/such/file.py"], "--config=/no/such/file.py"),
        ([f"--config={tmp}"], "--config="),
        ([f"--config={broken}"], "--config="),
        ([f"--config={SMOKE[:-6]}:bogus"], "bogus"),
        ([f"--config={GSM8K_CONFIG}"], "pretrained"),
        # Workdirs.
        ([f"--workdir={afile}/sub"], "--workdir"),
        ([f"--workdir={afile}"], "--workdir"),
        ([f"--workdir={foreign}"], "--workdir"),
        ([f"--workdir={foreign_cfg}"], "--workdir"),
        (["--workdir=/proc/r1jax-cannot-be-here"], "--workdir"),
    ]
    return cases


def test_every_bad_input_is_one_clear_line_and_exit_2(tmp_path):
    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 40

    def command(i, args):
        workdir = (
            [f"--workdir={tmp_path / f'w{i}'}"] if not any("--workdir" in a for a in args) else []
        )
        config = [] if any(a.startswith("--config=") for a in args) else [f"--config={SMOKE}"]
        return [*config, *workdir, *args]

    results = _cli_forked("train_entry", [command(i, a) for i, (a, _) in enumerate(cases)])
    problems = []
    for i, ((args, needle), r) in enumerate(zip(cases, results)):
        line = _error_line(r.stderr) if r.stderr.strip() else ""
        if r.returncode != 2:
            problems.append(f"{args}: exit {r.returncode}")
        if "Traceback" in r.stderr:
            problems.append(f"{args}: printed a traceback")
        if not line.startswith("error: ") or needle not in line:
            problems.append(f"{args}: first line {line!r} does not name {needle!r}")
        if not any(w in line for w in FIX_WORDS):
            problems.append(f"{args}: first line {line!r} names no fix")
        if os.path.exists(tmp_path / f"w{i}"):
            problems.append(f"{args}: the workdir was created")
    assert not problems, "\n".join(problems)


def test_debug_shows_the_traceback(tmp_path):
    r = _cli("train_entry", f"--workdir={tmp_path / 'w'}", "--config.rl.gamma=2", "--debug")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and "error: --config.rl.gamma=2" in r.stderr


REFUSED_RESUMES = [
    ["--config.rl.algo=grpo"],  # drops the critic
    ["--config.seed=1"],  # same shapes, another run
    ["--config.rl.policy_lr=1e-3"],
    ["--config.model.d_model=48", "--config.model.head_dim=24"],
    ["--config.rl.weight_decay=-5"],  # invalid on its own
    ["--config.rl.algo=grpo", "--config.reward.dense_mix=0.5"],
]


@pytest.fixture(scope="module")
def refused_resumes(finished_run, tmp_path_factory):
    """Each of REFUSED_RESUMES on its own copy of the finished run (forks of one parent,
    `_cli_forked`): [(digest before, result, digest after)]."""
    import shutil

    base = tmp_path_factory.mktemp("refused")
    runs = [str(base / f"run{i}") for i in range(len(REFUSED_RESUMES))]
    for run in runs:
        shutil.copytree(finished_run, run)
    before = [_digest(run) for run in runs]
    results = _cli_forked(
        "train_entry",
        [
            [f"--config={SMOKE}", f"--workdir={run}", *args]
            for run, args in zip(runs, REFUSED_RESUMES)
        ],
    )
    return [(b, r, _digest(run)) for b, r, run in zip(before, results, runs)]


@pytest.mark.parametrize("i", range(len(REFUSED_RESUMES)))
def test_a_refused_resume_leaves_the_run_byte_identical(refused_resumes, i):
    before, r, after = refused_resumes[i]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    line = _error_line(r.stderr)
    assert line.startswith("error: --config.") and any(w in line for w in FIX_WORDS), line
    assert after == before


def test_eval_still_works_after_a_refused_resume(finished_run):
    r = _cli("train_entry", f"--config={SMOKE}", f"--workdir={finished_run}", "--config.seed=3")
    assert r.returncode == 2
    r = _cli("eval_entry", f"--workdir={finished_run}")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.load(open(os.path.join(finished_run, "summary.json")))
    assert json.loads(r.stdout)["accuracy"] == summary["rl"]["accuracy"]


def _largest_file(path) -> str:
    files = [os.path.join(d, n) for d, _, names in os.walk(path) for n in names]
    return max(files, key=os.path.getsize)


def _damage(kind: str, step_dir: str):
    if kind == "truncated":
        victim = _largest_file(os.path.join(step_dir, "state"))
        with open(victim, "r+b") as f:
            f.truncate(100)
    elif kind == "corrupt_bytes":  # an array's data file, the same size, bytes flipped
        victim = _largest_file(os.path.join(step_dir, "state", "ocdbt.process_0", "d"))
        with open(victim, "r+b") as f:
            data = bytearray(f.read())
            n = len(data)
            data[n // 4 : n // 4 + n // 2] = bytes(b ^ 0x5A for b in data[n // 4 : n // 4 + n // 2])
            f.seek(0)
            f.write(data)
    elif kind == "missing_item":
        import shutil

        shutil.rmtree(os.path.join(step_dir, "meta"))
    elif kind == "wrong_shapes":  # a checkpoint of another model under this step
        import shutil

        other = os.path.join(os.path.dirname(step_dir), "other")
        ck = Checkpointer(other)
        ck.save("rl", 1, {"w": np.zeros((3, 5), np.float32)}, {"step": 0})
        ck.close()
        shutil.rmtree(os.path.join(step_dir, "state"))
        shutil.move(os.path.join(other, "checkpoints", "rl", "1", "state"), step_dir)
        shutil.rmtree(other)
        os.remove(os.path.join(step_dir, "r1jax_files.json"))


def test_an_unreadable_newest_checkpoint_falls_back_and_the_run_ends_as_if_intact(
    finished_run, tmp_path, caplog
):
    """Stopped after the first RL checkpoint (step 8), that one truncated: the resume says
    so, sets it aside, restarts from the SFT checkpoint and ends with the metrics and
    summary of the uninterrupted run."""
    c = get_config("smoke")
    workdir = str(tmp_path / "run")
    stop = c.sft.steps + c.checkpoint_every + 1
    assert train(get_config("smoke"), workdir, stop_after=stop) == {}
    _damage("truncated", os.path.join(workdir, "checkpoints", "rl", "8"))
    with caplog.at_level("WARNING", logger="r1jax"):
        summary = train(get_config("smoke"), workdir)
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and "rl/8" in said[0] and "100 bytes" in said[0], said
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "unreadable", "rl-8"))  # kept
    a = _strip_timing(read_metrics(os.path.join(finished_run, "metrics.jsonl")))
    b = _strip_timing(read_metrics(os.path.join(workdir, "metrics.jsonl")))
    assert a == b
    ref = json.load(open(os.path.join(finished_run, "summary.json")))
    strip = lambda s: {k: v for k, v in s.items() if k != "wall_seconds"}
    assert strip(summary) == strip(ref)


@pytest.mark.parametrize("kind", ["truncated", "corrupt_bytes", "missing_item", "wrong_shapes"])
def test_restore_falls_back_past_each_kind_of_damage(tmp_path, kind, caplog):
    abstract = {"w": jax.ShapeDtypeStruct((64, 32), np.float32)}
    # Random values (constant ones compress to a few bytes: no data file to damage).
    w = {
        s: np.random.default_rng(s).standard_normal((64, 32)).astype(np.float32) for s in (1, 2, 3)
    }
    ck = Checkpointer(str(tmp_path / "run"), keep=3)
    for step in (1, 2, 3):
        ck.save("rl", step, {"w": w[step]}, {"step": step})
    ck.close()
    _damage(kind, str(tmp_path / "run" / "checkpoints" / "rl" / "3"))
    ck = Checkpointer(str(tmp_path / "run"), keep=3)
    with caplog.at_level("WARNING", logger="r1jax"):
        phase, step, (state, meta) = restore_readable(ck, lambda ph, s: ck.restore(ph, s, abstract))
    assert (phase, step, meta["step"]) == ("rl", 2, 2)
    np.testing.assert_array_equal(np.asarray(state["w"]), w[2])
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and "rl/3" in said[0]
    assert "TensorStore(" not in said[0] and "bound method" not in said[0], said[0]
    assert ck.steps("rl") == [1, 2]  # the bad one is out of Orbax's sight ...
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "unreadable" / "rl-3")  # ... kept
    ck.save("rl", 3, {"w": np.full((64, 32), 3, np.float32)}, {"step": 3})  # saved anew
    assert restore_readable(ck, lambda ph, s: ck.restore(ph, s, abstract))[1] == 3
    ck.close()


def test_a_read_error_is_one_clause_without_the_tensorstore_dump():
    """Orbax's error for a damaged array file (seen through the trainer's restore) ends in
    a repr of the TensorStore spec; the warning keeps the clause before it."""
    from r1jax.checkpoint import _reason

    e = Exception(
        "Encountered error while reading array index: (slice(0, 32, 1), slice(0, 16, 1)). "
        "See full TensorStore details: <bound method pybind11_detail_function_record_v1_"
        "system_libstdcpp_gxx_abi_1xxx_use_cxx11_abi_1.spec of TensorStore({\n"
        "  'context': {'cache_pool': {}},\n  'driver': 'zarr3',"
    )
    assert _reason(e) == (
        "Exception: Encountered error while reading array index: (slice(0, 32, 1), slice(0, 16, 1))"
    )


def test_eval_falls_back_and_names_the_step_it_evaluated(tmp_path):
    c = get_config("smoke")
    workdir = str(tmp_path / "run")
    assert train(c, workdir, stop_after=c.sft.steps + c.checkpoint_every) == {}
    _damage("truncated", os.path.join(workdir, "checkpoints", "rl", "8"))
    before = _digest(workdir)
    r = _cli("eval_entry", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "checkpoint rl/8" in r.stderr and "cannot be read" in r.stderr
    assert "evaluating the sft checkpoint at step 6" in r.stderr
    assert json.loads(r.stdout)["step"] == c.sft.steps
    assert _digest(workdir) == before  # evaluation moves nothing
    r = _cli("eval_entry", f"--workdir={workdir}", "--step=8")
    assert r.returncode == 2 and "cannot be read" in _error_line(r.stderr)
    assert "Traceback" not in r.stderr


def test_no_readable_checkpoint_is_one_line_and_moves_nothing(tmp_path):
    c = get_config("smoke")
    workdir = str(tmp_path / "run")
    assert train(c, workdir, stop_after=c.sft.steps) == {}
    _damage("truncated", os.path.join(workdir, "checkpoints", "sft", str(c.sft.steps)))
    before = _digest(workdir)
    r = _cli("train_entry", f"--config={SMOKE}", f"--workdir={workdir}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")][0]
    assert "no checkpoint" in line and "can be read" in line and "--workdir" in line
    assert _digest(workdir) == before


_SAVER = """
import sys
import numpy as np
from r1jax.checkpoint import Checkpointer
ck = Checkpointer(sys.argv[1], keep=2)
start = (ck.latest("rl") or 0) + 1
for step in range(start, start + 10000):
    state = {"w": np.full((512, 1024), step, np.float32), "b": np.full((7,), step, np.int32)}
    ck.save("rl", step, state, {"step": step})
    print(step, flush=True)
"""


def test_a_kill_at_a_random_point_of_a_save_leaves_the_previous_checkpoint_usable(tmp_path):
    rng = random.Random(0)
    workdir = str(tmp_path / "run")
    abstract = {
        "w": jax.ShapeDtypeStruct((512, 1024), np.float32),
        "b": jax.ShapeDtypeStruct((7,), np.int32),
    }
    last_seen = 0
    for _ in range(5):
        p = subprocess.Popen(
            [sys.executable, "-c", _SAVER, workdir], stdout=subprocess.PIPE, text=True, env=ENV
        )
        first = p.stdout.readline()  # one save complete
        assert first.strip(), "the saver did not save"
        time.sleep(rng.uniform(0.0, 0.4))  # then somewhere inside a later save
        p.send_signal(signal.SIGKILL)
        out = first + p.stdout.read()
        p.wait()
        done = [int(x) for x in out.split()]
        ck = Checkpointer(workdir)
        try:
            found = restore_readable(ck, lambda ph, s: ck.restore(ph, s, abstract))
        finally:
            ck.close()
        phase, step, (state, meta) = found
        assert phase == "rl" and step >= max(done) and step > last_seen
        assert meta["step"] == step
        assert np.all(np.asarray(state["w"]) == step) and np.all(np.asarray(state["b"]) == step)
        last_seen = step


_FULL_DISK = """
import shutil
_real = shutil.disk_usage
_calls = [0]
def _disk_usage(path):
    _calls[0] += 1
    u = _real(path)
    return u if _calls[0] == 1 else type(u)(u.total, u.total - 4096, 4096)
shutil.disk_usage = _disk_usage  # free space runs out after the SFT checkpoint
"""


def test_a_full_disk_at_save_time_is_one_line_and_the_rerun_resumes(finished_run, tmp_path):
    workdir = str(tmp_path / "run")
    r = _cli("train_entry", f"--config={SMOKE}", f"--workdir={workdir}", prelude=_FULL_DISK)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")][0]
    assert "free space" in line and "rl checkpoint at step 8" in line and "sft/6" in line
    assert os.listdir(os.path.join(workdir, "checkpoints", "rl")) == []  # nothing half-written
    r = _cli("train_entry", f"--config={SMOKE}", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr[-2000:]
    a = _strip_timing(read_metrics(os.path.join(finished_run, "metrics.jsonl")))
    b = _strip_timing(read_metrics(os.path.join(workdir, "metrics.jsonl")))
    assert a == b


def test_a_failing_save_is_a_run_error_naming_the_intact_checkpoint(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    ck = Checkpointer(str(tmp_path))
    ck.save("rl", 1, {"w": np.ones(3, np.float32)}, {})

    def fail(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", fail)
    with pytest.raises(RunError, match=r"rl checkpoint at step 2 .* No space left.* rl/1"):
        ck.save("rl", 2, {"w": np.ones(3, np.float32)}, {})
    ck.close()


def test_rerunning_a_finished_run_changes_neither_metrics_nor_summary(finished_run, tmp_path):
    """The same command again on a finished run: it resumes at the last checkpoint and
    evaluates again; metrics.jsonl holds that final evaluation once, as before."""
    import shutil

    run = tmp_path / "again"
    shutil.copytree(finished_run, run)
    before = _strip_timing(read_metrics(os.path.join(finished_run, "metrics.jsonl")))
    summary = train(get_config("smoke"), str(run))
    after = _strip_timing(read_metrics(str(run / "metrics.jsonl")))
    assert after == before and sum(r["phase"] == "eval" for r in after) == 2
    with open(os.path.join(finished_run, "summary.json")) as f:
        ref = json.load(f)
    strip = lambda s: {k: v for k, v in s.items() if k != "wall_seconds"}
    assert strip(summary) == strip(ref)


def test_checkpoints_without_their_config_json_are_not_resumed(finished_run, tmp_path):
    """A run whose config.json is gone is refused (it would resume under this command's
    settings, a new seed included), and nothing in it changes."""
    import shutil

    run = tmp_path / "nocfg"
    shutil.copytree(finished_run, run)
    os.remove(run / "config.json")
    before = _digest(str(run))
    changed = get_config("smoke")
    changed.seed = 7
    with pytest.raises(ConfigError, match=r"holds checkpoints \(sft/6, rl/8, rl/10\) but no"):
        train(changed, str(run))
    assert _digest(str(run)) == before


def test_a_run_written_by_an_older_version_resumes_and_evaluates(finished_run, tmp_path):
    """Fields an older version wrote into config.json (and this one lacks) are ignored:
    neither a resume nor r1jax-eval refuses the run for them."""
    import shutil

    from r1jax import config as config_lib
    from r1jax.train.loop import check_resume

    run = tmp_path / "old"
    shutil.copytree(finished_run, run)
    cfg = json.load(open(run / "config.json"))
    cfg["retired_option"] = 1
    cfg["rl"]["retired_knob"] = 0.5
    (run / "config.json").write_text(json.dumps(cfg))
    check_resume(config_lib.complete(get_config("smoke")), str(run))  # no ConfigError
    with pytest.raises(ConfigError, match="rl.policy_lr"):
        changed = get_config("smoke")
        changed.rl.policy_lr = 1e-3
        check_resume(config_lib.complete(changed), str(run))
    r = _cli("eval_entry", f"--workdir={run}")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.load(open(run / "summary.json"))
    assert json.loads(r.stdout)["accuracy"] == summary["rl"]["accuracy"]
