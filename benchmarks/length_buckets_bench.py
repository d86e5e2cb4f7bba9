"""RL iteration time with and without the learner's completion-length buckets.

  python benchmarks/length_buckets_bench.py --workdir=W [--step=N] [--buckets=1,3,6] [--iters=4]

`W` is a run written by `r1jax-train` (e.g. the default's, whose SFT checkpoint is step
600): a trained policy writes EOS, so its completions are shorter than `max_new_tokens`,
which a freshly initialised one (as in `rl_bench.py`) never does. For each value of
`rl.length_buckets` the checkpoint is restored and `Experiment.rl_fn` is timed on the same
prompt batch: median of `--iters` calls after the first (compile + run), which is
reported separately; every variant starts from the same checkpoint and runs the same
iterations (the buckets change how they are computed, not what). The variants run one
after the other, so the machine should be otherwise idle. Prints a markdown table with
the ratio to the first variant.
"""

import argparse
import platform
import statistics
import time

import jax
import numpy as np


def _variant(workdir, step, buckets, iters):
    from r1jax.checkpoint_eval import restored_run

    def edit(c):
        with c.unlocked():
            c.rl.length_buckets = buckets

    with restored_run(workdir, step, edit_config=edit) as (exp, state, _phase, _at):
        batch = exp.device_batch(exp.rl_batch(0))
        holder = {"s": state}

        def call():
            holder["s"], m = exp.rl_fn(holder["s"], batch)
            return m

        t = time.perf_counter()
        m = jax.block_until_ready(call())
        first = time.perf_counter() - t
        times, lens, learn = [], [float(m["completion_len"])], [float(m["learn_len"])]
        for _ in range(iters):
            t = time.perf_counter()
            m = jax.block_until_ready(call())
            times.append(time.perf_counter() - t)
            lens.append(float(m["completion_len"]))
            learn.append(float(m["learn_len"]))
    return first, times, lens, learn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="a run directory of r1jax-train")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
    ap.add_argument("--buckets", default="1,3", help="comma-separated rl.length_buckets values")
    ap.add_argument("--iters", type=int, default=4, help="timed calls per variant")
    args = ap.parse_args()
    variants = [int(b) for b in args.buckets.split(",")]
    if not variants or min(variants) < 1:
        ap.error("--buckets: positive integers, e.g. 1,3")

    rows = []
    for b in variants:
        first, times, lens, learn = _variant(args.workdir, args.step, b, args.iters)
        rows.append((b, statistics.median(times), first, np.mean(lens), learn))
    base = rows[0][1]
    print(
        f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}; workdir {args.workdir}, step {args.step or 'newest'}"
    )
    print()
    print(
        "| rl.length_buckets | RL iteration (median) | vs first | compile + first call "
        "| mean completion | positions trained on |"
    )
    print("|---|---|---|---|---|---|")
    for b, med, first, mean_len, learn in rows:
        print(
            f"| {b} | {med * 1e3:,.0f} ms | {med / base:.2f}x | {first:.1f} s | "
            f"{mean_len:.1f} | {', '.join(str(int(x)) for x in learn)} |"
        )


if __name__ == "__main__":
    main()
