"""Shared fixtures. Tests run on the CPU; multi-device tests start a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX is imported."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile far more than they compute (tiny models, a few steps): LLVM without its
# optimisation passes compiles XLA's CPU programs 25-35% faster (same_passes_test 35 ->
# 22 s, the mesh runs 53 -> 40 s, the continual smoke 96 -> 83 s). Subprocesses inherit
# it through `r1jax._testing.xla_env`. Unset by giving XLA_FLAGS your own level.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
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
