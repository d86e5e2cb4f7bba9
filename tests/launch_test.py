"""Launch scripts: syntax, the TPU pod launcher's commands (dry run, and a run against a fake
`gcloud` that executes the remote commands locally) and the SLURM batch file."""

import os
import re
import shutil
import stat
import subprocess
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")
SCRIPTS = sorted(
    os.path.join(LAUNCH, n) for n in os.listdir(LAUNCH) if n.endswith((".sh", ".sbatch"))
)
TPU_POD = os.path.join(LAUNCH, "tpu_pod.sh")
SBATCH = os.path.join(LAUNCH, "slurm_gpu.sbatch")
LOCAL = os.path.join(LAUNCH, "local.sh")
SMOKE = "--config=experiments/arith_tiny.py:smoke"


def _clean_env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TPU_", "R1JAX_", "SLURM_", "CLOUDSDK_"))
    }
    env.update(extra)
    return env


def _run(args, env=None, cwd=None):
    return subprocess.run(
        args,
        check=False,
        capture_output=True,
        text=True,
        env=env or _clean_env(),
        cwd=cwd,
        timeout=60,
    )


def _write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_every_launch_script_parses_and_has_strict_mode_and_help():
    assert {os.path.basename(s) for s in SCRIPTS} >= {
        "local.sh",
        "tpu_pod.sh",
        "slurm_gpu.sbatch",
    }
    for script in SCRIPTS:
        r = _run(["bash", "-n", script])
        assert r.returncode == 0, f"{script}: {r.stderr}"
        with open(script) as f:
            text = f.read()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in text, script
        r = _run(["bash", script, "--help"])
        assert r.returncode == 0 and "Usage:" in r.stdout, f"{script}: {r.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_launch_scripts_are_shellcheck_clean():
    r = _run(["shellcheck", *SCRIPTS])
    assert r.returncode == 0, r.stdout


def test_tpu_pod_dry_run_prints_all_worker_commands_with_the_flags_passed_through(tmp_path):
    # A gcloud that fails if called: --dry_run must only print.
    _write_exe(tmp_path / "gcloud", "#!/bin/sh\necho called >&2\nexit 99\n")
    env = _clean_env(PATH=f"{tmp_path}:{os.environ['PATH']}")
    r = _run(
        [TPU_POD, "--dry_run", "--tpu=t", "--zone=z", "--", SMOKE, "--config.rl.algo=grpo"],
        env=env,
    )
    assert r.returncode == 0, r.stderr
    gcloud = [line for line in r.stdout.splitlines() if line.startswith("+ gcloud ")]
    ssh = [line for line in gcloud if " tpu-vm ssh t " in line]
    assert len(ssh) == 2  # install, train
    assert all("--worker=all" in line and "--zone=z" in line for line in ssh)
    train = [line for line in ssh if "r1jax-train" in line]
    assert len(train) == 1
    assert f"r1jax-train {SMOKE} --config.rl.algo=grpo" in train[0]
    assert "R1JAX_DISTRIBUTED=auto" in train[0]
    assert any(" tpu-vm scp " in line and "--worker=all" in line for line in gcloud)  # code
    assert any(" tpu-vm scp " in line and "r1jax-logs/" in line for line in gcloud)  # logs
    assert not any(" create " in line for line in gcloud)
    assert "called" not in r.stderr


