"""Command lines refused up front: a --workdir or --output the OS will not let r1jax create
(the OS's reason named, before anything is compiled); r1jax-eval's decode lengths."""

import json
import os
import subprocess
import sys

import pytest

from r1jax import checkpoint_eval
from r1jax._testing import cli_forked, gsm8k_tokenizer, write_gsm8k, write_tokenizer
from r1jax.configs.arith_tiny import get_config
from r1jax.errors import ConfigError

ENV = dict(os.environ, JAX_PLATFORMS="cpu")
NO_ENTRY = "/proc/r1jax-cannot-be-here"  # nothing can be made in /proc, root or not

# The trainer and the evaluation replaced by failures: a command line that gets past its
# checks fails loudly instead of training, restoring or evaluating.
_NOTHING_RUNS = """
import r1jax.train.loop as loop, r1jax.checkpoint_eval as ce
def _ran(*a, **k): raise AssertionError("ran past the command-line checks")
loop.train = ce.evaluate = ce.load_pretrained = ce.restored_run = _ran
"""


def _cli(fn: str, *args):
    code = (
        f"{_NOTHING_RUNS}\nimport sys\nfrom r1jax.main import {fn}\n{fn}(['prog', *sys.argv[1:]])"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def _one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: ") and "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "fn, args, flag",
    [
        ("train_entry", [f"--workdir={NO_ENTRY}"], f"--workdir={NO_ENTRY}"),
        ("train_entry", [f"--workdir={NO_ENTRY}/sub/run"], f"--workdir={NO_ENTRY}/sub/run"),
        ("eval_entry", ["--workdir=/nonexistent", f"--output={NO_ENTRY}.json"], "--output="),
    ],
)
def test_a_path_that_cannot_be_created_names_the_os_reason_and_the_fix(fn, args, flag):
    """/proc refuses new entries even to root (whom `os.access` lets through): one line
    that says the path cannot be created, why (the OS's words), and what to pass instead,
    exit 2, before the trainer or the evaluation starts; nothing about free space or
    resuming (there is no run)."""
    line = _one_error_line(_cli(fn, *args))
    assert f"{flag}" in line and " cannot be created: /proc refuses new entries (" in line, line
    reason = line.split("refuses new entries (", 1)[1].split(")", 1)[0]
    assert reason in (os.strerror(2), os.strerror(13), os.strerror(1), os.strerror(30)), line
    assert f"pass a {flag.split('=')[0]} in a directory this user can write" in line
    assert "free space" not in line and "resume" not in line


