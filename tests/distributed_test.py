"""r1jax.distributed: when and how `jax.distributed.initialize` is called.

All but the last test mock `jax.distributed.initialize` (no coordinator is started). The last
starts two real processes on the CPU backend that join through a coordinator on localhost.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from r1jax import distributed
from r1jax._testing import xla_env
from r1jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINGLE = {"process_index": 0, "process_count": 1, "initialized": False}
_CLUSTER_PREFIXES = ("R1JAX_", "SLURM_", "OMPI_", "TPU_", "MEGASCALE_", "JAX_COORDINATOR")


@pytest.fixture
def calls(monkeypatch):
    """A clean environment (no cluster) and a recording stand-in for the JAX call."""
    for k in list(os.environ):
        if k.startswith(_CLUSTER_PREFIXES):
            monkeypatch.delenv(k)
    monkeypatch.setattr(distributed, "_result", None)
    monkeypatch.setattr(distributed, "_on_cloud_tpu_vm", lambda: False)
    recorded = []

    def fake_initialize(**kwargs):
        recorded.append(kwargs)
        state["joined"] = kwargs

    state = {"joined": None}
    monkeypatch.setattr(jax.distributed, "initialize", fake_initialize)
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax, "process_index", lambda: (state["joined"] or {}).get("process_id", 0))
    monkeypatch.setattr(
        jax, "process_count", lambda: (state["joined"] or {}).get("num_processes", 1)
    )
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    return recorded


def test_single_process_with_nothing_set_is_a_noop(calls):
    assert distributed.initialize() == SINGLE
    assert distributed.initialize() == SINGLE
    assert calls == []


def test_importing_the_module_does_not_import_jax():
    # The command line imports it before the trainer; reward workers import the CLI module.
    code = "import sys, r1jax.distributed; print('jax' in sys.modules)"
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert r.stdout.strip() == "False", r.stderr


def test_environment_variables_drive_initialize(calls, monkeypatch):
    monkeypatch.setenv("R1JAX_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("R1JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("R1JAX_PROCESS_ID", "2")
    monkeypatch.setenv("R1JAX_LOCAL_DEVICE_IDS", "0,1")
    info = distributed.initialize()
    assert calls == [
        {
            "coordinator_address": "10.0.0.1:1234",
            "num_processes": 4,
            "process_id": 2,
            "local_device_ids": [0, 1],
        }
    ]
    assert info == {"process_index": 2, "process_count": 4, "initialized": True}
    # Idempotent: a second call neither joins again nor changes the answer.
    assert distributed.initialize(process_id=3) == info
    assert len(calls) == 1


def test_arguments_take_precedence_over_the_environment(calls, monkeypatch):
    monkeypatch.setenv("R1JAX_COORDINATOR", "envhost:1")
    monkeypatch.setenv("R1JAX_NUM_PROCESSES", "8")
    monkeypatch.setenv("R1JAX_PROCESS_ID", "7")
    distributed.initialize(coordinator_address="flaghost:2", process_id=3)
    assert calls == [{"coordinator_address": "flaghost:2", "num_processes": 8, "process_id": 3}]


def test_one_process_explicitly_is_a_noop(calls, monkeypatch):
    monkeypatch.setenv("R1JAX_NUM_PROCESSES", "1")
    monkeypatch.setenv("R1JAX_PROCESS_ID", "0")
    assert distributed.initialize() == SINGLE
    assert calls == []


@pytest.mark.parametrize(
    "env, kwargs, needles",
    [
        (
            {"R1JAX_COORDINATOR": "h:1", "R1JAX_NUM_PROCESSES": "2", "R1JAX_PROCESS_ID": "2"},
            {},
            ["R1JAX_PROCESS_ID=2", "R1JAX_NUM_PROCESSES=2", "0 to 1"],
        ),
        (
            {},
            {"coordinator_address": "h:1", "num_processes": 2, "process_id": 5},
            ["--process_id=5"],
        ),
        (
            {"R1JAX_NUM_PROCESSES": "2", "R1JAX_PROCESS_ID": "0"},
            {},
            ["needs a coordinator", "--coordinator_address", "R1JAX_COORDINATOR"],
        ),
        ({}, {"num_processes": 3, "process_id": 1}, ["--coordinator_address"]),
        ({"R1JAX_COORDINATOR": "h:1"}, {}, ["--num_processes", "R1JAX_NUM_PROCESSES"]),
        (
            {"R1JAX_COORDINATOR": "h:1", "R1JAX_NUM_PROCESSES": "2"},
            {},
            ["--process_id", "R1JAX_PROCESS_ID"],
        ),
        ({"R1JAX_NUM_PROCESSES": "two"}, {}, ["R1JAX_NUM_PROCESSES='two'", "integer"]),
        ({"R1JAX_NUM_PROCESSES": "0"}, {}, ["R1JAX_NUM_PROCESSES=0", ">= 1"]),
        ({"R1JAX_PROCESS_ID": "-1"}, {}, ["R1JAX_PROCESS_ID=-1"]),
        (
            {"R1JAX_COORDINATOR": "no-port", "R1JAX_NUM_PROCESSES": "2", "R1JAX_PROCESS_ID": "0"},
            {},
            ["R1JAX_COORDINATOR='no-port'", "HOST:PORT"],
        ),
        (
            {},
            {"coordinator_address": "h:99999", "num_processes": 2, "process_id": 0},
            ["HOST:PORT"],
        ),
        ({"R1JAX_DISTRIBUTED": "maybe"}, {}, ["R1JAX_DISTRIBUTED"]),
        ({"R1JAX_DISTRIBUTED": "off", "R1JAX_NUM_PROCESSES": "2"}, {}, ["contradicts"]),
        ({"R1JAX_LOCAL_DEVICE_IDS": "0,1"}, {}, ["R1JAX_LOCAL_DEVICE_IDS", "single process"]),
        ({"R1JAX_LOCAL_DEVICE_IDS": "a,b"}, {}, ["R1JAX_LOCAL_DEVICE_IDS='a,b'"]),
        ({}, {"num_processes": "2"}, ["--num_processes='2'"]),
    ],
)
def test_inconsistent_settings_raise_a_config_error_naming_the_setting(
    calls, monkeypatch, env, kwargs, needles
):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as e:
        distributed.initialize(**kwargs)
    for needle in needles:
        assert needle in str(e.value)
    assert calls == []
    assert isinstance(e.value, ValueError)  # the command line turns it into exit code 2


SLURM_TWO_NODES = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_STEP_NODELIST": "gpu[001-002]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}


def test_slurm_job_uses_jax_cluster_auto_detection(calls, monkeypatch):
    for k, v in SLURM_TWO_NODES.items():
        monkeypatch.setenv(k, v)
    assert distributed.detect_cluster() == "slurm"
    assert distributed.initialize()["initialized"] is True
    assert calls == [{}]  # no explicit arguments: JAX reads the SLURM_* variables itself


def test_slurm_one_task_per_node_passes_all_local_gpus(calls, monkeypatch):
    for k, v in SLURM_TWO_NODES.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("R1JAX_LOCAL_DEVICE_IDS", "0,1,2,3")  # what slurm_gpu.sbatch exports
    distributed.initialize()
    assert calls == [{"local_device_ids": [0, 1, 2, 3]}]


def test_slurm_job_with_a_single_task_is_a_single_process(calls, monkeypatch):
    for k, v in dict(SLURM_TWO_NODES, SLURM_NTASKS="1", SLURM_PROCID="0").items():
        monkeypatch.setenv(k, v)
    assert distributed.initialize() == SINGLE
    # Inside an allocation but not launched by srun (no step variables): also single.
    monkeypatch.setattr(distributed, "_result", None)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.delenv("SLURM_STEP_NODELIST")
    assert distributed.initialize() == SINGLE
    assert calls == []


def test_slurm_can_be_switched_off(calls, monkeypatch):
    for k, v in SLURM_TWO_NODES.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("R1JAX_DISTRIBUTED", "off")
    assert distributed.initialize() == SINGLE
    assert calls == []


def test_tpu_vm_and_forced_auto_use_auto_detection(calls, monkeypatch):
    monkeypatch.setattr(distributed, "_on_cloud_tpu_vm", lambda: True)
    assert distributed.detect_cluster() == "tpu"
    distributed.initialize()
    monkeypatch.setattr(distributed, "_on_cloud_tpu_vm", lambda: False)
    monkeypatch.setattr(distributed, "_result", None)
    monkeypatch.setenv("R1JAX_DISTRIBUTED", "auto")
    distributed.initialize()
    monkeypatch.setattr(distributed, "_result", None)
    monkeypatch.delenv("R1JAX_DISTRIBUTED")
    monkeypatch.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1:34911")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.detect_cluster() == "openmpi"
    distributed.initialize()
    assert calls == [{}, {}, {}]


def test_join_failures_become_errors_that_say_what_to_check(calls, monkeypatch):
    def unreachable(**kwargs):
        raise jax.errors.JaxRuntimeError("DEADLINE_EXCEEDED: Barrier timed out")

    monkeypatch.setattr(jax.distributed, "initialize", unreachable)
    with pytest.raises(RuntimeError) as e:
        distributed.initialize(coordinator_address="h:1", num_processes=2, process_id=1)
    msg = str(e.value)
    assert "process 1 of 2 with coordinator h:1" in msg and "DEADLINE_EXCEEDED" in msg
    assert "Fix:" in msg and "--coordinator_address" in msg

    def too_late(**kwargs):
        raise RuntimeError(
            "jax.distributed.initialize() must be called before any JAX calls that might "
            "initialise the XLA backend."
        )

    monkeypatch.setattr(jax.distributed, "initialize", too_late)
    with pytest.raises(RuntimeError, match="must run before any JAX computation"):
        distributed.initialize(coordinator_address="h:1", num_processes=2, process_id=1)


def test_already_initialized_elsewhere_is_reported_not_repeated(calls, monkeypatch):
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    assert distributed.initialize()["initialized"] is True
    assert calls == []


def test_is_main_process(monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert distributed.is_main_process()
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert not distributed.is_main_process()


_WORKER = """
import json
from r1jax import distributed
info = distributed.initialize()  # from R1JAX_* in the environment
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()), ("data",))
# One value per process, summed on the global mesh: a real cross-process collective.
x = jax.make_array_from_process_local_data(
    NamedSharding(mesh, P("data")), np.full((1,), info["process_index"] + 1, np.float32))
