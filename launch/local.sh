#!/usr/bin/env bash
# Local launch: the embedded default (or any experiment) on this machine's devices.
#   launch/local.sh                                   # default run in runs/arith_tiny
#   launch/local.sh runs/grpo --config.rl.algo=grpo   # extra flags pass through
# Set R1JAX_FAKE_DEVICES=8 to try the data-parallel path on CPU.
set -euo pipefail
WORKDIR=${1:-runs/arith_tiny}
shift || true
if [[ -n "${R1JAX_FAKE_DEVICES:-}" ]]; then
  export XLA_FLAGS="--xla_force_host_platform_device_count=${R1JAX_FAKE_DEVICES} ${XLA_FLAGS:-}"
fi
exec r1jax-train --workdir="$WORKDIR" --config="$(dirname "$0")/../experiments/arith_tiny.py" "$@"
