"""The persistent compilation cache: where it goes, that a second process loads what the
first compiled, and the command-line flag (issue: speed, "compile once")."""

import json
import os
import subprocess
import sys

import pytest

from r1jax import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Compiles one program with the cache at argv[1]; prints the cache hits and misses.
PROBE = """
import json, sys
import jax, jax.numpy as jnp
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
from r1jax import compile_cache
print(json.dumps({"dir": compile_cache.enable(sys.argv[1])}))
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0) * 3.0)
f(jnp.ones((48, 48))).block_until_ready()
count = lambda k: sum(e == "/jax/compilation_cache/" + k for e in events)
print(json.dumps({"hits": count("cache_hits"), "misses": count("cache_misses")}))
"""


def _probe(cache: str) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-c", PROBE, cache],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    return {**lines[0], **lines[1]}


def test_resolve_flag_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = compile_cache.resolve(None)
    assert os.path.dirname(default) == str(tmp_path / "xdg" / "r1jax" / "jax")
    assert default == compile_cache.default_dir()  # stable on one machine
    assert os.path.basename(default).startswith("jax-")  # keyed by the JAX build and CPU
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve(None) == str(tmp_path / "env")
    assert compile_cache.resolve(str(tmp_path / "flag")) == str(tmp_path / "flag")
    for off in ("off", "", "none", "OFF"):
        assert compile_cache.resolve(off) is None
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve(None) is None
    assert compile_cache.resolve(str(tmp_path / "flag")) == str(tmp_path / "flag")  # flag wins


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    cache = str(tmp_path / "cache")
    cold = _probe(cache)
    assert cold["dir"] == cache and cold["hits"] == 0 and cold["misses"] >= 1
    assert os.listdir(cache), "nothing was written to the cache"
    warm = _probe(cache)
    assert warm["hits"] >= 1 and warm["misses"] == 0
    off = _probe("off")
    assert off["dir"] is None and off["hits"] == 0


@pytest.mark.parametrize("entry", ["train_entry", "eval_entry"])
def test_an_unwritable_cache_folder_exits_2_naming_the_flag(entry, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = f"import sys; from r1jax.main import {entry}; {entry}(['prog', *sys.argv[1:]])"
    args = [f"--compile_cache={blocker / 'cache'}", f"--workdir={tmp_path / 'run'}"]
    if entry == "train_entry":
        args.append("--config=" + os.path.join(ROOT, "experiments", "arith_tiny.py") + ":smoke")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--compile_cache=" in r.stderr and "off" in r.stderr
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


def test_a_training_run_caches_the_rl_iteration_and_a_second_compiles_nothing(tmp_path):
    """The RL iteration runs as two programs without host callbacks (`train.split_rl`),
    which JAX writes to the persistent cache (it never writes a program with an
    `io_callback`): after one smoke run the cache holds the rollout and the learner, and a
    second run in a new work directory loads every program it needs (no new entry)."""
    cache = tmp_path / "cache"
    code = "import sys; from r1jax.main import train_entry; train_entry(['prog', *sys.argv[1:]])"
    env = dict(os.environ, JAX_PLATFORMS="cpu")

    def train(workdir):
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "--config=" + os.path.join(ROOT, "experiments", "arith_tiny.py") + ":smoke",
                f"--workdir={tmp_path / workdir}",
                f"--compile_cache={cache}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return sorted(os.listdir(cache))

    first = train("a")
    names = {e.split("-")[0] for e in first}
    assert {"jit_rollout", "jit_learn", "jit_sft_step"} <= names, names
    assert train("b") == first
