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
# The CLI runs of the tests (r1jax-train / r1jax-eval in subprocesses: resume, failure
# paths, two processes) share one persistent compilation cache for this test run, in the
# temp folder (never ~/.cache): a rerun of the same config loads its programs instead of
# compiling them again, as a user's resumed run does. Shared by the xdist workers of one
# run, removed at its end. In-process tests compile from scratch (the cache is only
# turned on by the CLI entry points; compile_cache_test tests it in its own folders).
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
_CACHE = os.path.join(tempfile.gettempdir(), f"r1jax-test-jax-cache-{_RUN_ID}")
os.environ.setdefault("R1JAX_COMPILE_CACHE", _CACHE)


def pytest_sessionfinish(session):
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # the controller, after the workers
        shutil.rmtree(_CACHE, ignore_errors=True)
