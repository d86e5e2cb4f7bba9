#!/usr/bin/env bash
# Local launch: the embedded default (or any experiment) on this machine's devices.
#   launch/local.sh                                   # default run in runs/arith_tiny
#   launch/local.sh runs/grpo --config.rl.algo=grpo   # extra flags pass through
#   launch/local.sh --config.rl.algo=grpo             # flags only: the default workdir
# Set R1JAX_FAKE_DEVICES=8 to try the data-parallel path on CPU.
# Several hosts: launch/tpu_pod.sh (TPU VM slices), launch/slurm_gpu.sbatch (GPU clusters).
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  cat <<'USAGE'
Usage: launch/local.sh [WORKDIR] [r1jax-train flags...]
  WORKDIR             output directory (default runs/arith_tiny); an existing run is resumed.
                      A first argument starting with - is a flag, not a WORKDIR: the flags
                      then all pass through and the default WORKDIR is used
  R1JAX_FAKE_DEVICES  N: split the CPU into N devices (XLA_FLAGS) to try the sharded path
USAGE
  exit 0
fi
# A leading flag is not a workdir (`launch/local.sh --config.rl.algo=grpo`): keep it.
WORKDIR=runs/arith_tiny
if [[ $# -gt 0 && "$1" != -* ]]; then
  WORKDIR=${1:-$WORKDIR}
  shift
fi
if [[ -n "${R1JAX_FAKE_DEVICES:-}" ]]; then
  export XLA_FLAGS="--xla_force_host_platform_device_count=${R1JAX_FAKE_DEVICES} ${XLA_FLAGS:-}"
fi
exec r1jax-train --workdir="$WORKDIR" --config="$(dirname "$0")/../experiments/arith_tiny.py" "$@"
