"""Compile time of a decoder stack, unrolled blocks vs `lax.scan` over stacked params.

  python benchmarks/scan_layers_bench.py [--preset=tiny|qwen0.5b] [--layers=8,24,48]
      [--batch=8] [--seq=64] [--dtype=float32|bfloat16] [--remat]

Issue 22 asks whether scanning over layers cuts the RL iteration's cold compile. This
measures the question on its own: `jit(value_and_grad(sum(stack(x)**2)))` over `L` of our
`Block`s (the model's own decoder block, Qwen2 shapes), once as a Python loop over the
blocks (`model.layer_loop=unroll`) and once as one `lax.scan` over their parameters
stacked inside the program (`scan`; `transformer.scan_blocks`), and prints trace+lower
seconds, compile seconds, the step time after compilation and the largest loss
difference between the two (the same computation).
Nothing is cached (`jax_enable_compilation_cache` off).
"""

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.transformer import Block, ModelConfig, apply_block, scan_blocks

PRESETS = {
    "tiny": {
        "vocab_size": 256,
        "d_model": 128,
        "n_heads": 4,
        "n_kv_heads": 2,
        "head_dim": 32,
        "mlp_dim": 384,
    },
    "qwen0.5b": {
        "vocab_size": 151936,
        "d_model": 896,
        "n_heads": 14,
        "n_kv_heads": 2,
        "head_dim": 64,
        "mlp_dim": 4864,
        "qkv_bias": True,
    },
}


def measure(preset, layers, batch, seq, dtype, remat):
    cfg = ModelConfig(**PRESETS[preset], n_layers=layers, dtype=dtype)
    blocks = [Block(cfg, rngs=nnx.Rngs(i)) for i in range(layers)]
    gdef, _ = nnx.split(blocks[0])
    states = [nnx.state(b) for b in blocks]
    x = jax.random.normal(jax.random.key(0), (batch, seq, cfg.d_model))
    pos = jnp.broadcast_to(jnp.arange(seq), (batch, seq))
    mask = jnp.tril(jnp.ones((seq, seq), bool))[None].repeat(batch, 0)
    policy = "full" if remat else None

    # The model's own two loops (`Decoder`): `apply_block` per block, or `scan_blocks`
    # (the blocks' params stacked inside the program, as the trainer does).
    def unrolled(states, x):
        for st in states:
            x, _ = apply_block(nnx.merge(gdef, st), x, pos, mask, None, None, policy)
        return jnp.sum(x.astype(jnp.float32) ** 2)

    def scanned(states, x):
        layers = [nnx.merge(gdef, st) for st in states]
        x, _ = scan_blocks(layers, x, pos, mask, None, None, policy)
        return jnp.sum(x.astype(jnp.float32) ** 2)

    out = {}
    p = states
    for name, f in (("unrolled", unrolled), ("scan", scanned)):
        g = jax.jit(jax.value_and_grad(f))
        t0 = time.perf_counter()
        lowered = g.lower(p, x)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        jax.block_until_ready(compiled(p, x))
        t3 = time.perf_counter()
        loss, grads = compiled(p, x)
        jax.block_until_ready(grads)
        out[name] = (t1 - t0, t2 - t1, time.perf_counter() - t3, float(loss))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--layers", default="8,24,48")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--remat", action="store_true", help='remat "full" around each block')
    a = ap.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    print(
        f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, preset {a.preset}, "
        f"batch {a.batch} x {a.seq}, {a.dtype}{', remat' if a.remat else ''}\n"
    )
    print(
        "| layers | trace+lower unrolled / scan (s) | compile unrolled / scan (s) "
        "| step unrolled / scan (ms) | max rel. loss diff |"
    )
    print("|---|---|---|---|---|")
    for n in (int(v) for v in a.layers.split(",")):
        r = measure(a.preset, n, a.batch, a.seq, a.dtype, a.remat)
        u, s = r["unrolled"], r["scan"]
        diff = abs(u[3] - s[3]) / max(1.0, abs(u[3]))
        print(
            f"| {n} | {u[0]:.2f} / {s[0]:.2f} | {u[1]:.2f} / {s[1]:.2f} "
            f"| {1e3 * u[2]:.1f} / {1e3 * s[2]:.1f} | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
