"""Multi-process (multi-host) start-up: `jax.distributed.initialize` from flags or the environment.

One JAX process runs per host (TPU VM worker, GPU node) or per GPU; `initialize` joins them
into one job so `jax.devices()` lists every device of the slice / cluster and one `jax.jit`
program spans them all. Call it once, first thing, before any JAX computation (before
`jax.devices()`, any array, any jitted call): JAX refuses to join a job after its backend
has started. Where the settings come from, first match wins:

  1. Arguments (the CLI flags `--coordinator_address`, `--num_processes`, `--process_id`),
     then the environment variables `R1JAX_COORDINATOR` (``host:port`` of process 0),
     `R1JAX_NUM_PROCESSES`, `R1JAX_PROCESS_ID` (and `R1JAX_LOCAL_DEVICE_IDS`, e.g.
     ``0,1,2,3``, to restrict the devices of this process). Explicit settings must be
     complete and consistent (coordinator, count and id, ``0 <= id < count``) unless a
     cluster is detected, in which case JAX fills in what is missing.
  2. A detected cluster: a Cloud TPU VM (single- or multi-host slice, TPU on GKE), a SLURM
     step with more than one task (``srun``), or Open MPI (``mpirun``) with more than one
     rank. `jax.distributed.initialize()` is then called with no arguments and JAX's own
     cluster auto-detection finds the coordinator, the process count and this process's id.
     Under SLURM on GPUs JAX pins each task to GPU ``SLURM_LOCALID`` (one task per GPU);
     with one task per node set ``R1JAX_LOCAL_DEVICE_IDS`` to all of the node's GPUs.
  3. Nothing of the above: a single process. `initialize` is a no-op returning
     ``{"process_index": 0, "process_count": 1, "initialized": False}``, so a laptop never
     waits for a coordinator.

`R1JAX_DISTRIBUTED=auto` forces step 2 (any environment JAX can auto-detect) and
`R1JAX_DISTRIBUTED=off` forces step 3. A second call is a no-op returning the first result.

Only process 0 writes logs, metrics and plots (`is_main_process`); every process runs the
same program on its share of the devices and takes part in checkpointing.

This module imports JAX lazily: it is imported by the command line before the trainer.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from r1jax.errors import ConfigError

log = logging.getLogger("r1jax")

ENV_COORDINATOR = "R1JAX_COORDINATOR"
ENV_NUM_PROCESSES = "R1JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "R1JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "R1JAX_LOCAL_DEVICE_IDS"
ENV_MODE = "R1JAX_DISTRIBUTED"  # "auto" | "off"; unset: detect

# SLURM variables JAX's SlurmCluster needs (jax/_src/clusters/slurm_cluster.py).
_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)
_OMPI_URI = "OMPI_MCA_orte_hnp_uri"  # JAX's OmpiCluster marker

_result: dict | None = None  # set by the first call of `initialize`


def _single() -> dict:
    return {"process_index": 0, "process_count": 1, "initialized": False}


def _int_setting(value, env: Mapping[str, str], env_name: str, flag: str):
    """(value, name) from the argument if given, else from `env_name`; None if neither."""
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{flag}={value!r}: expected an integer")
        return value, flag
    raw = env.get(env_name, "").strip()
    if not raw:
        return None, env_name
    try:
        return int(raw), env_name
    except ValueError:
        raise ConfigError(
            f"{env_name}={raw!r} is not an integer: unset it or give a number"
        ) from None


def _device_ids(value, env: Mapping[str, str]) -> list[int] | None:
    if value is not None:
        ids = [value] if isinstance(value, int) else list(value)
        if not all(isinstance(i, int) and i >= 0 for i in ids):
            raise ConfigError(f"local_device_ids={value!r}: expected non-negative integers")
        return ids
    raw = env.get(ENV_LOCAL_DEVICE_IDS, "").strip()
    if not raw:
        return None
    try:
        ids = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids):
        raise ConfigError(
            f"{ENV_LOCAL_DEVICE_IDS}={raw!r}: expected comma-separated device ordinals, "
            "e.g. 0,1,2,3"
        )
    return ids


def _check_address(address: str, name: str):
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{name}={address!r}: expected HOST:PORT of process 0 (e.g. 10.0.0.1:8476), the "
            "same on every process"
        )


def _on_cloud_tpu_vm() -> bool:
    """True on a Cloud TPU VM (JAX sets the flag at import when TPU chips are attached)."""
    try:
        from jax._src import cloud_tpu_init
    except ImportError:  # pragma: no cover - private module moved
        return False
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def detect_cluster(env: Mapping[str, str] | None = None) -> str | None:
    """The multi-process environment JAX can auto-detect here: "tpu", "slurm", "openmpi",
    or None (a single process). A SLURM or MPI job with one task is a single process."""
    env = os.environ if env is None else env

    def count(name: str) -> int:
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    if _on_cloud_tpu_vm() or "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    if all(v in env for v in _SLURM_VARS) and count("SLURM_NTASKS") > 1:
        return "slurm"
    if _OMPI_URI in env and count("OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    return None


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[str, dict]:
    """Decides what `initialize` does, without side effects.

    Returns ("single", {}) for the no-op, ("auto", kwargs) for JAX's cluster auto-detection
    (kwargs hold only what was set explicitly, usually nothing) or ("explicit", kwargs).
    Raises ConfigError, naming the flag or environment variable, for inconsistent settings.
    """
    env = os.environ if env is None else env
    mode = env.get(ENV_MODE, "").strip().lower()
    if mode not in ("", "auto", "off"):
        raise ConfigError(f"{ENV_MODE}={mode!r}: use 'auto', 'off' or leave it unset")
    coord = coordinator_address or env.get(ENV_COORDINATOR, "").strip() or None
    coord_name = "--coordinator_address" if coordinator_address else ENV_COORDINATOR
    nproc, nproc_name = _int_setting(num_processes, env, ENV_NUM_PROCESSES, "--num_processes")
    pid, pid_name = _int_setting(process_id, env, ENV_PROCESS_ID, "--process_id")
    ids = _device_ids(local_device_ids, env)

    if nproc is not None and nproc < 1:
        raise ConfigError(f"{nproc_name}={nproc}: the number of processes must be >= 1")
    if pid is not None and pid < 0:
        raise ConfigError(f"{pid_name}={pid}: process ids run from 0 to num_processes - 1")
    if pid is not None and nproc is not None and pid >= nproc:
        raise ConfigError(
            f"{pid_name}={pid} with {nproc_name}={nproc}: process ids run from 0 to "
            f"{nproc - 1}; give each process a unique id below the process count"
        )
    if coord is not None:
        _check_address(coord, coord_name)

    explicit = {
        k: v
        for k, v in (
            ("coordinator_address", coord),
            ("num_processes", nproc),
            ("process_id", pid),
            ("local_device_ids", ids),
        )
        if v is not None
    }
    if mode == "off":
        if nproc is not None and nproc > 1:
            raise ConfigError(f"{ENV_MODE}=off contradicts {nproc_name}={nproc}: unset one of them")
        return "single", {}
    if nproc == 1:
        return "single", {}  # explicitly one process: nothing to join
    if mode == "auto" or detect_cluster(env) is not None:
        return "auto", explicit
    if coord is None and nproc is None and pid is None:
        if ids is not None:
            raise ConfigError(
                f"{ENV_LOCAL_DEVICE_IDS} is set but this is a single process (no coordinator, "
                "no process count, no cluster detected): restrict its devices with "
                "CUDA_VISIBLE_DEVICES instead, or unset it"
            )
        return "single", {}
    # Explicit multi-process settings with no cluster to fill the gaps: all three needed.
    if nproc is None:
        raise ConfigError(
            f"{coord_name if coord else pid_name} is set but the number of processes is not: "
            f"pass --num_processes=N or set {ENV_NUM_PROCESSES} (the same N on every process)"
        )
    if coord is None:
        raise ConfigError(
            f"{nproc_name}={nproc} needs a coordinator: pass --coordinator_address=HOST:PORT "
            f"or set {ENV_COORDINATOR} (process 0's address and a free port, the same on "
            "every process)"
        )
    if pid is None:
        raise ConfigError(
            f"{nproc_name}={nproc} needs this process's id: pass --process_id=I or set "
            f"{ENV_PROCESS_ID} (0 to {nproc - 1}, unique per process; 0 hosts the coordinator)"
        )
    return "explicit", explicit


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
) -> dict:
    """Joins this process to a multi-process JAX job (see the module docstring).

    Returns {"process_index", "process_count", "initialized"}; a no-op (initialized False)
    for a single process, and on any call after the first. Must run before any JAX
    computation. Raises ConfigError for inconsistent settings, RuntimeError if JAX already
    started its backend or the coordinator could not be reached.
    """
    global _result
    if _result is not None:
        return dict(_result)
    import jax

    if jax.distributed.is_initialized():  # someone called jax.distributed.initialize already
        _result = _info()
        return dict(_result)
    how, kwargs = resolve(coordinator_address, num_processes, process_id, local_device_ids)
    if how == "single":
        _result = _single()
        return dict(_result)
    where = detect_cluster() if how == "auto" else None
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        if "before any JAX calls" in str(e):
            raise RuntimeError(
                "r1jax.distributed.initialize() must run before any JAX computation "
                "(jax.devices(), creating arrays, jitted calls): call it first thing in the "
                f"program. JAX said: {e}"
            ) from e
        raise _join_error(how, kwargs, where, e) from e
    except Exception as e:  # coordinator unreachable, timeout, port in use, ...
        raise _join_error(how, kwargs, where, e) from e
    _result = _info()
    log.info(
        "distributed: process %d of %d (%s), %d local / %d global devices",
        _result["process_index"],
        _result["process_count"],
        f"auto-detected: {where or 'forced by ' + ENV_MODE}" if how == "auto" else "explicit",
        jax.local_device_count(),
        jax.device_count(),
    )
    return dict(_result)


def _join_error(how: str, kwargs: dict, where: str | None, e: Exception) -> RuntimeError:
    if how == "explicit":
        what = (
            f"process {kwargs['process_id']} of {kwargs['num_processes']} with coordinator "
            f"{kwargs['coordinator_address']}"
        )
        fix = (
            "check that all processes were started with the same --num_processes and "
            "--coordinator_address, that process 0 runs on that host and the port is free "
            "there and reachable from this host"
        )
    else:
        what = f"the job detected as {where or 'a cluster (' + ENV_MODE + '=auto)'}"
        fix = (
            "check the launcher (srun/mpirun/all TPU workers) started every process, or pass "
            f"--coordinator_address/--num_processes/--process_id, or set {ENV_MODE}=off for "
            "one process"
        )
    return RuntimeError(f"jax.distributed.initialize failed to join {what}: {e}\nFix: {fix}")


def _info() -> dict:
    import jax

    return {
        "process_index": int(jax.process_index()),
        "process_count": int(jax.process_count()),
        "initialized": True,
    }


def is_multi_process() -> bool:
    """True once `initialize` joined this process to a job of more than one process."""
    return _result is not None and _result["process_count"] > 1


# How a cross-process collective reports a peer that went away (Gloo on CPU).
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def peer_lost(e: BaseException | None) -> bool:
    """True if ``e`` is a collective failing because another process of the job ended."""
    text = str(e or "")
    return type(e).__name__ == "JaxRuntimeError" and any(m in text for m in _PEER_LOST)


def exit_now(code: int) -> None:
    """Ends this process at once with ``code``, without JAX's cooperative shutdown.

    At a normal exit JAX's distributed client waits at a shutdown barrier for every
    other process (5 minutes by default). When one process fails on its own (an error
    in its evaluation, its data, a save), the others are meanwhile blocked in their
    next collective, which never comes: both wait out the barrier and abort. Leaving
    without the barrier closes this process's connections, so the others' collective or
    the coordination service's heartbeat check (``heartbeat_timeout_seconds``) fails
    and they stop too. Streams and log handlers are flushed first; files the run writes
    are already atomic (checkpoints by orbax, JSON by rename).
    """
    import logging as pylogging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    pylogging.shutdown()
    os._exit(code)


def is_main_process() -> bool:
    """True on process 0, the one process that writes logs, metrics, summaries and plots."""
    import jax

    return jax.process_index() == 0
