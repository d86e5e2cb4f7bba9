"""Sampler and RL-iteration throughput per mesh layout, with MFU on accelerators.

  # 8 fake CPU devices (the flag must be set before jax is imported):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
      python benchmarks/mesh_bench.py --model=smoke --layouts="1,1,1;8,1,1;2,2,2;pmap"
  # one GPU, a 103.9M-parameter policy (PPO, 512 rollouts of 128 tokens):
  python benchmarks/mesh_bench.py --model=m100 --layouts=1,1,1 --dtype=bfloat16 \
      --prompts=64 --samples=8 --max_new_tokens=128 --iters=3 --reward_workers=4

A layout is "data,fsdp,tensor" (a `parallel.make_mesh` over the first data·fsdp·tensor
devices, the `jax.jit` path) or "pmap" (the `parallelism=pmap` path over all local
devices). Default: every layout whose product is `jax.device_count()`, plus pmap when
there is more than one device.

For each layout the embedded default config (with the `--model` preset and the batch
flags) is built into an `Experiment` on that mesh, the RL start state is made
(`start_rl`), and three things are timed, each as the median of `--iters` calls after one
compile-and-run call, with `block_until_ready`:

* rollout: the KV-cache sampler alone on prompts × samples rows, jitted with the
  policy's learner shardings and the rows split over data × fsdp (as inside the RL
  iteration), or pmapped with per-device row blocks on the pmap path;
* RL iteration: `Experiment.rl_fn` on a fresh prompt batch (host → device transfer,
  sampling, host rewards via `io_callback`, advantages, policy and critic updates);
* eval: `Experiment.evaluate` of the trained policy on `--eval_problems` held-out
  problems (greedy decoding with the run's decoder, `eval.batch_size` rows a call,
  scoring on the host); on a mesh the decoder splits the rows over data × fsdp
  (`evaluate.make_mesh_decoder`), on the pmap path it runs on one device.

Columns. "sampled tok/s" counts generated positions N·T (N = prompts × samples, T =
max_new_tokens; the fixed-shape sampler computes them all unless every row has ended,
which a freshly initialised policy rarely does). "learner tok/s" counts the tokens the
policy update processes, N·(P+T)·epochs (P = max_prompt_len; left padding included,
as it is computed).

MFU counts model FLOPs, not hardware FLOPs (no rematerialisation, no masked-out waste
beyond the attention convention below), over time × peak × devices:

* per token, a forward pass costs 2·W + 4·layers·heads·head_dim·S, where W is the
  matmul weights (all `kernel`s, plus the embedding when it is tied as the output
  head; the critic's embedding is a lookup and is not counted) and S = P+T is the key
  length every query is scored against (the implementation scores all P+T positions
  under a mask, as in PaLM's MFU convention); backward = 2 × forward;
* rollout: N·(P+T) policy forward tokens (prefill + decode steps);
* RL iteration: the rollout, plus a reference-policy forward over N·(P+T), plus
  epochs × N·(P+T) policy forward+backward; PPO adds a critic forward over N·(P+T)
  and value_epochs × N·(P+T) critic forward+backward.

Peak FLOP/s per chip come from `_PEAKS` by `jax.devices()[0].device_kind` and the
compute dtype (dense bf16; float32 matmuls are counted against the TF32 peak on
NVIDIA GPUs, which is what XLA uses at default precision), or from `--peak_flops`;
"n/a" on CPU. On fake CPU devices (`--xla_force_host_platform_device_count`) every
device shares the same cores, so the table measures partitioning overhead, not speed-up.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from r1jax import config as config_lib
from r1jax import parallel
from r1jax.configs.arith_tiny import get_config
from r1jax.sampling import generate
from r1jax.tokenizer import EOS_ID, PAD_ID
from r1jax.train.experiment import Experiment

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "layouts",
    "",
    "';'-separated layouts: 'data,fsdp,tensor' or 'pmap', e.g. '8,1,1;2,4,1;2,2,2;1,1,8;pmap'. "
    "Default: every data,fsdp,tensor with product jax.device_count(), plus pmap if > 1 device.",
)
flags.DEFINE_enum(
    "model",
    "smoke",
    ["smoke", "default", "m100"],
    "Policy preset: 'smoke' (the smoke config's d32 x 1 layer), 'default' (the embedded "
    "default's d64 x 2 layers), 'm100' (d768 x 12 layers, 12/4 heads of 64, SwiGLU 3072: "
    "103.9M parameters). The PPO critic keeps the config's depth (1 layer) at this width.",
)
flags.DEFINE_integer("prompts", 8, "B, prompts per RL iteration (divisible by data × fsdp)")
flags.DEFINE_integer("samples", 4, "G, samples per prompt (N = B·G rows)")
flags.DEFINE_integer(
    "max_new_tokens",
    None,
    "T, completion tokens (default: the config's 96; the task's references must fit)",
)
flags.DEFINE_integer("max_prompt_len", None, "P, prompt tokens (default: the config's 160)")
flags.DEFINE_integer("minibatches", None, "M, RL minibatches per epoch (default: the config's)")
flags.DEFINE_integer("epochs", None, "K, policy epochs per iteration (default: the config's)")
flags.DEFINE_enum("algo", None, ["ppo", "grpo"], "RL algorithm (default: the config's, ppo)")
flags.DEFINE_string(
    "dtype", None, "compute dtype, config.model.dtype (float32 | bfloat16); default: config's"
)
flags.DEFINE_string(
    "remat", None, "config.model.remat if the model supports it (default: the config's)"
)
flags.DEFINE_integer(
    "reward_workers", None, "verifier worker processes (0 = inline; default: the config's 2)"
)
flags.DEFINE_integer(
    "eval_problems", 64, "held-out problems of the timed greedy evaluation (0: not timed)"
)
flags.DEFINE_integer("iters", 3, "timed calls per measurement (median), after one warm-up")
flags.DEFINE_float("peak_flops", None, "peak FLOP/s per device (overrides the built-in table)")
flags.DEFINE_string("json_out", None, "also write the results as JSON to this path")

M100 = {
    "d_model": 768,
    "n_layers": 12,
    "n_heads": 12,
    "n_kv_heads": 4,
    "head_dim": 64,
    "mlp_dim": 3072,
}

# Dense peak FLOP/s per chip: (bfloat16, float32 as computed at default precision).
# Matched in order against device_kind (first hit wins).
_PEAKS = (
    ("H100 PCIe", (756e12, 378e12)),
    ("H100 NVL", (835e12, 417.5e12)),
    ("H100", (989e12, 494.5e12)),  # SXM; float32 at XLA's default precision uses TF32
    ("H200", (989e12, 494.5e12)),
    ("H20", (148e12, 74e12)),
    ("A100", (312e12, 156e12)),
    ("L4", (121e12, 60e12)),
    ("TPU v4", (275e12, 275e12)),  # TPU float32 matmuls default to bf16 passes
    ("TPU v5 lite", (197e12, 197e12)),
    ("TPU v5e", (197e12, 197e12)),
    ("TPU v5p", (459e12, 459e12)),
    ("TPU v5", (459e12, 459e12)),
    ("TPU v6", (918e12, 918e12)),
)


def peak_flops(dtype: str) -> float | None:
    if FLAGS.peak_flops:
        return FLAGS.peak_flops
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    kind = dev.device_kind
    for name, (bf16, f32) in _PEAKS:
        if name.lower() in kind.lower():
            return bf16 if dtype in ("bfloat16", "float16") else f32
    return None


def parse_layouts(spec: str, n: int) -> list:
    if not spec.strip():
        out = []
        for d in sorted((x for x in range(1, n + 1) if n % x == 0), reverse=True):
            rest = n // d
            for f in sorted((x for x in range(1, rest + 1) if rest % x == 0), reverse=True):
                out.append((d, f, rest // f))
        return out + (["pmap"] if n > 1 else [])
    out = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        if part == "pmap":
            out.append("pmap")
            continue
        try:
            dft = tuple(int(x) for x in part.split(","))
        except ValueError:
            dft = ()
        if len(dft) != 3 or min(dft) < 1:
            raise app.UsageError(f"--layouts: {part!r} is not 'data,fsdp,tensor' or 'pmap'")
        out.append(dft)
    return out


def layout_name(layout) -> str:
    return layout if isinstance(layout, str) else ",".join(map(str, layout))


def build_config(layout):
    c = get_config("")
    if FLAGS.model == "smoke":
        c.model.update(dict(get_config("smoke").model))
    elif FLAGS.model == "m100":
        c.model.update(M100)
    if FLAGS.dtype:
        c.model.dtype = FLAGS.dtype
    if FLAGS.remat:
        c.model["remat"] = FLAGS.remat
    if FLAGS.max_new_tokens:
        c.max_new_tokens = FLAGS.max_new_tokens
    if FLAGS.max_prompt_len:
        c.max_prompt_len = FLAGS.max_prompt_len
    r = c.rl
    r.prompts_per_iter, r.group_size = FLAGS.prompts, FLAGS.samples
    if FLAGS.algo:
        r.algo = FLAGS.algo
    if FLAGS.epochs:
        r.epochs = FLAGS.epochs
    if FLAGS.minibatches:
        r.num_minibatches = FLAGS.minibatches
    # SFT is not run; its row count only has to split over the batch shards.
    c.sft.rows = FLAGS.prompts
    if FLAGS.reward_workers is not None:
        c.reward.num_workers = FLAGS.reward_workers
    if FLAGS.eval_problems:
        c.eval.num_problems = FLAGS.eval_problems
    if layout == "pmap":
        c.parallelism = "pmap"
        c.mesh.update({"data": -1, "fsdp": 1, "tensor": 1})
    else:
        c.parallelism = "jit"
        c.mesh.update(dict(zip(("data", "fsdp", "tensor"), layout)))
    return c


def _leaf_name(path) -> str:
    k = path[-1]
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def count_params(params, tied: bool) -> tuple[int, int]:
    """(all parameters, matmul weights: kernels, plus the embedding if it is the head)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    total = sum(math.prod(x.shape) for _, x in leaves)
    names = ("kernel", "embedding") if tied else ("kernel",)
    matmul = sum(math.prod(x.shape) for p, x in leaves if _leaf_name(p) in names)
    return int(total), int(matmul)


