"""Micro benchmark of ``r1jax.rewards.RewardPool``: items/s, inline vs worker processes.

Scores 256 typical GSM8K-style solutions (4-6 step equations, ``#### answer``; about a
quarter with a wrong step or answer) with ``composite.score_vector`` and the default
``RewardConfig``. Worker start-up is excluded (the pool is started and warmed first);
each row is the median of ``--repeats`` batches. "CPU µs/item" sums parent and worker
CPU time (Linux ``/proc``): it shows the pool's IPC overhead even on a busy machine,
where items/s cannot show the parallel speed-up.

    python benchmarks/reward_pool_bench.py [--items 256] [--repeats 7] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import time

from r1jax.rewards import RewardConfig, RewardPool, score_vector


def make_solutions(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (completion, reference_answer) pairs like the model writes."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        value = rng.randint(2, 50)
        lines = []
        for _ in range(rng.randint(4, 6)):
            op, b = rng.choice("+-*"), rng.randint(2, 30)
            new = value + b if op == "+" else value - b if op == "-" else value * b
            shown = new + 1 if rng.random() < 0.1 else new  # an arithmetic slip
            lines.append(f"{value}{op}{b}={shown}")
            value = new
        answer = value + 7 if rng.random() < 0.15 else value  # a wrong final answer
        lines.append(f"#### {answer:,}" if rng.random() < 0.2 else f"#### {answer}")
        out.append(("\n".join(lines), str(value)))
    return out


def _cpu_s(pids) -> float | None:
    """User+system CPU seconds of processes ``pids`` (Linux /proc; else None)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def bench(pool: RewardPool, items, repeats: int) -> tuple[float, float | None]:
    """(items/s from the median batch, CPU µs per item over parent and workers)."""
    pool.score_batch(items[:16])  # warm-up
    times = []
    parent0, workers0 = time.process_time(), _cpu_s(pool.worker_pids)
    for _ in range(repeats):
        t = time.perf_counter()
        pool.score_batch(items)
        times.append(time.perf_counter() - t)
    parent1, workers1 = time.process_time(), _cpu_s(pool.worker_pids)
    cpu = None
    if workers0 is not None and workers1 is not None:
        cpu = (parent1 - parent0 + workers1 - workers0) / (repeats * len(items)) * 1e6
    return len(items) / statistics.median(times), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    items = make_solutions(args.items)
    score_fn = functools.partial(score_vector, cfg=RewardConfig())
    rows = []
    with RewardPool(score_fn, num_workers=0) as pool:
        rows.append(("inline", "-", *bench(pool, items, args.repeats)))
    configs = [(1, None)] + [(args.workers, c) for c in (1, 4, 16, None)]
    for workers, chunk in configs:
        with RewardPool(score_fn, num_workers=workers, chunk_size=chunk).start() as pool:
            rows.append((f"{workers} workers", chunk or "auto", *bench(pool, items, args.repeats)))
            assert pool.stats["timeouts"] == 0 and pool.stats["errors"] == 0, pool.stats

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.items} items/batch, median of {args.repeats} batches, {os.cpu_count()} CPUs "
        f"(load average {load:.1f} at the end), score_fn = composite.score_vector"
    )
    print(f"{'mode':<12} {'chunk':>6} {'items/s':>10} {'vs inline':>10} {'CPU µs/item':>12}")
    inline = rows[0][2]
    for mode, chunk, rate, cpu in rows:
        cpu_text = "n/a" if cpu is None else f"{cpu:.0f}"
        print(f"{mode:<12} {chunk!s:>6} {rate:>10.0f} {rate / inline:>9.2f}x {cpu_text:>12}")


if __name__ == "__main__":
    main()
