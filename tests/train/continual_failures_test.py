"""`experiments/continual.py` when something fails mid-run (a full disk while writing a
cell, the results or a heat map; a checkpoint that cannot be saved; Ctrl-C): one `error:`
line saying what failed and that a rerun continues, no traceback, nothing half-written;
and a gs:// workdir refused before anything is made. The training is replaced by a fake
(`run_method` returns a fixed R at once), so each command takes seconds."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "continual.py")

# The experiment's script with its training replaced (`run_method`, `pretrain_base`) and a
# failure injected where FAIL says: "cell" / "results" (json.dump writes part of the
# file, then the disk is full), "heatmap" (the PNG likewise), "save" (the cell's
# checkpoint cannot be saved: a RunError), "ctrl_c" (KeyboardInterrupt while training).
_FAKE = """
import errno, json, os, runpy, sys
import r1jax.train.continual as cont
from r1jax.errors import RunError

FAIL = os.environ["FAIL"]
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

def pretrain_base(c, seed):
    return None

def run_method(c, method, seed, *, base=None, ckpt_dir=None, **kw):
    if FAIL == "save":
        raise RunError("saving the rl checkpoint at step 3 under X failed (disk full)")
    if FAIL == "ctrl_c":
        raise KeyboardInterrupt
    if FAIL == "pipe":
        raise BrokenPipeError(errno.EPIPE, "a reward worker's pipe broke")
    n = len(c.domains)
    R = [[0.5] * n for _ in range(n)]
    return {"R": R, "params": 7, "stored_floats": 7, "seconds": 0.1, **cont.forgetting_metrics(R)}

cont.pretrain_base, cont.run_method = pretrain_base, run_method
_dump = json.dump

def dump(obj, f, **kw):
    is_cell = "R" in obj  # a cell's result (continual.json holds R per method)
    if (FAIL == "cell" and is_cell) or (FAIL == "results" and not is_cell):
        f.write('{"partial": ')
        f.flush()
        raise DISK_FULL
    return _dump(obj, f, **kw)

json.dump = dump
if FAIL == "heatmap":
    from matplotlib.figure import Figure

    def savefig(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"\\x89PNG partial")
        raise DISK_FULL

    Figure.savefig = savefig
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(fail: str, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", _FAKE, SCRIPT, *args],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu", FAIL=fail),
        cwd=cwd,
        timeout=300,
    )


def _error_line(r, code: int) -> str:
    log_line = re.compile(r"[IWEF]\d{4} ")  # absl's log prefix
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not log_line.match(ln)]
    assert r.returncode == code and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


def _files(w) -> list:
    return sorted(os.path.relpath(os.path.join(d, n), w) for d, _, ns in os.walk(w) for n in ns)


@pytest.mark.parametrize(
    "fail, what, kept",
    [
        ("cell", "writing {w}/cells/naive-seed0-", []),
        ("results", "writing {w}/continual.json failed", ["cells/naive-seed0-"]),
        ("heatmap", "writing {w}/R_naive.png failed", ["cells/naive-seed0-", "continual.json"]),
    ],
)
def test_a_full_disk_mid_run_is_one_line_and_nothing_half_written(tmp_path, fail, what, kept):
    """ENOSPC in the middle of writing a file: exit 1, one line naming the file, the OS's
    reason and the fix, saying that a rerun reuses the finished cells; the file is
    either absent or complete (no partial or temporary file), and the rerun finishes."""
    w = tmp_path / "w"
    r = _run(fail, f"--workdir={w}", "--smoke", "--methods=naive")
    line = _error_line(r, 1)
    assert line.startswith(f"error: --workdir={w}: ") and what.format(w=w) in line, line
    assert "No space left on device" in line and "free space" in line, line
    assert "rerun the same command" in line and "finished cells are reused" in line, line
    files = _files(w)
    assert len(files) == len(kept) and all(f.startswith(k) for f, k in zip(files, kept)), files
    for f in files:
        if f.endswith(".json"):
            json.loads((w / f).read_text())  # complete
    r = _run("none", f"--workdir={w}", "--smoke", "--methods=naive")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {"continual.json", "R_naive.png"} <= set(os.listdir(w))


@pytest.mark.parametrize(
    "fail, code, words",
    [
        ("save", 1, ["computing the cell", "failed: saving the rl checkpoint", "disk full"]),
        ("ctrl_c", 130, ["interrupted while computing the cell", "rerun the same command"]),
    ],
)
def test_a_failed_checkpoint_or_ctrl_c_is_one_line(tmp_path, fail, code, words):
    w = tmp_path / "w"
    line = _error_line(_run(fail, f"--workdir={w}", "--smoke", "--methods=naive"), code)
    assert line.startswith("error: "), line
    assert all(x in line for x in words), line
    assert not (w / "continual.json").exists() and os.listdir(w / "cells") == []


def test_an_error_that_is_no_disk_problem_keeps_its_traceback(tmp_path):
    """Only what free space or permissions can mend becomes the one-line message; a
    broken pipe (an OSError too) is a bug or a crash to read, not "free space"."""
    r = _run("pipe", f"--workdir={tmp_path / 'w'}", "--smoke", "--methods=naive")
    assert r.returncode == 1 and "Traceback" in r.stderr, r.stderr[-3000:]
    assert "BrokenPipeError" in r.stderr and "free space" not in r.stderr


def test_a_gs_workdir_is_refused_before_anything_is_made(tmp_path):
    """The script writes through the local file system (as r1jax-train does): a gs://
    workdir would become a local folder `gs:`; refused with exit 2, --plan too."""
    for extra in ("--smoke", "--plan"):
        r = subprocess.run(
            [sys.executable, SCRIPT, "--workdir=gs://bucket/cl", extra],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        line = _error_line(r, 2)
        assert "--workdir=gs://bucket/cl: URLs are not supported" in line, line
        assert "pass a local directory" in line and r.stdout == ""
    assert os.listdir(tmp_path) == []


def test_plan_writes_no_probe_entry(tmp_path):
    """`--plan` only reads: for a workdir that does not exist yet it lists every cell as
    pending without making (even briefly) the writability probe entry a run makes."""
    code = (
        "import runpy, sys, tempfile\n"
        "def probe(*a, **k):\n"
        "    raise SystemExit('a probe entry was written')\n"
        "tempfile.mkdtemp = tempfile.mkstemp = probe\n"
        "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    new = tmp_path / "new" / "cl"
    args = [sys.executable, "-c", code, SCRIPT, f"--workdir={new}", "--smoke", "--plan"]
    r = subprocess.run(args, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pending" in r.stdout and "done" not in r.stdout, r.stdout
    assert os.listdir(tmp_path) == []
    # Without --plan the same command probes (so the stub above is what a run meets).
    r = subprocess.run(
        args[:-1] + ["--methods=naive"], check=False, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1 and "a probe entry was written" in r.stderr, r.stderr[-3000:]