total = float(jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x))
print("RESULT " + json.dumps(dict(
    info, device_count=jax.device_count(), local_device_count=jax.local_device_count(),
    main=distributed.is_main_process(), total=total, again=distributed.initialize())))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _cpu_multiprocess_unsupported() -> str | None:
    # The CPU backend runs cross-process collectives through gloo (or MPI) when this option
    # exists (jax >= 0.4.27); older versions cannot.
    if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
        return f"jax {jax.__version__} has no multi-process CPU collectives"
    return None


def test_two_real_processes_join_on_cpu(tmp_path):
    reason = _cpu_multiprocess_unsupported()
    if reason:
        pytest.skip(reason)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    base = {k: v for k, v in os.environ.items() if not k.startswith(_CLUSTER_PREFIXES)}
    base = xla_env(env=base)  # one CPU device per process
    base.update(
        R1JAX_COORDINATOR=f"localhost:{_free_port()}",
        R1JAX_NUM_PROCESSES="2",
        PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + base.get("PYTHONPATH", ""),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env=dict(base, R1JAX_PROCESS_ID=str(i)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=60))
    except subprocess.TimeoutExpired:
        pytest.fail("two CPU processes did not join and finish within 60 s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for p, (out, err) in zip(procs, outs):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            if "UNIMPLEMENTED" in err and "collective" in err.lower():
                pytest.skip(
                    f"CPU backend of jax {jax.__version__} cannot run cross-process "
                    f"collectives: {err.strip().splitlines()[-1]}"
                )
            pytest.fail(f"process exited {p.returncode}:\n{err[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    for i, r in enumerate(results):
        assert r["process_index"] == i and r["process_count"] == 2 and r["initialized"]
        assert r["device_count"] == 2 and r["local_device_count"] == 1
        assert r["main"] == (i == 0)
        assert r["total"] == 3.0  # 1 + 2, summed across the two processes
        assert r["again"] == {"process_index": i, "process_count": 2, "initialized": True}