def test_a_url_workdir_is_refused_without_making_a_local_folder(tmp_path):
    """r1jax writes config, metrics and results through the local file system: a gs://
    workdir would become a local folder `gs:`; refused with the fix, nothing made."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{_NOTHING_RUNS}\nfrom r1jax.main import train_entry\n"
            + "train_entry(['prog', '--workdir=gs://bucket/run'])",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        cwd=tmp_path,
    )
    line = _one_error_line(r)
    assert "--workdir=gs://bucket/run: URLs are not supported" in line
    assert "pass a local directory" in line and "gcsfuse" in line
    assert os.listdir(tmp_path) == []


def _run_dir(path, **fields) -> str:
    """A workdir holding only an r1jax-train config.json (the arith_tiny smoke config,
    `fields` changed)."""
    c = get_config("smoke")
    for k, v in fields.items():
        c[k] = v
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2))
    return str(path)


def test_eval_decodes_past_the_trained_length_when_asked(tmp_path):
    """RoPE models compute any position: a run evaluated with more new tokens than it was
    trained with (to see whether cut-off solutions would finish) gets past the checks
    (review finding: a length limit refused it, exit 2); 0 is still refused."""
    run = _run_dir(tmp_path / "run", max_prompt_len=160, max_new_tokens=96)
    r = _cli("eval_entry", f"--workdir={run}", "--max_new_tokens=128")
    assert "ran past the command-line checks" in r.stderr, r.stderr[-2000:]
    line = _one_error_line(_cli("eval_entry", f"--workdir={run}", "--max_new_tokens=0"))
    assert line == "error: --max_new_tokens must be an integer >= 1, got 0", line


def test_eval_hf_warns_past_max_position_embeddings(tmp_path, monkeypatch, caplog):
    """--hf_checkpoint: a decode past config.json's max_position_embeddings (longest real
    prompt + new tokens; left padding takes no position) is warned about, naming a length
    that fits, and goes on; one that fits is not."""
    import logging

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    limit = 300
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": limit})
    )
    write_tokenizer(gsm8k_tokenizer(), ckpt)
    data = write_gsm8k(tmp_path / "gsm8k")

    def no_weights(*a, **k):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(checkpoint_eval, "load_pretrained", no_weights)

    def warnings_of(**kw):
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, logger="r1jax"),
            pytest.raises(AssertionError, match="weights were loaded"),
        ):
            checkpoint_eval.evaluate_hf(ckpt, "gsm8k", {"path": data}, k=0, **kw)
        return [
            r.getMessage() for r in caplog.records if "max_position_embeddings" in r.getMessage()
        ]

    (warning,) = warnings_of(max_new_tokens=5000)
    assert f"max_position_embeddings ({limit})" in warning
    fits = int(warning.rsplit("--max_new_tokens=", 1)[1].split()[0])
    assert 0 < fits < limit
    assert warnings_of(max_new_tokens=fits) == []
    assert len(warnings_of(max_new_tokens=fits + 1)) == 1


def test_a_write_error_mid_run_says_whether_a_rerun_resumes(tmp_path):
    """r1jax-train's message for an OSError mid-run promises a resume only when a
    checkpoint exists to resume from."""
    from r1jax.main import _resume_note

    assert "starts from the beginning" in _resume_note(str(tmp_path / "none"))
    os.makedirs(tmp_path / "checkpoints" / "rl")
    assert "starts from the beginning" in _resume_note(str(tmp_path))
    os.makedirs(tmp_path / "checkpoints" / "sft" / "6")
    assert "resumes from its newest complete checkpoint" in _resume_note(str(tmp_path))


def test_a_full_disk_is_no_bad_command_line(tmp_path, monkeypatch):
    """The probe entry cannot be made because the disk is full: not refused as a bad
    --workdir (exit 2, "pass another directory" would abandon a resume); the run starts
    and its write error says to free space and rerun (review finding)."""
    import errno
    import tempfile

    from r1jax import cli_errors

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    run = tmp_path / "run"
    run.mkdir()
    cli_errors.check_workdir(str(run))  # no ConfigError

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(ConfigError, match="nothing can be written in it"):
        cli_errors.check_workdir(str(run))


def test_a_probe_that_cannot_be_removed_is_no_refusal(tmp_path, monkeypatch):
    """An append-only directory lets the probe be made but not removed: the directory is
    usable, so it is not refused (review finding: it was, naming "Operation not
    permitted" as if nothing could be made)."""
    from r1jax import cli_errors

    def no_remove(path):
        raise PermissionError(1, os.strerror(1), path)

    monkeypatch.setattr(os, "rmdir", no_remove)
    assert cli_errors.check_can_create(str(tmp_path / "new"), "--workdir=x", "directory") == str(
        tmp_path
    )


@pytest.mark.parametrize("fn", ["train_entry", "eval_entry"])
def test_help_lists_the_flags_every_error_points_to(fn, tmp_path):
    """An unknown flag's error says "use a flag --helpfull lists": --help and --helpfull
    exist (they did not: `--helpfull` was itself an unknown flag, exit 2), print the
    program's usage and flags on stdout, exit 0, and run nothing."""
    bogus = _one_error_line(_cli(fn, "--bogus"))
    assert "use a flag --helpfull lists" in bogus, bogus
    short = _cli(fn, "--help", f"--workdir={tmp_path / 'w'}")
    assert short.returncode == 0 and short.stderr == "", short.stderr[-2000:]
    prog = fn.split("_")[0]
    assert short.stdout.startswith(f"usage: r1jax-{prog} ")
    assert "--workdir:" in short.stdout and "--compile_cache:" in short.stdout
    assert "--verbosity" not in short.stdout and "--helpfull lists more" in short.stdout
    assert _cli(fn, "-h").stdout == short.stdout
    value = _cli(fn, "--output" if fn == "eval_entry" else "--config", "-h")
    assert value.returncode == 2 and "usage:" not in value.stdout  # -h is the flag's value
    full = _cli(fn, "--helpfull")
    assert full.returncode == 0 and "--verbosity" in full.stdout, full.stderr[-2000:]
    if fn == "train_entry":  # every config field, task arguments one by one
        assert "--config.rl.iterations=" in full.stdout
        assert "--config.task_kwargs.max_operand=12" in full.stdout
        assert "--[no]compile_only:" in short.stdout
    else:
        assert "--hf_checkpoint:" in short.stdout and "--config." not in full.stdout
    assert not os.path.exists(tmp_path / "w")


def test_an_override_that_switches_a_feature_off_resets_the_files_settings_of_it(tmp_path):
    """`--config.eval.curve_every=0` on a config file that sets eval.curve_problems was
    refused ("curve_problems does nothing here", a field the user never gave); now the
    file's value is reset to the default with a note and the config validates. An unused
    option the user gives, or one unused in the file itself, is still refused."""
    validated = (  # the trainer replaced by its first steps: validating, the resume check
        "import r1jax.train.loop as loop, r1jax.config as config_lib\n"
        "def _validate(c, workdir):\n"
        "    config_lib.validate(c)\n"
        "    loop.check_resume(config_lib.complete(c), workdir)\n"
        "    e = c.eval\n"
        "    raise SystemExit(f'validated: {e.curve_problems} {e.num_problems} {c.lora.alpha}')\n"
        "loop.train = _validate\n"
        "import sys\nfrom r1jax.main import train_entry\ntrain_entry(['prog', *sys.argv[1:]])"
    )

    def train(*args):
        cmd = [sys.executable, "-c", validated, f"--workdir={tmp_path / 'w'}", *args]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, env=ENV)

    smoke = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "arith_tiny.py")
    r = train(f"--config={smoke}:smoke", "--config.seed=3", "--config.eval.curve_every=0")
    assert "validated: 128 " in r.stderr, r.stderr[-2000:]
    (note,) = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert note.startswith("note: with --config.eval.curve_every=0 the config file's ")
    assert "eval.curve_problems=4 (now 128)" in note and "seed" not in note, note
    # Review: a field linked by a FieldReference keeps its value (only the unused one is
    # reset), and an int-typed section takes the default's float (was a TypeError).
    linked = tmp_path / "linked.py"
    linked.write_text(
        "import ml_collections\n"
        "from r1jax.configs.arith_tiny import get_config as base\n"
        "def get_config(arg=''):\n"
        "    c = base('smoke')\n"
        "    n = ml_collections.FieldReference(64)\n"
        "    c.eval.num_problems = c.eval.curve_problems = n\n"
        "    c.lora = ml_collections.ConfigDict(dict(rank=8, alpha=32))\n"
        "    return c\n"
    )
    r = train(f"--config={linked}", "--config.eval.curve_every=0", "--config.lora.rank=0")
    assert "validated: 128 64 16.0" in r.stderr, r.stderr[-2000:]
    # A resume with a switched-off feature names the user's change, not only the fields
    # reset because of it (review: the refusal named reward.dense_mix alone).
    ppo = tmp_path / "ppo.py"
    ppo.write_text(
        "from r1jax.configs.arith_tiny import get_config as base\n"
        "def get_config(arg=''):\n"
        "    c = base('smoke')\n"
        "    c.reward.dense_mix = 0.5\n"
        "    return c\n"
    )
    from r1jax.config import complete
    from r1jax.configs.arith_tiny import get_config as base_config

    run = tmp_path / "w"
    run.mkdir()
    saved = base_config("smoke")
    saved.reward.dense_mix = 0.5
    (run / "config.json").write_text(complete(saved).to_json_best_effort())
    r = train(f"--config={ppo}", "--config.rl.algo=grpo")
    line = r.stderr.strip().splitlines()[-1]  # after the note
    assert r.returncode == 2 and line.startswith("error: "), r.stderr
    assert "config.rl.algo='grpo'" in line and "differ from the run" in line, r.stderr
    assert "config.reward.dense_mix=0.0" in line, line
    (run / "config.json").unlink()
    run.rmdir()
    r = train(
        f"--config={smoke}:smoke", "--config.eval.curve_every=0", "--config.eval.curve_problems=8"
    )
    assert "--config.eval.curve_problems=8 does nothing here" in _one_error_line(r)
    inconsistent = tmp_path / "cfg.py"
    inconsistent.write_text(
        "from r1jax.configs.arith_tiny import get_config as base\n"
        "def get_config(arg=''):\n"
        "    c = base('smoke')\n"
        "    c.eval.curve_every, c.eval.curve_problems = 0, 4\n"
        "    return c\n"
    )
    r = train(f"--config={inconsistent}", "--config.rl.iterations=3")
    assert "config.eval.curve_problems=4 does nothing here" in _one_error_line(r)
    assert not os.path.exists(tmp_path / "w")


