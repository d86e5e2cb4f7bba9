"""Shared fixtures. Tests run on the CPU; multi-device tests start a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX is imported."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile from scratch and write nothing under ~/.cache (compile_cache_test turns the
# persistent compilation cache on where it tests it).
os.environ.setdefault("R1JAX_COMPILE_CACHE", "off")
