"""Shared fixtures. Tests run on the CPU; multi-device tests start a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX is imported."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile far more than they compute (tiny models, a few steps): LLVM without its
# optimisation passes compiles XLA's CPU programs 25-35% faster (same_passes_test 35 ->
# 22 s, the mesh runs 53 -> 40 s, the continual smoke 96 -> 83 s). Subprocesses inherit
# it through `r1jax._testing.xla_env`. Unset by giving XLA_FLAGS your own value of a flag.
# The same goes for XLA:CPU's newer MLIR fusion emitters: the legacy elemental emitters
# compile the smoke config's SFT step, rollout and learner in 2.7 s instead of 6.3 s
# (AMD EPYC, AVX2), and the 8-device pmap check of `tests/train/pmap_test.py` [ppo_extras]
# runs in 53 s instead of 67 s. Both are test-suite settings only: the trainer keeps
# XLA's defaults. Only where the tests run on the CPU: `benchmarks/device_check.sh` runs
# the attention test on a GPU (JAX_PLATFORMS=""), whose jaxlib may not know a CPU flag
# (XLA aborts on an unknown one) and should not compile at -O0.
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
for _flag in _FAST_COMPILE if os.environ["JAX_PLATFORMS"] == "cpu" else ():
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
# All compilation in one test run shares one persistent compilation cache, in the temp
# folder (never ~/.cache): in-process tests, test subprocesses and the CLI runs (JAX reads
# JAX_COMPILATION_CACHE_DIR at import; the CLI's --compile_cache default reads
# R1JAX_COMPILE_CACHE). Tests build the same small programs many times (the smoke
# config's SFT step, rollout and learner, decoders); a later build loads the first one's
# executable instead of compiling it (bit-identical: the same executable), as a user's
# resumed run does. tests/train without the multi-device files: 325 -> 238 s. Shared by
# the xdist workers of one run, removed at its end. R1JAX_TEST_CACHE=0 turns it off
# (the tests that test the cache use their own folders).
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
_CACHE = os.path.join(tempfile.gettempdir(), f"r1jax-test-jax-cache-{_RUN_ID}")
if os.environ.get("R1JAX_TEST_CACHE", "1") != "0":
    os.environ.setdefault("R1JAX_COMPILE_CACHE", _CACHE)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    # tiny helper programs (under 0.2 s to compile) are compiled, not written
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def pytest_sessionfinish(session):
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # the controller, after the workers
        shutil.rmtree(_CACHE, ignore_errors=True)


# `python -m pytest -n 2` hands whole files to the two workers (`--dist loadfile` in
# pyproject.toml: a module's fixtures, e.g. the mesh runs, are built once), in
# collection order (`--no-loadscope-reorder`). The longest files go first, so the two
# workers end together instead of one waiting on a long file picked up last. Seconds
# summed over each file's tests (`--durations=0`, 2026-12-05, 2-core AMD EPYC, -n 2):
# pmap 223, continual 185, failure_paths 164, mesh 142, multiprocess 132, precision 128;
# a file not listed runs after these, in collection order.
_LONGEST_FIRST = (
    "train/pmap_test.py",
    "train/continual_test.py",
    "failure_paths_test.py",
    "train/mesh_test.py",
    "train/multiprocess_test.py",
    "train/precision_test.py",
    "main_test.py",
    "train/pretrained_test.py",
    "sampling_test.py",
    "train/loop_test.py",
    "logit_chunk_test.py",
    "compile_cache_test.py",
    "custom_task_test.py",
    "train/rl_step_test.py",
    "train/split_rl_test.py",
    "train/reward_shard_test.py",
    "models/progressive_test.py",
    "train/same_passes_test.py",
    "models/attention_impl_test.py",
    "models/transformer_test.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path.removeprefix("tests/"), len(rank))

    items.sort(key=key)  # stable: a file's tests keep their order
