"""Command lines refused up front: a --workdir or --output the OS will not let r1jax create
(the OS's reason named, before anything is compiled), and an r1jax-eval decode longer
than the model holds (--max_new_tokens, --max_prompt_len: before anything is loaded)."""

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
    `fields` changed): the length checks read nothing else."""
    c = get_config("smoke")
    for k, v in fields.items():
        c[k] = v
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2))
    return str(path)


def test_eval_refuses_more_new_tokens_than_the_run_was_trained_on(tmp_path):
    """A run's model trained from scratch knows max_prompt_len + max_new_tokens positions:
    a longer decode (100000 tokens ran for over ten minutes) is one line naming the flag,
    the limit and a valid value, exit 2, before the checkpoint is read; a pretrained run's
    limit is its checkpoint's max_position_embeddings (the run's copy in hf/)."""
    run = _run_dir(tmp_path / "run", max_prompt_len=160, max_new_tokens=96)
    hf_run = _run_dir(tmp_path / "hf_run", max_prompt_len=100, pretrained="/gone")
    os.makedirs(os.path.join(hf_run, "hf"))
    with open(os.path.join(hf_run, "hf", "config.json"), "w") as f:
        json.dump({"model_type": "qwen2", "max_position_embeddings": 300}, f)
    cases = [
        ([f"--workdir={run}", "--max_new_tokens=100000"], "--max_new_tokens=100000", 96),
        ([f"--workdir={run}", "--max_new_tokens=97"], "--max_new_tokens=97", 96),
        ([f"--workdir={hf_run}", "--max_new_tokens=201"], "--max_new_tokens=201", 200),
    ]
    results = cli_forked("eval_entry", [a for a, _, _ in cases], env=ENV)
    for (args, flag, valid), r in zip(cases, results):
        line = _one_error_line(r)
        assert line.startswith(f"error: {flag} is too long: "), line
        assert f"pass --max_new_tokens={valid} or less" in line, line
        assert "positions" in line
    # Zero and negative lengths are refused too; the valid maximum is not.
    with pytest.raises(ConfigError, match="max_new_tokens must be an integer >= 1"):
        checkpoint_eval.evaluate_workdir(run, max_new_tokens=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint_eval.evaluate_workdir(run, max_new_tokens=96)


def test_eval_hf_refuses_a_decode_past_max_position_embeddings(tmp_path, monkeypatch):
    """--hf_checkpoint: prompt length + new tokens must fit config.json's
    max_position_embeddings, checked before the weights load (the checkpoint here has no
    weights); the prompt length is --max_prompt_len, else the longest prompt's (rounded
    up to 64 tokens where that fits). The value the message offers is accepted."""
    import re

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

    def ev(**kw):
        return checkpoint_eval.evaluate_hf(ckpt, "gsm8k", {"path": data}, k=0, **kw)

    with pytest.raises(ConfigError, match=rf"=5000 is too long: .* {limit} positions") as e:
        ev(max_new_tokens=5000)
    prompt, valid = map(
        int, re.search(r"take (\d+); pass max_new_tokens=(\d+) or", str(e.value)).groups()
    )
    assert prompt + valid == limit and 0 < prompt < limit
    with pytest.raises(AssertionError, match="weights were loaded"):
        ev(max_new_tokens=valid)  # the offered value fits: the evaluation goes on
    with pytest.raises(ConfigError, match=r"=300 is too long: .*take 250; pass max_new_tokens=50 "):
        ev(max_new_tokens=300, max_prompt_len=250)
    with pytest.raises(ConfigError, match=f"max_prompt_len={limit} leaves no room"):
        ev(max_new_tokens=1, max_prompt_len=limit)
    r = _cli("eval_entry", f"--hf_checkpoint={ckpt}", f"--data_dir={data}", "--max_new_tokens=9999")
    line = _one_error_line(r)
    assert line.startswith(
        f"error: --max_new_tokens=9999 is too long: the checkpoint holds {limit}"
    )
    assert f"the prompts take {prompt}; pass --max_new_tokens={valid} or less" in line


def test_a_write_error_mid_run_says_whether_a_rerun_resumes(tmp_path):
    """r1jax-train's message for an OSError mid-run promises a resume only when a
    checkpoint exists to resume from."""
    from r1jax.main import _resume_note

    assert "starts from the beginning" in _resume_note(str(tmp_path / "none"))
    os.makedirs(tmp_path / "checkpoints" / "rl")
    assert "starts from the beginning" in _resume_note(str(tmp_path))
    os.makedirs(tmp_path / "checkpoints" / "sft" / "6")
    assert "resumes from its newest complete checkpoint" in _resume_note(str(tmp_path))
