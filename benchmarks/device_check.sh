#!/usr/bin/env bash
# Issue 22's GPU measurements as one prepared run, inside one `run` call: the steps go in
# order of what the issue needs most and share a deadline (DEADLINE seconds from the
# start, default 500), so a slow step leaves the rest skipped, not the call killed with
# nothing written. Not yet run on a GPU.
#
# On the lent device machine, from the repository root, with the wheels the image lacks
# and a GSM8K copy carried (both git-ignored; prepare them once on this side):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       jraph==0.0.6.dev0 ml_collections==1.1.0 tensorboardX==2.6.5
#   mkdir -p .gsm8k && cp ../shared/data/gsm8k/{train,test}.jsonl .gsm8k/
# then run (tool `run`, carry [".whl", ".gsm8k"], timeout_s 600):
#   bash benchmarks/device_check.sh
# Writes under $OUT (or /tmp/device_check) 5 files (the device tool returns at most 8):
# device_check.log (everything printed), workload.json, decode_128.json, decode_32.json,
# decode_128_fused.json. Exits 0 when every step ran and passed, 1 when one failed or was
# cut off, 2 when what it needs is missing. PRESET=tiny runs the same steps at CPU size
# (a check of this script, not a measurement).
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
PRESET=${PRESET:-qwen0.5b}
DEADLINE=${DEADLINE:-500}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_check.log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid"' EXIT  # the log's last lines written before $OUT goes
export PYTHONUNBUFFERED=1
SECONDS=0
failed=0
need="import jraph, ml_collections, tensorboardX, flax, optax, orbax.checkpoint"

# Before the GPU is touched: what the steps need is here (else stop at once).
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "$need" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "$need" || { echo "missing packages: carry .whl (see the header)"; exit 2; }
if [ "$PRESET" != tiny ] && ! { [ -f .gsm8k/train.jsonl ] && [ -f .gsm8k/test.jsonl ]; }; then
  echo "no .gsm8k/{train,test}.jsonl: carry .gsm8k (see the header)"; exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import jax; print(jax.__version__, jax.devices())"

# step NAME MIN MAX CMD...: runs CMD with a timeout of MAX seconds or what is left before
# the deadline, whichever is less; skipped when less than MIN is left.
step() {
  local name=$1 min=$2 max=$3 left
  shift 3
  left=$((DEADLINE - SECONDS))
  if [ "$left" -lt "$min" ]; then
    echo "== $name: skipped (${left} s left before the ${DEADLINE} s deadline)"
    failed=1
    return
  fi
  [ "$left" -lt "$max" ] && max=$left
  echo "== $name (at ${SECONDS} s, up to ${max} s)"
  timeout "$max" "$@"
  local rc=$?
  echo "== $name: exit $rc at ${SECONDS} s"
  [ "$rc" -eq 0 ] || failed=1
}

tokens=256 layers=24 small=()
if [ "$PRESET" = tiny ]; then
  tokens=16 layers=8
  small=(--prompts=4 --samples=4 --new_tokens=32 --iters=1 --reward_workers=1)
fi
decode=(python3 benchmarks/sampling_bench.py --preset="$PRESET" --prompt_len=128
  --new_tokens="$tokens" --top_p=1.0 --repeats=3 --skip_hf)

# 1. The RL iteration: compile cold/warm, seconds per iteration, tokens/s, MFU, memory
#    (two child processes; what the cold one measured is kept if the warm one is late).
# Its own --time_limit ends a late child first, so the cold figures are written.
limit=$((DEADLINE - SECONDS - 15))
[ "$limit" -gt 315 ] && limit=315
step workload 120 330 python3 benchmarks/gpu_workload.py --preset="$PRESET" --gsm8k=.gsm8k \
  --json_out="$OUT/workload.json" --time_limit="$limit" "${small[@]}"
# 2. Decode: ms per step and the share of HBM bandwidth at batch 128 and 32 (our sampler
#    alone, no top-p, prompt 128 + 256 new tokens as the workload).
step decode_128 40 90 "${decode[@]}" --batch=128 --json_out="$OUT/decode_128.json"
step decode_32 40 90 "${decode[@]}" --batch=32 --json_out="$OUT/decode_32.json"
# 3. cuDNN flash attention against the einsum path (numerics; model.attention).
if [ "$PRESET" != tiny ]; then
  JAX_PLATFORMS="" R1JAX_TEST_ATTENTION=cudnn step attention 40 90 python3 -m pytest -q \
    -p no:cacheprovider tests/models/attention_impl_test.py
fi
# 4. Compile time of the decoder blocks, unrolled against one lax.scan (model.layer_loop;
#    the workload runs the scan, the config's "auto" for 24 blocks).
step scan_layers 60 120 python3 benchmarks/scan_layers_bench.py --preset="$PRESET" \
  --layers="$layers" --dtype=bfloat16 --remat
# 5. Batch 128 again with q/k/v and gate/up as one matmul each (fewer kernels per layer,
#    if XLA hoists the kernels' concatenation out of the loop).
step decode_128_fused 40 90 "${decode[@]}" --batch=128 --fused_projections=on \
  --json_out="$OUT/decode_128_fused.json"
echo "done at ${SECONDS} s ($([ "$failed" = 0 ] && echo "every step passed" || echo "a step failed or was skipped")): $(ls "$OUT")"
exit "$failed"
