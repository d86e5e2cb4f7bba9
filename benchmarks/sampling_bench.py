"""Sampling throughput: our jitted `generate` vs Hugging Face `transformers` `generate`.

  python benchmarks/sampling_bench.py [--preset=tiny|qwen0.5b] [--batch=64]
      [--prompt_len=32] [--new_tokens=64] [--top_p=0.95] [--temperature=1.0]
      [--repeats=5] [--dtype=float32|bfloat16] [--torch_threads=1,2] [--hlo_check]
      [--fused_projections=auto|on] [--reuse_cpu_buffers] [--json_out=PATH]

On a GPU machine: `PYTHONPATH=src python3 benchmarks/sampling_bench.py --preset=qwen0.5b`
(bfloat16 on both sides by default there; the torch model goes on `cuda`).

Both sides run the same random Qwen2-architecture model (the transformers
`Qwen2ForCausalLM` is built from a `Qwen2Config`, its weights are copied into our
`CausalLM`, and the prefill logits of the two are compared), on the same prompts (all
tokens real, no padding), producing the same number of tokens: EOS is disabled on both
sides and transformers gets `min_new_tokens = max_new_tokens`, `top_k=0` (its default
top-k of 50 would be extra work we don't do). Times are medians over `--repeats` calls
after a warm-up call, synchronised (`block_until_ready`, `torch.cuda.synchronize`); our
compile time is reported separately. tokens/s counts B * T generated tokens.

Also reported: our prefill alone (jitted separately), with prefill MFU = FLOPs / time /
peak FLOP/s, FLOPs = 2 * (params - V*D) * B * P + 2 * V*D * B (weight matmuls only:
the LM head, tied to the embedding, runs on the last position only, in ours as in
transformers' generate), and decode bandwidth utilisation = (param bytes + KV-cache bytes
read per step) * (T - 1) / decode time / peak bytes/s, where decode time = generate -
prefill and the cache read per step is the whole fixed-size [B, P + T] buffer of every
layer, which our attention reads each step. Peaks come from a table keyed by device kind
(or --peak_flops / --peak_bw); on a CPU they are n/a.

If torch or transformers is missing, only our side runs.
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # leave room for torch

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax._testing import cache_sized_copies
from r1jax.models import CausalLM, ModelConfig
from r1jax.sampling import generate, prefill

# Qwen2-architecture shapes. tiny: ~5.3M parameters (2.1M of them the tied embedding).
PRESETS = {
    "tiny": {
        "vocab_size": 8192,
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 768,
        "rope_theta": 1e6,
    },
    # Qwen2.5-0.5B dimensions (494M parameters, tied embedding).
    "qwen0.5b": {
        "vocab_size": 151936,
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "rope_theta": 1e6,
    },
}

# (peak dense bf16 FLOP/s, peak HBM bytes/s) by substring of the JAX device kind.
PEAKS = {
    "H200": (989e12, 4.8e12),
    "H100": (989e12, 3.35e12),  # SXM
}


def _median(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _hf_model(preset, dtype, device):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    p = PRESETS[preset]
    config = Qwen2Config(
        vocab_size=p["vocab_size"],
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": p["rope_theta"]},
        use_sliding_window=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    return model.to({"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]).eval()


def _our_model(preset, dtype, hf):
    """Our CausalLM with the transformers model's weights (random weights if hf is None)."""
    p = PRESETS[preset]
    cfg = ModelConfig(
        vocab_size=p["vocab_size"],
        d_model=p["hidden_size"],
        n_layers=p["num_hidden_layers"],
        n_heads=p["num_attention_heads"],
        n_kv_heads=p["num_key_value_heads"],
        head_dim=p["hidden_size"] // p["num_attention_heads"],
        mlp_dim=p["intermediate_size"],
        rope_theta=p["rope_theta"],
        rms_eps=1e-6,
        qkv_bias=True,
        tie_embeddings=True,
        dtype=dtype,
    )
    if hf is None:
        model = CausalLM(cfg, rngs=nnx.Rngs(0))
    else:
        model = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
        sd = {k: v.detach().float().cpu().numpy() for k, v in hf.state_dict().items()}

        def put(var, name, transpose=False):
            x = sd.pop(name)
            var.value = jnp.asarray(x.T if transpose else x)

        put(model.model.embed.embedding, "model.embed_tokens.weight")
        put(model.model.norm.scale, "model.norm.weight")
        for i, layer in enumerate(model.model.layers):
            pre = f"model.layers.{i}."
            put(layer.input_norm.scale, pre + "input_layernorm.weight")
            put(layer.post_attn_norm.scale, pre + "post_attention_layernorm.weight")
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin = getattr(layer.attn, n)
                put(lin.kernel, pre + f"self_attn.{n}.weight", transpose=True)
                if n != "o_proj":
                    put(lin.bias, pre + f"self_attn.{n}.bias")
            for n in ("gate_proj", "up_proj", "down_proj"):
                put(getattr(layer.mlp, n).kernel, pre + f"mlp.{n}.weight", transpose=True)
        sd.pop("lm_head.weight", None)  # tied
        if sd:
            raise ValueError(f"unmapped transformers weights: {sorted(sd)}")
    # Inference weights in the compute dtype (as the transformers model holds them), so a
    # decode step reads bf16 weights rather than casting float32 ones every step.
    graphdef, state = nnx.split(model)
    state = jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(dtype)), state)
    return cfg, graphdef, state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt_len", type=int, default=32)
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top_p", type=float, default=0.95)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="", help="float32 | bfloat16 (default: f32 on CPU)")
    ap.add_argument("--peak_flops", type=float, default=0.0, help="override, FLOP/s")
    ap.add_argument("--peak_bw", type=float, default=0.0, help="override, bytes/s")
    ap.add_argument("--skip_hf", action="store_true", help="time our generate only")
    ap.add_argument(
        "--torch_threads",
        default="",
        help="comma-separated torch CPU thread counts to time transformers at (default: "
        "torch's own); the ratio is against the fastest",
    )
    ap.add_argument(
        "--fused_projections",
        default="auto",
        choices=("auto", "on"),
        help="on: the decode step's q/k/v and gate/up as one matmul each on any backend "
        "(auto: on CPU only; models.transformer.SIDE_BY_SIDE_BACKENDS)",
    )
    ap.add_argument(
        "--reuse_cpu_buffers",
        action="store_true",
        help="the setting r1jax-train applies on one CPU device (r1jax.host_memory: programs "
        "on the calling thread, glibc keeps freed blocks); it holds for the whole process, "
        "transformers' side included",
    )
    ap.add_argument("--json_out", default="")
    ap.add_argument(
        "--hlo_check",
        action="store_true",
        help="count copies/transposes of KV-cache-sized buffers in the compiled decode loop",
    )
    args = ap.parse_args()
    if args.fused_projections == "on":
        from r1jax.models import transformer

        transformer.SIDE_BY_SIDE_BACKENDS = ("cpu", "gpu", "tpu")  # jax.default_backend()

    buffers = "off"
    if args.reuse_cpu_buffers:  # before JAX's backend starts
        from r1jax import host_memory

        buffers = host_memory.reuse_cpu_buffers()
    dev = jax.devices()[0]
    on_cpu = dev.platform == "cpu"
    dtype = args.dtype or ("float32" if on_cpu else "bfloat16")
    b, p, t = args.batch, args.prompt_len, args.new_tokens

    hf = None
    hf_note = ""
    if not args.skip_hf:
        try:
            import torch
            import transformers

            torch_device = "cpu" if on_cpu else "cuda"
            hf = _hf_model(args.preset, dtype, torch_device)
            hf_note = (
                f"torch {torch.__version__} ({torch_device}, default {torch.get_num_threads()} "
                f"threads), transformers {transformers.__version__}"
            )
        except ImportError as e:
            hf_note = f"transformers side skipped: {e}"
    cfg, graphdef, state = _our_model(args.preset, dtype, hf)
    n_params = sum(x.size for x in jax.tree.leaves(state))
    itemsize = jnp.dtype(dtype).itemsize

    rng = np.random.default_rng(0)
    prompt_np = rng.integers(1, cfg.vocab_size, (b, p)).astype(np.int32)
    prompt, mask = jnp.asarray(prompt_np), jnp.ones((b, p), bool)
    key = jax.random.PRNGKey(0)

    def run_gen(st, pr, m, k, top_p=args.top_p):
        return generate(
            nnx.merge(graphdef, st),
            pr,
            m,
            k,
            max_new_tokens=t,
            temperature=args.temperature,
            eos_id=-1,  # never sampled: every row runs T steps
            pad_id=0,
            top_p=top_p,
        )

    def run_prefill(st, pr, m):
        return prefill(nnx.merge(graphdef, st), pr, m, t)

    t0 = time.perf_counter()
    gen = jax.jit(run_gen).lower(state, prompt, mask, key).compile()
    t_compile = time.perf_counter() - t0
    pre = jax.jit(run_prefill).lower(state, prompt, mask).compile()

    box = {}

    def ours():
        box["r"] = gen(state, prompt, mask, key)

    def ours_prefill():
        box["p"] = pre(state, prompt, mask)

    jsync = lambda: jax.block_until_ready(box)
    t_ours = _median(ours, args.repeats, jsync)
    t_pre = _median(ours_prefill, args.repeats, jsync)
    roll = box["r"]

    # Where decode time goes: generate without the nucleus (top_p=1 skips it), and the
    # sampling math timed alone on one step's logits (on a GPU a lone call also pays
    # kernel launches that the compiled decode loop mostly avoids).
    from r1jax.sampling import _scaled_logp, categorical_two_level, nucleus_logp, sample_softmax

    gen_no_p = jax.jit(lambda st, pr, m, k: run_gen(st, pr, m, k, top_p=1.0))
    logits_bv = jnp.asarray(box["p"][0])
    keys_b = jax.random.split(key, b)
    parts = {
        "generate with top_p=1 (no nucleus), whole call": (gen_no_p, (state, prompt, mask, key)),
        "alone: log-softmax (temperature)": (
            jax.jit(lambda x: _scaled_logp(x, 1.0)),
            (logits_bv,),
        ),
        f"alone: log-softmax + nucleus (top_p={args.top_p})": (
            jax.jit(lambda x: nucleus_logp(_scaled_logp(x, 1.0), args.top_p)),
            (logits_bv,),
        ),
        "alone: categorical draw (two-level Gumbel, per-row keys)": (
            jax.jit(jax.vmap(categorical_two_level)),
            (keys_b, logits_bv),
        ),
        "alone: no-nucleus draw + log-normaliser + entropy (one exp pass)": (
            jax.jit(sample_softmax),
            (keys_b, logits_bv.astype(jnp.float32)),
        ),
    }
    breakdown = {}
    for name, (fn, fargs) in parts.items():

        def call(fn=fn, fargs=fargs):
            box["x"] = fn(*fargs)

        breakdown[name] = _median(call, args.repeats, jsync)

    hlo_copies = None
    if args.hlo_check:
        n_cache = b * (p + t) * cfg.n_kv_heads * cfg.head_dim
        hlo_copies = cache_sized_copies(gen.as_text(), n_cache)
    assert roll.tokens_bt.shape == (b, t) and bool(np.asarray(roll.mask_bt).all())

    logit_err = None
    t_hf = t_hf_no_p = None
    hf_times = {}  # torch threads (0: torch's default) -> seconds
    if hf is not None:
        import torch

        dev_t = next(hf.parameters()).device
        ids = torch.as_tensor(prompt_np, dtype=torch.long, device=dev_t)
        am = torch.ones_like(ids)
        tsync = (lambda: torch.cuda.synchronize()) if dev_t.type == "cuda" else (lambda: None)
        with torch.inference_mode():
            hf_last = hf(input_ids=ids, attention_mask=am).logits[:, -1].float().cpu().numpy()
        ours_last = np.asarray(box["p"][0], np.float32)
        logit_err = float(np.abs(hf_last - ours_last).max() / (np.abs(hf_last).max() + 1e-9))

        def theirs(top_p=args.top_p):
            with torch.inference_mode():
                out = hf.generate(
                    input_ids=ids,
                    attention_mask=am,
                    do_sample=args.temperature > 0,
                    temperature=args.temperature if args.temperature > 0 else None,
                    top_p=top_p if args.temperature > 0 else None,
                    top_k=0,
                    max_new_tokens=t,
                    min_new_tokens=t,
                    eos_token_id=None,
                    pad_token_id=0,
                )
            box["hf"] = out

        default_threads = torch.get_num_threads()
        for n in [int(x) for x in args.torch_threads.split(",") if x] or [0]:
            torch.set_num_threads(n or default_threads)
            hf_times[n] = _median(theirs, args.repeats, tsync)
            assert tuple(box["hf"].shape) == (b, p + t), box["hf"].shape
        t_hf = min(hf_times.values())
        # The same without the nucleus (top_p = 1 on both sides), at the faster thread count.
        fastest = min(hf_times, key=hf_times.get)
        torch.set_num_threads(fastest or default_threads)
        t_hf_no_p = _median(lambda: theirs(top_p=1.0), args.repeats, tsync)
        torch.set_num_threads(default_threads)

    peak_flops, peak_bw = None, None
    for name, (f, bw) in PEAKS.items():
        if not on_cpu and name in dev.device_kind:
            peak_flops, peak_bw = f, bw
    peak_flops = args.peak_flops or peak_flops
    peak_bw = args.peak_bw or peak_bw
    t_decode = t_ours - t_pre
    s = p + t
    kv_bytes = 2 * cfg.n_layers * b * s * cfg.n_kv_heads * cfg.head_dim * itemsize
    step_bytes = n_params * itemsize + kv_bytes
    head = cfg.vocab_size * cfg.d_model  # the LM head runs on the last position only
    prefill_flops = 2 * (n_params - head) * b * p + 2 * head * b
    mfu = prefill_flops / t_pre / peak_flops if peak_flops else None
    bw_util = step_bytes * (t - 1) / t_decode / peak_bw if peak_bw else None
    tok = b * t

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"device {dev.device_kind} ({dev.platform}), jax {jax.__version__}; {hf_note}"
    )
    print(
        f"model: preset {args.preset}, {n_params / 1e6:.2f}M params, {dtype}; batch {b}, "
        f"prompt {p}, new tokens {t}, temperature {args.temperature}, top_p {args.top_p}; "
        f"median of {args.repeats}; CPU buffer reuse {buffers}"
    )
    if logit_err is not None:
        print(f"prefill last-position logits, max |ours - HF| / max |HF|: {logit_err:.1e}")
    print()
    print("| impl | tokens/s | ms | ratio ours/HF |")
    print("|---|---|---|---|")
    ratio = t_hf / t_ours if t_hf else None
    print(f"| r1jax `generate` (jit) | {tok / t_ours:,.0f} | {t_ours * 1e3:.1f} | – |")
    for n, sec in hf_times.items():
        threads = f", {n} torch threads" if n else ""
        print(
            f"| transformers `generate`{threads} | {tok / sec:,.0f} | {sec * 1e3:.1f} | "
            f"{sec / t_ours:.1f}x |"
        )
    if ratio:
        print(f"\nours / fastest transformers: {ratio:.1f}x")
    t_ours_no_p = breakdown["generate with top_p=1 (no nucleus), whole call"]
    print(f"\nwithout the nucleus (top_p = 1 on both sides, {b} x {t} tokens):\n")
    print("| impl | tokens/s | ms | ratio ours/HF |")
    print("|---|---|---|---|")
    print(f"| r1jax `generate` (jit) | {tok / t_ours_no_p:,.0f} | {t_ours_no_p * 1e3:.1f} | – |")
    if t_hf_no_p:
        print(
            f"| transformers `generate` | {tok / t_hf_no_p:,.0f} | {t_hf_no_p * 1e3:.1f} | "
            f"{t_hf_no_p / t_ours_no_p:.1f}x |"
        )
    print()
    fmt = lambda x: f"{x:.1%}" if x is not None else "n/a"
    print("| ours | value |")
    print("|---|---|")
    print(f"| compile (generate, first lower + compile) | {t_compile:.1f} s |")
    print(f"| prefill alone ({b} x {p} tokens) | {t_pre * 1e3:.2f} ms |")
    print(f"| prefill MFU ({prefill_flops / 1e9:.1f} GFLOP) | {fmt(mfu)} |")
    print(
        f"| decode, {t - 1} steps (generate - prefill) | {t_decode * 1e3:.1f} ms "
        f"({t_decode / (t - 1) * 1e3:.2f} ms/step) |"
    )
    print(
        f"| decode bytes/step (params {n_params * itemsize / 1e6:.1f} MB + KV cache "
        f"{kv_bytes / 1e6:.1f} MB) | bandwidth utilisation {fmt(bw_util)} |"
    )
    print(f"| peaks used | {peak_flops or 'n/a'} FLOP/s, {peak_bw or 'n/a'} B/s |")
    print()
    print("| breakdown | ms |")
    print("|---|---|")
    for name, sec in breakdown.items():
        print(f"| {name} | {sec * 1e3:.2f} |")
    if hlo_copies is not None:
        print()
        print(
            f"compiled generate: {hlo_copies['loop']} copies/transposes of KV-cache-sized "
            f"buffers in "
            f"the decode loop body ({cfg.n_layers} layers x K and V), "
            f"{hlo_copies['outside']} outside it"
        )

    if args.json_out:
        res = {
            "preset": args.preset,
            "dtype": dtype,
            "device_kind": dev.device_kind,
            "platform": dev.platform,
            "jax": jax.__version__,
            "hf": hf_note,
            "n_params": int(n_params),
            "batch": b,
            "prompt_len": p,
            "new_tokens": t,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "fused_projections": args.fused_projections,
            "cpu_buffers": buffers,
            "repeats": args.repeats,
            "ours_s": t_ours,
            "ours_tokens_per_s": tok / t_ours,
            "hf_s": t_hf,
            "hf_s_by_torch_threads": hf_times,
            "hf_tokens_per_s": tok / t_hf if t_hf else None,
            "ratio": ratio,
            "ours_no_top_p_s": t_ours_no_p,
            "hf_no_top_p_s": t_hf_no_p,
            "ratio_no_top_p": t_hf_no_p / t_ours_no_p if t_hf_no_p else None,
            "compile_s": t_compile,
            "prefill_s": t_pre,
            "prefill_mfu": mfu,
            "decode_s": t_decode,
            "decode_bytes_per_step": step_bytes,
            "decode_bw_util": bw_util,
            "peak_flops": peak_flops,
            "peak_bw": peak_bw,
            "prefill_logit_rel_err": logit_err,
            "step_breakdown_s": breakdown,
            "hlo_cache_copies": hlo_copies,
        }
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
