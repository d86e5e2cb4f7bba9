"""Reused host memory for XLA:CPU programs: no fresh pages at every step.

Each run of a compiled program on the CPU allocates its temporaries as one block and
frees it at the end; the embedded default's SFT step needs 233 MB of them. glibc's
`malloc` serves a block that large with a fresh `mmap` and unmaps it on `free`, so at
every step the kernel maps and zero-fills ~60,000 new pages: during the default run's
SFT phase a quarter of the CPU time was spent in the kernel (47 million page faults in
a 505 s run). Keeping the block instead takes two settings:

- the program runs on the thread that calls it (`jax_cpu_enable_async_dispatch` off),
  whose allocations come from glibc's main heap: a worker thread's heap is at most
  64 MB, and a block larger than that is mapped afresh whatever the settings;
- the main heap never maps blocks of its own (`M_MMAP_MAX` 0) and keeps up to 2 GB of
  freed memory at its top for the next step (`M_TRIM_THRESHOLD`).

The programs and their results are unchanged (same executables; the default run's
`metrics.jsonl` is identical bit for bit); its SFT phase took 106 s instead of 146 s
(`BENCHMARKS.md`). Applied by `r1jax-train`, `r1jax-eval` and `experiments/continual.py`
(`--reuse_cpu_buffers`, default on) when JAX computes on one CPU device in one process,
on Linux with glibc; never on accelerators, where host memory is not the step's memory
and a checkpoint's host copy should go back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from r1jax import cpu_threads

__all__ = ["FLAG_HELP", "glibc", "reuse_cpu_buffers"]

# The `--reuse_cpu_buffers` flag's help, for every command that has the flag.
FLAG_HELP = (
    "On one CPU device: run each program on the calling thread and keep its freed buffers "
    "for the next step (glibc's heap), instead of mapping fresh pages at every step (the "
    "default run's SFT phase: 106 s instead of 146 s). Same results; no effect on accelerators."
)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int


def glibc() -> bool:
    """True on Linux with glibc, whose allocator these settings are for."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def reuse_cpu_buffers(enable: bool = True) -> str:
    """Keeps the CPU programs' buffers between steps (module doc). Call it before JAX's
    backend starts (the first `jax.devices()`, array or jitted call) and after
    `r1jax.distributed.initialize`. Returns what was done, for the log: "on", or "off:"
    and why (disabled, several fake devices or processes, an accelerator, the backend
    already started, not glibc)."""
    if not enable:
        return "off: --reuse_cpu_buffers=false"
    if cpu_threads.forced_host_devices() > 1:
        # the fake devices' collectives rely on asynchronous launches (`cpu_threads`)
        return "off: several fake CPU devices"
    from r1jax import distributed

    if distributed.is_multi_process():
        return "off: a multi-process job"
    import jax

    platforms = (jax.config.jax_platforms or "").strip().lower()  # set from $JAX_PLATFORMS
    if platforms and not platforms.startswith("cpu"):
        return f"off: JAX platforms {platforms!r}"
    if not glibc():
        return "off: not Linux with glibc"
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return "off: JAX's backend had already started"
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if jax.default_backend() != "cpu":  # an accelerator: its CPU client is idle
        return f"off: the backend is {jax.default_backend()}"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1
    return "on" if ok else "off: glibc refused mallopt"
