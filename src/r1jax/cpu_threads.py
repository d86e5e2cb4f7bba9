"""Enough XLA:CPU client threads for several fake CPU devices (imports no JAX).

With `--xla_force_host_platform_device_count=N` (or `JAX_NUM_CPU_DEVICES=N`), as the
tests and users trying the pmap or mesh paths on one CPU do, XLA's CPU client runs
every device's share of a program on a pool of `max(cores, N)` threads. A program over
several devices is launched by one task per device on that same pool, and a launch
task blocks when its device already has 32 programs in flight. Once a few dozen small
programs are dispatched back to back (say a 94-leaf state unreplicated leaf by leaf), a
blocked launch task can hold the very thread that the program ahead of it needs for
its last device; that program's collective then waits for ever ("Expected 8 threads
to join the rendezvous, but only 7 of them arrived", seen in CI on a 2-core machine:
7 pool threads in an all-reduce, the 8th in `Semaphore::ScopedAcquire`). Only one
launch's tasks can be blocked at a time per dispatching thread, so twice N pool threads
always leave a collective its N. XLA sizes the pool from the `NPROC` environment
variable when it is set (`xla/pjrt/utils.cc`, `DefaultThreadPoolSize`); `pool_env` sets
it before the CPU client exists.
"""

from __future__ import annotations

import os

__all__ = ["forced_host_devices", "pool_env"]

_FLAG = "--xla_force_host_platform_device_count"


def forced_host_devices(env=None) -> int:
    """The number of fake CPU devices `env` (default `os.environ`) asks for; 1 if none."""
    env = os.environ if env is None else env
    n = 1
    for flag in env.get("XLA_FLAGS", "").split():
        if flag.startswith(_FLAG + "="):
            n = int(flag.split("=", 1)[1] or 1)  # the last one wins, as in XLA
    if env.get("JAX_NUM_CPU_DEVICES", "").strip().lstrip("-").isdigit():
        n = max(n, int(env["JAX_NUM_CPU_DEVICES"]))
    return n


def pool_env(env=None):
    """Sets `NPROC` in `env` (default `os.environ`) to `max(cores, 2·N)` when N > 1 fake
    CPU devices are asked for and `NPROC` is unset (module doc); returns `env`. Call it
    before JAX creates its CPU client (the first `jax.devices()` or computation)."""
    env = os.environ if env is None else env
    n = forced_host_devices(env)
    if n > 1 and not env.get("NPROC"):
        env["NPROC"] = str(max(os.cpu_count() or 1, 2 * n))
    return env
