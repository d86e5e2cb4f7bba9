"""Fake CPU devices get two XLA:CPU client threads each (`r1jax.cpu_threads`), and the
pmap path's `unreplicate` is one program for a whole tree."""

import os
import subprocess
import sys
import textwrap

import pytest

from r1jax import cpu_threads
from r1jax._testing import xla_env

F = "--xla_force_host_platform_device_count"


@pytest.mark.parametrize(
    "env, n",
    [
        ({}, 1),
        ({"XLA_FLAGS": "--xla_backend_optimization_level=0"}, 1),
        ({"XLA_FLAGS": f"{F}=8"}, 8),
        ({"XLA_FLAGS": f"{F}=2 --xla_cpu_foo=1 {F}=4"}, 4),  # the last one wins
        ({"JAX_NUM_CPU_DEVICES": "6"}, 6),
        ({"XLA_FLAGS": f"{F}=2", "JAX_NUM_CPU_DEVICES": "3"}, 3),
    ],
)
def test_forced_host_devices(env, n):
    assert cpu_threads.forced_host_devices(env) == n


def test_pool_env_sets_two_threads_per_fake_device_unless_told_otherwise():
    cores = os.cpu_count() or 1
    assert cpu_threads.pool_env({"XLA_FLAGS": f"{F}=8"})["NPROC"] == str(max(cores, 16))
    assert "NPROC" not in cpu_threads.pool_env({})  # one device: XLA's own default
    assert "NPROC" not in cpu_threads.pool_env({"XLA_FLAGS": f"{F}=1"})
    assert cpu_threads.pool_env({"XLA_FLAGS": f"{F}=8", "NPROC": "3"})["NPROC"] == "3"
    env = {"XLA_FLAGS": f"{F}=64"}
    assert cpu_threads.pool_env(env) is env and env["NPROC"] == str(max(cores, 128))
    assert int(xla_env(devices=8, env={})["NPROC"]) >= 16
    assert "NPROC" not in xla_env(env={})


SCRIPT = textwrap.dedent("""
    import json, os, jax, numpy as np
    from r1jax.train import pmap
    devices = jax.devices()
    tree = {f"w{i}": np.full((3, i + 1), i, np.float32) for i in range(40)}
    rep = pmap.replicate(tree, devices)
    first = pmap.unreplicate(rep)
    same = all(np.array_equal(np.asarray(first[k]), tree[k]) for k in tree)
    threads = [open(f"/proc/self/task/{t}/comm").read().strip()
               for t in os.listdir("/proc/self/task")]
    print(json.dumps({"devices": len(devices), "same": same,
                      "programs": pmap._first._cache_size(),
                      "xla_threads": threads.count("tf_XLAEigen")}))
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_subprocess_with_8_fake_devices_gets_the_threads_and_one_unreplicate_program(
    tmp_path,
):
    # XLA reads NPROC when it creates the CPU client: its intra-op pool (named
    # tf_XLAEigen) has max(cores, 16) threads instead of max(cores, 8). A jaxlib that
    # stopped reading NPROC fails here, and the pmap tests could hang again.
    script = tmp_path / "threads.py"
    script.write_text(SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script)],
        env=xla_env(devices=8),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8 and out["same"] is True
    assert out["programs"] == 1  # 40 leaves, one compiled (and one launched) program
    assert out["xla_threads"] >= 16