def test_tpu_pod_dry_run_create_git_source_and_gcs_logs():
    r = _run(
        [
            TPU_POD,
            "--dry_run",
            "--create",
            "--source=git",
            "--repo_url=https://example.com/r1jax.git",
            "--branch=dev",
            "--gcs_logs=gs://bucket/logs",
            "--run_name=r7",
            "--",
            "--workdir=/mnt/shared/r7",
        ],
        env=_clean_env(
            TPU_NAME="pod",
            TPU_ZONE="us-central2-b",
            TPU_PROJECT="proj",
            TPU_ACCELERATOR_TYPE="v4-32",
        ),
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert (
        "+ gcloud compute tpus tpu-vm create pod --zone=us-central2-b --project=proj "
        "--accelerator-type=v4-32 --version=v2-alpha-tpuv5-lite" in out
    )
    assert "git clone --depth=1 --branch dev https://example.com/r1jax.git" in out
    assert "gcloud storage cp" in out and "gs://bucket/logs/r7/" in out
    assert " tpu-vm scp " not in out  # neither code copy nor log copy-back
    assert "r1jax-train --workdir=/mnt/shared/r7" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--zone=z"], "TPU_NAME"),
        (["--tpu=t"], "TPU_ZONE"),
        (["--tpu=t", "--zone=z", "--bogus"], "unknown option"),
        (["--tpu=t", "--zone=z", "--source=svn"], "--source=svn"),
        (["--tpu=t", "--zone=z", "--gcs_logs=/tmp/x"], "gs://"),
        (["--tpu=t", "--zone=z", "--num_workers=0"], "--num_workers"),
    ],
)
def test_tpu_pod_rejects_bad_options(args, needle):
    r = _run([TPU_POD, "--dry_run", *args])
    assert r.returncode == 2 and needle in r.stderr, r.stderr


@pytest.mark.parametrize(
    "args, workdir, rest",
    [
        ([], "runs/arith_tiny", []),
        (["runs/grpo", "--config.rl.algo=grpo"], "runs/grpo", ["--config.rl.algo=grpo"]),
        # A leading flag is a flag, not the workdir: the default workdir, the flags intact.
        (["--config.rl.algo=grpo"], "runs/arith_tiny", ["--config.rl.algo=grpo"]),
        (
            ["--config.rl.algo=grpo", "--config.seed=3"],
            "runs/arith_tiny",
            ["--config.rl.algo=grpo", "--config.seed=3"],
        ),
        (["-v=1", "two words"], "runs/arith_tiny", ["-v=1", "two words"]),
    ],
)
def test_local_sh_passes_workdir_and_flags_to_r1jax_train(tmp_path, args, workdir, rest):
    bin_dir, cwd = tmp_path / "bin", tmp_path / "cwd"
    bin_dir.mkdir()
    cwd.mkdir()
    _write_exe(bin_dir / "r1jax-train", '#!/bin/sh\nprintf "%s\\n" "$@"\n')
    r = _run([LOCAL, *args], env=_clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}"), cwd=cwd)
    assert r.returncode == 0, r.stderr
    config = os.path.join(LAUNCH, "..", "experiments", "arith_tiny.py")
    assert r.stdout.splitlines() == [f"--workdir={workdir}", f"--config={config}", *rest]
    assert os.listdir(cwd) == []  # the launcher itself creates nothing


_FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Stands in for gcloud: records the call; `ssh --command=C` runs C here with bash,
# `scp` copies between this machine and the fake worker home $HOME.
printf '%s\n' "$*" >> "$GCLOUD_LOG"
verb=$4
cmd=""
for a in "$@"; do case "$a" in --command=*) cmd=${a#--command=} ;; esac; done
case "$verb" in
  ssh) exec bash -c "$cmd" ;;
  scp)
    src=$5 dest=$6
    if [[ "$src" == *:* ]]; then cp "$HOME"/${src#*:} "$dest"; else cp "$src" "$HOME/${dest#*:}"; fi ;;
  describe) echo 2 ;;