# The trainer replaced by its first steps (validation, the resume check); prints the task.
_VALIDATED = """
import json, sys
import r1jax.train.loop as loop, r1jax.config as config_lib
def _validate(c, workdir):
    config_lib.validate(c)
    loop.check_resume(config_lib.complete(c), workdir)
    print("validated:", json.dumps(dict(c.task_kwargs)), c.task_module)
    raise SystemExit(0)
loop.train = _validate
from r1jax.main import train_entry
train_entry(['prog', *sys.argv[1:]])
"""
SMOKE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "arith_tiny.py")


def _validated(*args, cwd=None):
    """`(task_kwargs, task_module, stderr)` the trainer would run with, or the failed
    process."""
    r = subprocess.run(
        [sys.executable, "-c", _VALIDATED, *args],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        cwd=cwd,
    )
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("validated:")] or [None]
    if line is None:
        return r
    kwargs, _, module = line[len("validated: ") :].partition("} ")
    return json.loads(kwargs + "}"), module.strip(), r.stderr


def test_task_kwargs_of_the_task_switched_to_can_be_given(tmp_path):
    """`--config.task=gsm8k` says `set --config.task_kwargs.path=DIR`, which was refused
    ("not among the config file's task_kwargs", audit): config_flags only overrides the
    file's fields. Now any argument the task takes works, typed (a path string, a
    float); the file's own arguments the task refuses (arithmetic's
    solution_style='plain') are dropped with a note; a name the task does not take is one
    line naming the task's arguments."""
    data = write_gsm8k(tmp_path / "gsm8k", files=("train.jsonl", "test.jsonl"))
    w = f"--workdir={tmp_path / 'w'}"
    smoke = f"--config={SMOKE}:smoke"
    kwargs, _, err = _validated(
        w, smoke, "--config.task=gsm8k", f"--config.task_kwargs.path={data}"
    )
    assert kwargs == {"path": data}, err
    assert "refuses the config file's task_kwargs solution_style='plain': dropped" in err
    kwargs, _, _ = _validated(
        w, smoke, "--config.task=fractions", "--config.task_kwargs.distractor_prob=0.25"
    )
    assert kwargs == {"distractor_prob": 0.25, "test_fraction": 0.1}
    kwargs, _, _ = _validated(w, "--config.task_kwargs.wide_level1=true")  # not in the file
    assert kwargs["wide_level1"] is True and kwargs["max_operand"] == 12
    line = _one_error_line(
        _validated(w, smoke, "--config.task=gsm8k", f"--config.task_kwargs.pth={data}")
    )
    assert "--config.task_kwargs.pth is not among the arguments of task 'gsm8k'" in line
    assert "did you mean --config.task_kwargs.path?" in line and "train_file" in line
    assert not os.path.exists(tmp_path / "w")


