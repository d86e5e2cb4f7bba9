#!/usr/bin/env bash
# Issue 22's GPU measurements as one prepared run (estimated 8 minutes on an H100/H200: not
# yet run on one; each step has its own timeout).
#
# On the lent device machine, from the repository root, with the wheels the image lacks
# and a GSM8K copy carried (both git-ignored; prepare them once on this side):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       jraph==0.0.6.dev0 ml_collections==1.1.0 tensorboardX==2.6.5
#   mkdir -p .gsm8k && cp ../shared/data/gsm8k/{train,test}.jsonl .gsm8k/
# then run (tool `run`, carry [".whl", ".gsm8k"], timeout_s 600):
#   bash benchmarks/device_check.sh
# Writes logs and JSON under $OUT (or /tmp/device_check). PRESET=tiny runs the same steps
# at CPU size (a check of this script, not a measurement).
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
PRESET=${PRESET:-qwen0.5b}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import jraph, ml_collections" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) | tee "$OUT/gpu.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"

# 0. cuDNN flash attention against the einsum path (numerics; model.attention).
if [ "$PRESET" != tiny ]; then
  JAX_PLATFORMS="" R1JAX_TEST_ATTENTION=cudnn timeout 120 python3 -m pytest -q -p no:cacheprovider \
    tests/models/attention_impl_test.py 2>&1 | tail -n 15 | tee "$OUT/attention.log"
fi

# 1. The RL iteration: compile cold/warm, seconds per iteration, tokens/s, MFU, memory.
small=()
if [ "$PRESET" = tiny ]; then
  small=(--prompts=4 --samples=4 --new_tokens=32 --iters=1 --reward_workers=1)
fi
timeout 360 python3 benchmarks/gpu_workload.py --preset="$PRESET" --gsm8k=.gsm8k \
  --json_out="$OUT/workload.json" "${small[@]}" 2>&1 | tee "$OUT/workload.log"

# 2. Decode: ms per step and the share of HBM bandwidth at batch 32 and 128 (our sampler
#    alone, no top-p, prompt 128 + 256 new tokens as the workload); batch 128 again with
#    q/k/v and gate/up as one matmul each (as on CPU: fewer kernels per layer, if XLA
#    hoists the kernels' concatenation out of the loop).
tokens=256
[ "$PRESET" = tiny ] && tokens=16
for spec in 32:auto:32 128:auto:128 128:on:128_fused; do
  IFS=: read -r b fused name <<<"$spec"
  timeout 100 python3 benchmarks/sampling_bench.py --preset="$PRESET" --batch="$b" \
    --prompt_len=128 --new_tokens="$tokens" --top_p=1.0 --repeats=3 --skip_hf \
    --fused_projections="$fused" --json_out="$OUT/decode_$name.json" 2>&1 | tail -n 30 \
    | tee "$OUT/decode_$name.log"
done
# 3. Compile time of 24 decoder blocks, unrolled against one lax.scan (model.layer_loop;
#    the workload above runs the scan, the config's "auto" for 24 blocks).
layers=24
[ "$PRESET" = tiny ] && layers=8
timeout 150 python3 benchmarks/scan_layers_bench.py --preset="$PRESET" --layers="$layers" \
  --dtype=bfloat16 --remat 2>&1 | tail -n 8 | tee "$OUT/scan_layers.log"
echo "done: $(ls "$OUT")"
