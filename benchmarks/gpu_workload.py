"""The issue-22 GPU workload: one GRPO iteration on a random Qwen2.5-0.5B-shaped model.

  PYTHONPATH=src python3 benchmarks/gpu_workload.py --gsm8k=DIR [--iters=3]
  python benchmarks/gpu_workload.py --preset=tiny --iters=1     # CPU: checks it runs

Builds, in a temporary folder (or `--workdir`): a random Qwen2-architecture checkpoint in
Hugging Face format (`--preset=qwen0.5b`: 494M parameters, vocabulary 151,936, tied
embedding), a byte-level BPE tokenizer trained on the GSM8K prompts (its few thousand
tokens padded to the model's vocabulary), and a copy of GSM8K (`--gsm8k`: train.jsonl and
test.jsonl) keeping the questions whose R1 prompt fits `--prompt_len`. Then runs the
`gsm8k_qwen` config on it: GRPO, 16 prompts x 8 samples, prompt 128 + 256 new tokens,
one optimizer step per iteration (grad_accum 16: microbatches of 8 rows), beta 0.04,
bf16 compute over float32 master weights.

Two fresh processes share one compilation-cache folder: **cold** (empty cache: compiles
and writes) and **warm** (loads). Each reports the seconds from process start to the
end of its first RL iteration, the first call of each program, then `--iters` timed
iterations (median), each cut into rollout program / host reward / learner program
(`train.split_rl`; synchronised between phases, as the split iteration is anyway).
Printed as a markdown table:

* compile: first call minus a steady call, per program; cold and warm start;
* seconds per iteration, rollout (generation) tokens/s = rows x new tokens / rollout s;
* learner MFU = model FLOPs / learner s / peak bf16 FLOP/s, model FLOPs = 2·N per token
  of the reference pass + 6·N per token of the policy's forward and backward, tokens =
  B·P (the prompt once per group) + B·G·T (N: parameters without the embedding, plus
  the LM head's V·D on the B·G·T completion positions);
* decode: see `benchmarks/sampling_bench.py --preset=qwen0.5b --batch=32|128`;
* peak device memory (`memory_stats()["peak_bytes_in_use"]`; n/a on a CPU).

Peaks (`--peak_flops`) default by device kind (H100/H200: 989 TFLOP/s dense bf16).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()  # process start (imports included in the start-up time)

# The timed processes may use most of the device (sampling_bench, imported next, keeps
# half of it for torch, which this script does not run); the parent builds the model on
# the CPU (`main`), so it holds none.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")

# Model shapes and peak FLOP/s by device kind: sampling_bench's (same folder).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling_bench import PEAKS, PRESETS

PEAK_FLOPS = {kind: flops for kind, (flops, _) in PEAKS.items()}


def _prepare(args, root: str) -> dict:
    """Model, tokenizer and GSM8K copy under `root`; returns their paths."""
    import jax
    import numpy as np
    from flax import nnx

    from r1jax._testing import GSM8K_PROBLEMS, byte_level_bpe, write_tokenizer
    from r1jax.models import CausalLM
    from r1jax.models.hf import config_from_hf, save_pretrained
    from r1jax.tasks.gsm8k import R1_TEMPLATE

    rows = []
    for name in ("train.jsonl", "test.jsonl"):
        path = os.path.join(args.gsm8k, name)
        if os.path.isfile(path):
            with open(path) as f:
                rows.append([json.loads(line) for line in f if line.strip()])
    if len(rows) != 2:
        print(f"warning: no GSM8K at {args.gsm8k!r}: the test problems of r1jax._testing instead")
        rows = [[{"question": q, "answer": a} for q, a in GSM8K_PROBLEMS]] * 2
    prompts = [R1_TEMPLATE.format(question=r["question"]) for r in rows[0]]
    tok = byte_level_bpe(prompts + [r["answer"] for r in rows[0]], args.tokenizer_vocab)
    model_dir, data_dir = os.path.join(root, "model"), os.path.join(root, "gsm8k")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)
    write_tokenizer(tok, model_dir)
    kept = []
    for name, part in zip(("train.jsonl", "test.jsonl"), rows):
        fits = [
            r
            for r in part
            if len(tok.encode(R1_TEMPLATE.format(question=r["question"])).ids) <= args.prompt_len
        ]
        kept.append(len(fits))
        with open(os.path.join(data_dir, name), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in fits)
    hf = dict(
        PRESETS[args.preset],
        model_type="qwen2",
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    cfg = config_from_hf(hf, dtype="float32")
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    eos = tok.token_to_id("<|endoftext|>")
    save_pretrained(model, model_dir, config_extra={"eos_token_id": eos})
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return {"model": model_dir, "data": data_dir, "params": n, "kept": kept}


def _config(args, paths):
    from r1jax.config import validate
    from r1jax.configs.gsm8k_qwen import get_config

    c = get_config()
    with c.unlocked():
        c.pretrained = paths["model"]
        c.task_kwargs.path = paths["data"]
        c.max_prompt_len, c.max_new_tokens = args.prompt_len, args.new_tokens
        c.model.dtype = args.dtype
        c.model.layer_loop = args.layer_loop
        c.rl.update(
            prompts_per_iter=args.prompts,
            group_size=args.samples,
            num_minibatches=1,  # one optimizer step per iteration
            grad_accum=args.prompts * args.samples // 8,  # microbatches of 8 rows
            kl_coef=0.04,
            iterations=args.iters + 1,
        )
        c.eval.num_problems = 8
        c.reward.num_workers = args.reward_workers
    validate(c)
    return c


def _child(args) -> dict:
    """One process: enable the cache, build the experiment, time the iterations."""
    from r1jax import compile_cache

    compile_cache.enable(args.cache)
    import jax

    from r1jax.train.experiment import Experiment

    paths = json.loads(args.paths)
    c = _config(args, paths)
    exp = Experiment(c, os.path.join(args.workdir, f"run_{args.child}"))
    sync = jax.block_until_ready
    try:
        state = exp.start_rl(exp.init_state)  # donated, and let go as the trainer does
        exp.init_state = None
        split = exp.rl_fn
        times = []
        for i in range(args.iters + 1):
            batch = exp.device_batch(exp.rl_batch(i))
            t = [time.perf_counter()]
            roll = sync(split.rollout_fn(state, batch))
            t.append(time.perf_counter())
            scores, token_rewards = split._host(roll)
            t.append(time.perf_counter())
            state, m = sync(split.learn_fn(state, batch, roll, scores, token_rewards))
            t.append(time.perf_counter())
            times.append([b - a for a, b in itertools.pairwise(t)])
            if i == 0:
                start_s, ref_kl = t[-1] - T0, float(m["ref_kl"])
        stats = jax.local_devices()[0].memory_stats() or {}
        med = [statistics.median(x[k] for x in times[1:]) for k in range(3)]
        return {
            "start_s": start_s,
            "first": times[0],
            "steady": med,
            "rows": int(roll.tokens.shape[0]),
            "new_tokens": int(roll.tokens.shape[1]),
            "valid_tokens": float(roll.mask.sum()),
            "peak_bytes": stats.get("peak_bytes_in_use"),
            "limit_bytes": stats.get("bytes_limit"),
            "device": jax.devices()[0].device_kind,
            "ref_kl": ref_kl,  # iteration 0: reference = policy, so 0 when both passes agree
        }
    finally:
        exp.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="qwen0.5b", choices=sorted(PRESETS))
    ap.add_argument("--gsm8k", default="../shared/data/gsm8k")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--prompt_len", type=int, default=128)
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument(
        "--layer_loop",
        default="auto",
        choices=["auto", "unroll", "scan"],
        help="model.layer_loop (auto: one lax.scan over the 24 blocks)",
    )
    ap.add_argument("--tokenizer_vocab", type=int, default=4096)
    ap.add_argument("--reward_workers", type=int, default=4)
    ap.add_argument("--peak_flops", type=float, default=0.0)
    ap.add_argument("--workdir", default="")
    ap.add_argument("--json_out", default="")
    ap.add_argument(
        "--time_limit",
        type=float,
        default=0.0,
        help="seconds for the whole script (0: none): a child still running then is "
        "stopped and what finished is reported",
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--cache", default="", help=argparse.SUPPRESS)
    ap.add_argument("--paths", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return
    import jax

    jax.config.update("jax_platforms", "cpu")  # this process builds files; children measure
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or tmp
        t = time.perf_counter()
        paths = _prepare(args, root)
        prep_s = time.perf_counter() - t
        print(f"prepared in {prep_s:.0f} s: {paths}", flush=True)
        cache = os.path.join(root, "cache")
        res = {}
        for phase in ("cold", "warm"):
            cmd = [sys.executable, os.path.abspath(__file__), f"--child={phase}"]
            cmd += [f"--cache={cache}", f"--paths={json.dumps(paths)}", f"--workdir={root}"]
            cmd += [
                f"--{k}={getattr(args, k)}"
                for k in (
                    "preset",
                    "iters",
                    "prompts",
                    "samples",
                    "prompt_len",
                    "new_tokens",
                    "dtype",
                    "layer_loop",
                    "reward_workers",
                )
            ]
            left = args.time_limit - (time.perf_counter() - T0) if args.time_limit else None
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=left)
            except subprocess.TimeoutExpired as e:
                err = (
                    e.stderr
                    if isinstance(e.stderr, str)
                    else (e.stderr or b"").decode(errors="replace")
                )
                print(f"{phase} run stopped at --time_limit={args.time_limit:g}:\n{err[-3000:]}")
                break
            lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode != 0 or not lines:
                print(f"{phase} run failed ({r.returncode}):\n{r.stderr[-4000:]}")
                break
            res[phase] = json.loads(lines[-1][len("RESULT ") :])
            _save(args, paths, res, {})  # the cold figures survive a failed warm run
    if "cold" not in res:
        sys.exit(1)
    _report(args, paths, res)
    if "warm" not in res:
        sys.exit(1)


def _save(args, paths, res, table) -> None:
    if args.json_out:
        with open(args.json_out + ".tmp", "w") as f:
            json.dump({"paths": paths, "results": res, "table": table}, f, indent=2)
        os.replace(args.json_out + ".tmp", args.json_out)


def _report(args, paths, res) -> None:
    cold = res["cold"]
    warm = res.get("warm")
    p = PRESETS[args.preset]
    v, d = p["vocab_size"], p["hidden_size"]
    n_body = paths["params"] - v * d  # without the (tied) embedding
    rows, t = cold["rows"], cold["new_tokens"]
    prompts = rows // args.samples
    tokens = prompts * args.prompt_len + rows * t
    flops = 8 * n_body * tokens + 8 * v * d * rows * t  # 2 (reference) + 6 (policy) per token
    peak = args.peak_flops or next((f for k, f in PEAK_FLOPS.items() if k in cold["device"]), 0.0)
    roll_s, host_s, learn_s = cold["steady"]
    it_s = sum(cold["steady"])
    fmt_b = lambda b: "n/a" if b is None else f"{b / 2**30:.1f} GiB"
    table = [
        ("device", cold["device"]),
        ("model", f"{args.preset}: {paths['params'] / 1e6:.0f}M parameters, {args.dtype}"),
        (
            "workload",
            (
                f"GRPO {prompts} prompts x {args.samples}, P {args.prompt_len} + T {t}, "
                f"1 optimizer step, beta 0.04 ({paths['kept'][0]} train prompts fit P)"
            ),
        ),
        ("seconds per iteration (median)", f"{it_s:.3f}"),
        ("... rollout program", f"{roll_s:.3f}"),
        ("... host reward", f"{host_s:.3f}"),
        ("... learner program", f"{learn_s:.3f}"),
        ("generation tokens/s (all rows x T)", f"{rows * t / roll_s:,.0f}"),
        (
            "learner MFU",
            f"{flops / learn_s / peak:.1%}"
            if peak
            else f"n/a ({flops / learn_s / 1e9:.0f} GFLOP/s)",
        ),
        ("compile, rollout program (cold)", f"{cold['first'][0] - roll_s:.1f} s"),
        ("compile, learner program (cold)", f"{cold['first'][2] - learn_s:.1f} s"),
        (
            "compile, both (warm: cache loads)",
            f"{warm['first'][0] + warm['first'][2] - roll_s - learn_s:.1f} s" if warm else "n/a",
        ),
        ("start to first iteration done, cold", f"{cold['start_s']:.1f} s"),
        (
            "start to first iteration done, warm",
            f"{warm['start_s']:.1f} s" if warm else "n/a (the warm run did not finish)",
        ),
        (
            "peak device memory",
            fmt_b(cold["peak_bytes"])
            + (f" (of {fmt_b(cold['limit_bytes'])} allowed)" if cold.get("limit_bytes") else ""),
        ),
        ("ref_kl at iteration 0 (0 = both passes agree)", f"{cold['ref_kl']:.3g}"),
    ]
    print("\n| measure | r1jax |\n|---|---|")
    for k, val in table:
        print(f"| {k} | {val} |")
    _save(args, paths, res, dict(table))


if __name__ == "__main__":
    main()
