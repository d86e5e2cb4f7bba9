"""Shared fixtures. Tests run on the CPU; multi-device tests start a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX is imported."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile far more than they compute (tiny models, a few steps): LLVM without its
# optimisation passes compiles XLA's CPU programs 25-35% faster (same_passes_test 35 ->
# 22 s, the mesh runs 53 -> 40 s, the continual smoke 96 -> 83 s). Subprocesses inherit
# it through `r1jax._testing.xla_env`. Unset by giving XLA_FLAGS your own level.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
# Tests compile from scratch and write nothing under ~/.cache (compile_cache_test turns the
# persistent compilation cache on where it tests it).
os.environ.setdefault("R1JAX_COMPILE_CACHE", "off")