esac
"""


def _is_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    r = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--git-dir"], check=False, capture_output=True
    )
    return r.returncode == 0


@pytest.mark.skipif(not _is_git_checkout(), reason="--source=copy lists the files to ship with git")
def test_tpu_pod_run_against_a_fake_gcloud_executes_install_train_and_log_copy(tmp_path):
    home, bin_dir, logs = tmp_path / "home", tmp_path / "bin", tmp_path / "logs"
    for d in (home / ".local" / "bin", bin_dir):
        d.mkdir(parents=True)
    _write_exe(bin_dir / "gcloud", _FAKE_GCLOUD)
    _write_exe(bin_dir / "python3", '#!/bin/sh\necho "$PWD $*" >> "$HOME/pip.log"\n')
    _write_exe(bin_dir / "hostname", "#!/bin/sh\necho worker-0\n")
    _write_exe(
        home / ".local" / "bin" / "r1jax-train",
        '#!/bin/sh\necho "train args: $*"\necho "mode=$R1JAX_DISTRIBUTED cwd=$PWD"\n'
        'exit "${FAKE_TRAIN_RC:-0}"\n',
    )
    env = _clean_env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        HOME=str(home),
        GCLOUD_LOG=str(tmp_path / "gcloud.log"),
    )
    args = [TPU_POD, "--tpu=t", "--zone=z", f"--log_dir={logs}", "--run_name=r1", "--"]
    args += [SMOKE, "--config.rl.algo=grpo", "two words"]
    r = _run(args, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    # The working tree was shipped and unpacked on the "worker", then installed there.
    with tarfile.open(home / "r1jax-src.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"pyproject.toml", "src/r1jax/distributed.py", "launch/tpu_pod.sh"} <= names
    assert not any(n.startswith((".git/", "runs/")) or "__pycache__" in n for n in names)
    assert (home / "r1jax" / "pyproject.toml").exists()
    pip = (home / "pip.log").read_text()
    assert f"{home}/r1jax -m pip install -q -e .[tpu]" in pip

    # Training ran from the checkout with the flags intact; each worker's log came back.
    log = (logs / "worker-0.log").read_text()
    assert f"train args: {SMOKE} --config.rl.algo=grpo two words" in log
    assert f"mode=auto cwd={home}/r1jax" in log
    calls = (tmp_path / "gcloud.log").read_text().splitlines()
    assert [c.split()[3] for c in calls] == ["scp", "ssh", "ssh", "describe", "scp", "scp"]
    assert [re.search(r"--worker=(\S+)", c).group(1) for c in calls if "describe" not in c] == [
        "all",
        "all",
        "all",
        "0",
        "1",
    ]

    # A failed run still brings the logs back and exits with the training's status.
    shutil.rmtree(logs)
    env["FAKE_TRAIN_RC"] = "3"
    r = _run([*args[:5], "--skip_install", "--num_workers=1", *args[5:]], env=env, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "train args:" in (logs / "worker-0.log").read_text()


def _sbatch_directives():
    with open(SBATCH) as f:
        return dict(
            re.match(r"#SBATCH\s+--([\w-]+)(?:=(\S+))?", line).groups()
            for line in f
            if line.startswith("#SBATCH")
        )


def test_sbatch_file_requests_nodes_gpus_and_logs_and_calls_srun():
    d = _sbatch_directives()
    assert int(d["nodes"]) >= 2
    assert d["ntasks-per-node"] == "1"  # one process per node driving all its GPUs
    assert int(d["gpus-per-node"]) >= 1
    assert d["output"] == "logs/%x-%j.out"
    with open(SBATCH) as f:
        text = f.read()
    # Every #SBATCH line precedes the first command (sbatch stops reading them there).
    first_cmd = text.index("\nset -euo pipefail")
    assert text.rindex("#SBATCH") < first_cmd
    assert re.search(r"^exec srun .*r1jax-train \"\$@\"$", text, re.MULTILINE)


def test_sbatch_script_under_a_fake_srun_passes_flags_and_all_gpus(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(
        bin_dir / "srun",
        '#!/bin/sh\necho "srun $*"\necho "ids=$R1JAX_LOCAL_DEVICE_IDS cwd=$PWD"\n',
    )
    _write_exe(bin_dir / "r1jax-train", "#!/bin/sh\nexit 0\n")
    env = _clean_env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        SLURM_SUBMIT_DIR=str(tmp_path),
        SLURM_JOB_ID="42",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_GPUS_ON_NODE="4",
    )
    r = _run(["bash", SBATCH, "--", SMOKE, "--workdir=/shared/x"], env=env)
    assert r.returncode == 0, r.stderr
    assert f"r1jax-train {SMOKE} --workdir=/shared/x" in r.stdout
    assert f"ids=0,1,2,3 cwd={tmp_path}" in r.stdout
    # One task per GPU: JAX's SLURM detection pins each task to its GPU; nothing exported.
    env.update(SLURM_NTASKS_PER_NODE="4")
    r = _run(["bash", SBATCH, SMOKE], env=env)
    assert r.returncode == 0 and "ids= " in r.stdout, r.stderr