def test_a_relative_task_module_is_stored_absolute(tmp_path):
    """`--config.task_module=sum_task.py` was stored as written, so `r1jax-eval --workdir`
    from any other directory could not import it (audit). The trainer stores a file's
    absolute path (dotted module names stay); a run that stored it relative resumes."""
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.path.dirname(SMOKE), "sum_task.py")) as f:
        (src / "sum_task.py").write_text(f.read())
    args = [f"--workdir={tmp_path / 'w'}", f"--config={SMOKE}:smoke", "--config.task=sum"]
    _, module, err = _validated(*args, "--config.task_module=sum_task.py", cwd=src)
    assert os.path.isabs(module), err
    assert os.path.realpath(module) == os.path.realpath(src / "sum_task.py")
    _run_dir(tmp_path / "w", task="sum", task_module="sum_task.py", task_kwargs={})
    _, module, err = _validated(*args, "--config.task_module=sum_task.py", cwd=src)
    assert os.path.isabs(module), err  # the resume check lets the path change
    _, module, err = _validated(
        f"--workdir={tmp_path / 'v'}", "--config.task_module=r1jax.tasks.gsm8k", cwd=src
    )
    assert module == "r1jax.tasks.gsm8k", err


def test_eval_says_where_it_looked_for_a_runs_task_module_file(tmp_path):
    """A run that stored its task module relative (before the trainer stored it
    absolute), evaluated from another directory, or whose file moved: one line saying
    where r1jax-eval looked and how to fix it (audit: the advice could not be acted on)."""
    rel = _run_dir(tmp_path / "rel", task="sum", task_module="sum_task.py", task_kwargs={})
    gone = str(tmp_path / "moved" / "sum_task.py")
    moved = _run_dir(tmp_path / "abs", task="sum", task_module=gone, task_kwargs={})
    r_rel, r_abs = cli_forked("eval_entry", [[f"--workdir={rel}"], [f"--workdir={moved}"]], env=ENV)
    line = _one_error_line(r_rel)
    looked = os.path.abspath("sum_task.py")  # the current directory's: not the run's
    assert f"task module file 'sum_task.py' was not found (looked for {looked})" in line
    assert "run r1jax-eval from the directory the run was trained in" in line
    assert f"set task_module in {rel}/config.json" in line
    line = _one_error_line(r_abs)
    assert f"(looked for {gone}): put the file back there" in line


_ONE_QUESTION = """
import contextlib, sys
import r1jax.checkpoint_eval as ce
from r1jax.configs.arith_tiny import get_config
from r1jax.tasks import Problem

class OneQuestion:  # a task with a single test problem
    name = "one_question"
    level_weights = (1.0,)
    def sample(self, rng, level, split):
        return Problem("What is 2+2?", "4", "2+2=4\\n#### 4", 1, 1)

class Run:
    c, task = get_config("smoke"), OneQuestion()

@contextlib.contextmanager
def restored(workdir, step=None, edit_config=None):
    yield Run(), None, "rl", 1

ce.restored_run = restored
from r1jax.main import eval_entry
eval_entry(['prog', *sys.argv[1:]])
"""


def test_eval_asking_for_more_problems_than_the_task_has_is_one_line(tmp_path):
    """`r1jax-eval --num_problems=1000` on a task with fewer distinct held-out problems
    was a traceback (audit): now one line naming --num_problems, exit 2."""
    r = subprocess.run(
        [sys.executable, "-c", _ONE_QUESTION, f"--workdir={tmp_path}", "--num_problems=5"],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    line = _one_error_line(r)
    assert line.startswith("error: --num_problems=5: ") and "only 1 distinct held-out" in line
