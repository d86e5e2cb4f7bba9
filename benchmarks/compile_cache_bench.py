"""Cold and warm starts with JAX's persistent compilation cache (``r1jax.compile_cache``).

Runs the same command lines in fresh processes, each in a new work directory:
``r1jax-train`` on ``--config`` with the cache off, then with an empty cache folder
(cold: compiles and writes), then again (warm: loads), and ``r1jax-eval`` of the run
with the cache off, cold (a new folder) and warm. The training rows run for each
``reward.host_call`` in ``--host_calls``: ``split`` (rollout and learner programs, both
cached) and ``io_callback`` (one program that JAX never caches: warm is no better than
cold for the RL iteration). Prints wall seconds per process and the ratio to the
cache-off run of the same kind.

    python benchmarks/compile_cache_bench.py [--config experiments/arith_tiny.py:smoke]
        [--host_calls split,io_callback]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def _run(args: list[str]) -> float:
    env = dict(os.environ)
    env.pop("R1JAX_COMPILE_CACHE", None)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", *args], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(args[1:])}\n{r.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/arith_tiny.py:smoke")
    parser.add_argument("--host_calls", default="split,io_callback")
    args = parser.parse_args()
    train = "import sys; from r1jax.main import train_entry; train_entry(['r1jax-train', *sys.argv[1:]])"
    evaluate = (
        "import sys; from r1jax.main import eval_entry; eval_entry(['r1jax-eval', *sys.argv[1:]])"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows, entries = [], {}
        for host_call in args.host_calls.split(","):
            cache = os.path.join(tmp, f"cache_{host_call}")
            for name, flag in (("off", "off"), ("cold", cache), ("warm", cache)):
                workdir = os.path.join(tmp, f"run_{host_call}_{name}")
                t = _run(
                    [
                        train,
                        f"--config={args.config}",
                        f"--workdir={workdir}",
                        f"--compile_cache={flag}",
                        f"--config.reward.host_call={host_call}",
                    ]
                )
                rows.append((f"r1jax-train {host_call}, cache {name}", t))
            entries[host_call] = sum(len(files) for _, _, files in os.walk(cache))
        first = args.host_calls.split(",")[0]
        run, cache2 = os.path.join(tmp, f"run_{first}_off"), os.path.join(tmp, "cache_eval")
        for name, flag in (("off", "off"), ("cold", cache2), ("warm", cache2)):
            t = _run([evaluate, f"--workdir={run}", f"--compile_cache={flag}"])
            rows.append((f"r1jax-eval, cache {name}", t))
    print(f"\n{args.config}; cache entries written: {entries}")
    print(f"{'process':<36}{'seconds':>10}{'vs off':>9}")
    base = None
    for name, t in rows:
        if name.endswith("cache off"):
            base = t
        print(f"{name:<36}{t:>10.1f}{t / base:>9.2f}")


if __name__ == "__main__":
    main()
