"""Throughput of the embedded default: rollout tokens/s, SFT step and RL iteration time.

  python benchmarks/rl_bench.py [--iters=5] [--variant=smoke] [--host_call=io_callback]

Prints a markdown table (paste into BENCHMARKS.md with the machine and date). Times are
medians over `--iters` calls after one warm-up (compile) call, measured with
`block_until_ready`. "rollout tokens/s" counts generated positions (B·G·T, including
those after EOS, which the fixed-shape sampler also computes) and, separately, valid
completion tokens.
"""

import argparse
import platform
import statistics
import tempfile
import time

import jax
import numpy as np
from flax import nnx


def _median_time(fn, iters):
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--variant", default="", help="config variant ('' or 'smoke')")
    ap.add_argument(
        "--host_call",
        default="split",
        help="reward.host_call: 'split' (two programs, the host reward between) or 'io_callback'",
    )
    args = ap.parse_args()

    from r1jax.configs.arith_tiny import get_config
    from r1jax.sampling import generate
    from r1jax.tokenizer import EOS_ID, PAD_ID
    from r1jax.train.experiment import Experiment

    c = get_config(args.variant)
    c.reward.host_call = args.host_call
    exp = Experiment(c, tempfile.mkdtemp())
    try:
        state = exp.init_state
        g = c.rl.group_size
        batch = exp.rl_batch(0)
        gen = jax.jit(
            lambda p, k: generate(
                nnx.merge(exp.graphs.policy, p),
                batch.prompt,
                batch.prompt_mask,
                k,
                max_new_tokens=c.max_new_tokens,
                num_samples=g,  # as the RL iteration: one prefill per prompt
                temperature=1.0,
                eos_id=EOS_ID,
                pad_id=PAD_ID,
            )
        )
        t_gen, roll = _median_time(lambda: gen(state.policy, jax.random.PRNGKey(0)), args.iters)
        n, t = roll.tokens_bt.shape
        valid = float(np.asarray(roll.mask_bt).sum())

        sft_batch = exp.sft_batch(0)
        holder = {"s": state}

        def sft():
            holder["s"], m = exp.sft_fn(holder["s"], sft_batch)
            return m

        t_sft, _ = _median_time(sft, args.iters)
        examples = int(np.asarray(sft_batch.segments).max(1).sum())

        def rl():
            holder["s"], m = exp.rl_fn(holder["s"], batch)
            return m

        t0 = time.perf_counter()
        jax.block_until_ready(rl())
        t_compile = time.perf_counter() - t0
        t_rl, _ = _median_time(rl, args.iters)
    finally:
        exp.close()

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| rollout: {n} sequences x {t} positions, one call | {t_gen * 1e3:.0f} ms |")
    print(f"| rollout tokens/s (all positions) | {n * t / t_gen:,.0f} |")
    print(
        f"| rollout tokens/s (valid completion tokens; freshly initialised policy, which rarely stops) | {valid / t_gen:,.0f} |"
    )
    print(f"| SFT step ({c.sft.rows} packed rows, {examples} examples) | {t_sft * 1e3:.0f} ms |")
    print(
        f"| RL iteration ({c.rl.algo}, N={n}, K={c.rl.epochs}, M={c.rl.num_minibatches}, "
        f"host_call={args.host_call}) | "
        f"{t_rl * 1e3:.0f} ms |"
    )
    print(f"| RL iteration first call (compile + run) | {t_compile:.1f} s |")


if __name__ == "__main__":
    main()
