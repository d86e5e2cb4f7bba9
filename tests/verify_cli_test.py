"""Tests for the `r1jax-verify` command line (r1jax.verify_cli)."""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from r1jax import verify_cli

ROWS = [
    {"prediction": "She makes 9 * 2 = 18.\n#### 18", "reference": "18", "id": 1},
    {"prediction": "The answer is $\\frac{1}{2}$.", "reference": "0.5", "id": 2},
    {"prediction": "\\boxed{2(x+1)}", "reference": "2x+2", "id": 3},
    {"prediction": "A: 19", "reference": "#### 18", "id": 4},
    {"prediction": "no answer", "reference": "7", "id": 5},
]


def _write_jsonl(path, rows, extra_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.writelines(line + "\n" for line in extra_lines)
    return str(path)


def _main(*args):
    return verify_cli.main(["r1jax-verify", *args])


def test_end_to_end_subprocess(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", ROWS, extra_lines=[""])
    out = tmp_path / "out.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "r1jax.verify_cli", f"--input={src}", f"--output={out}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3/5 correct" in r.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [1, 2, 3, 4, 5]
    assert [g["correct"] for g in got] == [True, True, True, False, False]
    assert [g["extracted"] for g in got] == ["18", "\\frac{1}{2}", "2(x+1)", "19", None]
    assert got[0]["prediction"] == ROWS[0]["prediction"]  # input fields kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp


def test_stdin_stdout_and_custom_fields(monkeypatch, capsys):
    import io

    lines = [json.dumps({"completion": "#### 1,200", "gold": "1200"})]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert _main("--input=-", "--prediction_field=completion", "--reference_field=gold") == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0]) == {
        "completion": "#### 1,200",
        "gold": "1200",
        "correct": True,
        "extracted": "1,200",
    }


def test_help(capsys):
    assert _main("--help") == 0
    text = capsys.readouterr().out
    for needle in ("--input", "--output", "--prediction_field", "--reference_field", "JSONL"):
        assert needle in text


def test_console_script_is_registered():
    scripts = metadata.entry_points(group="console_scripts")
    assert any(e.name == "r1jax-verify" and e.value == "r1jax.verify_cli:main" for e in scripts)


@pytest.mark.parametrize(
    "args, lines, needle",
    [
        (["--no_such_flag=1"], None, "no_such_flag"),
        ([], None, "--input is required"),
        (["--input=/no/such/file.jsonl"], None, "cannot read --input"),
        (["extra_positional"], None, "unexpected argument"),
        ([], ['{"prediction": "#### 1", "reference": "1"}', "{not json"], "line 2 is not valid"),
        ([], ["[1, 2]"], "not an object"),
        ([], ['{"pred": "#### 1", "reference": "1"}'], "--prediction_field"),
        (["--reference_field=gold"], ['{"prediction": "1", "reference": "1"}'], "--reference_fi"),
        ([], ['{"prediction": 1, "reference": "1"}'], "expected a string"),
        (["--output=/no/such/dir/out.jsonl"], ['{"prediction": "1", "reference": "1"}'], "--out"),
        (["--task=nope"], ['{"prediction": "1", "reference": "1"}'], "unknown task 'nope'"),
        (["--task=gsm8k"], ['{"prediction": "1", "reference": "1"}'], "--task_kwargs="),
        (
            ["--task=arithmetic", "--task_kwargs=[1]"],
            ['{"prediction": "1", "reference": "1"}'],
            "must be a JSON object",
        ),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(tmp_path, capsys, args, lines, needle):
    out = tmp_path / "out.jsonl"
    argv = list(args)
    if lines is not None:
        argv.append("--input=" + _write_jsonl(tmp_path / "in.jsonl", [], extra_lines=lines))
    if not any(a.startswith("--output") for a in argv):
        argv.append(f"--output={out}")
    with pytest.raises(SystemExit) as e:
        _main(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) in ([], ["in.jsonl"])


def test_task_scores_like_the_trainer(tmp_path, capsys):
    """--task scores with the task's own verifier: the R1 arithmetic task reads
    <answer>, the plain one only '#### N'; the reward parts come along."""
    rows = [
        {"prediction": "<think>\n3*4=12\n</think>\n<answer>12</answer>", "reference": "12"},
        {"prediction": "<think>\n3*4=12\n</think>\n<answer>13</answer>", "reference": "12"},
        {"prediction": "3*4=12\n#### 12", "reference": "12"},
    ]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    kw = '--task_kwargs={"solution_style": "r1"}'
    assert _main(f"--input={src}", f"--output={out}", "--task=arithmetic", kw) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in got] == [True, False, True]
    assert got[0]["extracted"] == "12" and got[0]["reward"]["valid_steps"] == 1
    assert got[0]["reward"]["total"] > got[1]["reward"]["total"]
    assert _main(f"--input={src}", f"--output={out}", "--task=arithmetic") == 0
    plain = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in plain] == [False, False, True]
    assert "2/3 correct" in capsys.readouterr().err


def test_task_module_registers_the_task_it_scores_with(tmp_path):
    """--task_module imports a user's task file (the README's experiments/sum_task.py)."""
    rows = [
        {"prediction": "2+3=5\n5+4=9\n#### 9", "reference": "9"},
        {"prediction": "2+3=5\n5+4=10\n#### 10", "reference": "9"},
    ]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    module = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "sum_task.py")
    assert _main(f"--input={src}", f"--output={out}", "--task=sum", f"--task_module={module}") == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in got] == [True, False]
    assert got[0]["reward"]["total"] > got[1]["reward"]["total"]