def _median_time(fn, iters):
    """(first call seconds, median of `iters` further calls, last output)."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(0))
    first = time.perf_counter() - t
    times = []
    for i in range(1, iters + 1):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(i))
        times.append(time.perf_counter() - t)
    return first, statistics.median(times), out


def _sampler(exp, state, prompt, mask, temperature):
    """A function i -> Rollout of the current policy, laid out as in the RL iteration."""
    c = exp.c
    kw = {
        "max_new_tokens": c.max_new_tokens,
        "temperature": temperature,
        "eos_id": EOS_ID,
        "pad_id": PAD_ID,
    }
    if exp.pmap is not None:
        from r1jax.train.pmap import AXIS, shard_batch

        n, devices = exp.pmap.n_devices, exp.pmap.devices

        def gen_local(params, p, m, key):
            offset = jax.lax.axis_index(AXIS) * p.shape[0]
            model = nnx.merge(exp.graphs.policy, params)
            return generate(model, p, m, key, row_offset=offset, **kw)

        gen = jax.pmap(gen_local, axis_name=AXIS, in_axes=(0, 0, 0, None), devices=devices)
        p_d, m_d = shard_batch((prompt, mask), n, devices)
        return lambda i: gen(state.policy, p_d, m_d, jax.random.PRNGKey(i))

    gen = jax.jit(
        lambda params, p, m, key: generate(nnx.merge(exp.graphs.policy, params), p, m, key, **kw),
        in_shardings=(exp.state_sh.policy, exp.data_sh, exp.data_sh, exp.repl),
    )
    p_d, m_d = jax.device_put((prompt, mask), exp.data_sh)
    return lambda i: gen(state.policy, p_d, m_d, jax.random.PRNGKey(i))


def bench_layout(layout, workdir) -> dict:
    c = build_config(layout)
    mesh = None if layout == "pmap" else parallel.make_mesh(*layout)
    exp = Experiment(c, workdir, mesh)
    try:
        v = exp.tokenizer.vocab_size
        pcfg, vcfg = config_lib.model_config(c, v), config_lib.model_config(c, v, value=True)
        p_total, p_matmul = count_params(exp.init_state.policy, pcfg.tie_embeddings)
        v_total, v_matmul = count_params(exp.init_state.value, False)
        r = c.rl
        n_rows, t_new, p_len = r.prompts_per_iter * r.group_size, c.max_new_tokens, c.max_prompt_len
        seq = p_len + t_new
        devices = exp.pmap.n_devices if exp.pmap is not None else int(exp.mesh.size)

        state = exp.start_rl(exp.put_state(exp.init_state))
        batches = [exp.rl_batch(i) for i in range(FLAGS.iters + 1)]
        prompt = np.repeat(batches[0].prompt, r.group_size, 0)
        pmask = np.repeat(batches[0].prompt_mask, r.group_size, 0)

        # (a) the sampler alone (before the RL steps, which donate the state's buffers)
        gen = _sampler(exp, state, prompt, pmask, r.temperature)
        t_gen_first, t_gen, roll = _median_time(gen, FLAGS.iters)
        valid = float(np.asarray(roll.mask_bt).sum())
        del gen, roll

        # (b) one full RL iteration
        holder = {"s": state}

        def rl(i):
            holder["s"], m = exp.rl_fn(holder["s"], exp.device_batch(batches[i]))
            return holder["s"], m

        t_rl_first, t_rl, (_, metrics) = _median_time(rl, FLAGS.iters)
        completion_len = float(jax.device_get(metrics["completion_len"]))

        # (c) the greedy evaluation of the trained policy (`Experiment.evaluate`: the
        # decoder on the run's layout, host scoring), `eval.batch_size` rows a call
        t_eval_first = t_eval = None
        if FLAGS.eval_problems:
            params = exp.eval_params(exp.host_state(holder["s"]))
            t_eval_first, t_eval, _ = _median_time(lambda i: exp.evaluate(params), FLAGS.iters)
            del params
        holder.clear()  # free the layout's device buffers before the next one
    finally:
        exp.close()
    gc.collect()

    def fwd(matmul, cfg):  # forward FLOPs per token
        return 2 * matmul + 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq

    tokens = n_rows * seq
    f_pol, f_val = fwd(p_matmul, pcfg), fwd(v_matmul, vcfg)
    rollout_flops = tokens * f_pol
    rl_flops = rollout_flops + tokens * f_pol * (1 + 3 * r.epochs)  # ref fwd + policy updates
    if r.algo == "ppo":
        rl_flops += tokens * f_val * (1 + 3 * r.value_epochs)  # values + critic updates
    peak = peak_flops(c.model.dtype)
    mfu = lambda flops, t: None if peak is None else flops / t / (peak * devices)
    return {
        "layout": layout_name(layout),
        "devices": devices,
        "policy_params": p_total,
        "critic_params": v_total if r.algo == "ppo" else 0,
        "rows": n_rows,
        "prompt_len": p_len,
        "new_tokens": t_new,
        "rollout_first_s": t_gen_first,
        "rollout_s": t_gen,
        "sampled_tokens_per_s": n_rows * t_new / t_gen,
        "valid_sampled_tokens_per_s": valid / t_gen,
        "rollout_flops": rollout_flops,
        "rollout_mfu": mfu(rollout_flops, t_gen),
        "rl_first_s": t_rl_first,
        "rl_s": t_rl,
        "learner_tokens_per_s": tokens * r.epochs / t_rl,
        "rl_flops": rl_flops,
        "rl_mfu": mfu(rl_flops, t_rl),
        "completion_len": completion_len,
        "eval_first_s": t_eval_first,
        "eval_s": t_eval,
        "eval_problems": FLAGS.eval_problems,
        "eval_batch": c.eval.batch_size,
        "peak_flops_per_device": peak,
        "load_avg_1m": os.getloadavg()[0],  # other work on the host skews CPU timings
    }


def _ms(x):
    return "n/a" if x is None else f"{x * 1e3:,.0f}"


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    n_dev = jax.device_count()
    layouts = parse_layouts(FLAGS.layouts, n_dev)
    c = build_config(layouts[0] if layouts else (1, 1, 1))
    config_lib.validate(c)
    dev = jax.devices()[0]
    header = (
        f"machine: {platform.processor() or platform.machine()}, {n_dev} x {dev.platform} "
        f"({dev.device_kind}), jax {jax.__version__}\n"
        f"model: {FLAGS.model} (d_model {c.model.d_model}, {c.model.n_layers} layers, "
        f"{c.model.n_heads}/{c.model.n_kv_heads} heads of {c.model.head_dim}, mlp "
        f"{c.model.mlp_dim}, dtype {c.model.dtype}); {c.rl.algo} with "
        f"{c.rl.prompts_per_iter} prompts x {c.rl.group_size} samples, P={c.max_prompt_len}, "
        f"T={c.max_new_tokens}, K={c.rl.epochs}, M={c.rl.num_minibatches}, "
        f"reward workers {c.reward.num_workers}; median of {FLAGS.iters} after a warm-up"
    )
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for layout in layouts:
            try:
                res = bench_layout(layout, workdir)
            except (config_lib.ConfigError, ValueError) as e:
                res = {"layout": layout_name(layout), "skipped": str(e)}
                print(f"layout {layout_name(layout)}: skipped: {e}", flush=True)
            else:
                print(
                    f"layout {res['layout']}: rollout {res['rollout_s'] * 1e3:.0f} ms, "
                    f"RL iteration {res['rl_s'] * 1e3:.0f} ms "
                    f"(first calls {res['rollout_first_s']:.1f} s / {res['rl_first_s']:.1f} s; "
                    f"host load {res['load_avg_1m']:.1f})",
                    flush=True,
                )
                if FLAGS.model == "m100" and res["policy_params"] < 100e6:
                    raise AssertionError(f"m100 has {res['policy_params']:,} < 100M params")
            rows.append(res)

    done = [r for r in rows if "skipped" not in r]
    if done:
        r0 = done[0]
        print(
            f"\npolicy parameters: {r0['policy_params']:,}"
            + (f"; critic parameters: {r0['critic_params']:,}" if r0["critic_params"] else "")
        )
    print()
    print(
        "| layout (data,fsdp,tensor) | devices | rollout ms | sampled tok/s | rollout MFU "
        "| RL iteration ms | learner tok/s | RL MFU | first RL call s | eval ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['layout']} | skipped: {r['skipped'][:80]} |||||||||")
            continue
        print(
            f"| {r['layout']} | {r['devices']} | {r['rollout_s'] * 1e3:,.0f} "
            f"| {r['sampled_tokens_per_s']:,.0f} | {_pct(r['rollout_mfu'])} "
            f"| {r['rl_s'] * 1e3:,.0f} | {r['learner_tokens_per_s']:,.0f} "
            f"| {_pct(r['rl_mfu'])} | {r['rl_first_s']:.1f} | {_ms(r['eval_s'])} |"
        )
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(
                {"header": header, "argv": argv, "model": FLAGS.model, "results": rows}, f, indent=2
            )


if __name__ == "__main__":
    app.run(main)
