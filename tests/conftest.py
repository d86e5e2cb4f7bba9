"""Shared fixtures. Tests run on the CPU; multi-device tests start a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX is imported."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
