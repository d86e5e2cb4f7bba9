"""Decoder-only transformer with the Qwen2/Llama block, in Flax NNX.

RMSNorm (pre-norm), rotary position embeddings (rotate-half convention, as in the
Hugging Face Llama/Qwen2 code), SwiGLU MLP and grouped-query attention. The KV cache
is explicit: `__call__` takes and returns it, so sampling is a pure `lax.while_loop`.

Shapes: B batch, L query length, S key length (cache size), D model width,
H query heads, K key/value heads, Dh head width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx, struct

# Activation rematerialisation (`jax.checkpoint`) per decoder block, in the training
# forward pass only (sampling keeps its KV cache and never differentiates):
#   none: save every activation (fastest, most memory);
#   full: save only each block's input and recompute the block in the backward pass;
#   dots: save matmul outputs without batch dimensions (weights-times-activation
#         products), recompute the cheap elementwise ops and attention softmax;
#   dots_saveable: save every matmul output, recompute only elementwise ops.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}

# Attention implementations of the passes over several positions (training forward and
# backward, reference and critic passes, prefill); a decode step (one position against
# the KV cache) always runs the einsum path.
#   einsum: our two einsums and a float32 softmax (the reference; the CPU path);
#   xla:    jax.nn.dot_product_attention(implementation="xla") (same math; checks the
#           call on any backend);
#   cudnn:  jax.nn.dot_product_attention(implementation="cudnn"): cuDNN's fused flash
#           attention on NVIDIA GPUs (bf16/fp16, head_dim a multiple of 8 up to 128),
#           never forming the [B, H, L, S] scores in memory;
#   splash: the Pallas splash-attention kernel (TPU; block-sparse flash attention that
#           skips the key blocks the causal mask rules out). It needs the mask as its
#           structure, `padded_causal(valid, q_start)` (all of this package's passes give
#           it so), not a dense array; lengths are padded to its 128-blocks. Off a TPU it
#           runs in the Pallas interpreter (slow: for tests). Under a context mesh
#           (`parallel.traced_under_mesh`) it runs per shard in a `shard_map`, batch over
#           data x fsdp and heads over tensor, as Mosaic kernels cannot be partitioned
#           automatically.
#   auto:   cudnn where it applies (GPU backend, bf16/fp16, head_dim fits, even lengths);
#           splash on a TPU for passes of >= SPLASH_MIN_LEN queries with a structured
#           mask on one device, under pmap or under a context mesh (`splash_shards`);
#           else einsum.
# The einsum path of a causal pass without a cache (queries 0..L-1 over the same L keys,
# no key after its query: `CausalDense`; SFT's packed rows, the per-row training and
# critic passes) attends by blocks of CAUSAL_BLOCK queries, each over the keys up to its
# block's end, so the key blocks the causal mask rules out are never computed (37% of
# the scores of a 256-position row; BENCHMARKS.md, session 37). A query row with no
# allowed key (padding, never read) averages over its block's keys instead of all L.
ATTENTION = ("auto", "einsum", "xla", "cudnn", "splash")
CAUSAL_BLOCK = 64
SPLASH_BLOCK = 128  # the splash kernel's smallest block (lanes); lengths are padded to it
SPLASH_MIN_LEN = 128  # auto uses splash from this many queries on (shorter: einsum)
# Mesh axes that split the batch / the heads (`parallel.BATCH_AXES`, the "heads" rule;
# not imported: `parallel` imports this package).
_BATCH_AXES = ("data", "fsdp")
_HEAD_AXIS = "tensor"

# How the passes without a per-step KV cache (training forward and backward, reference
# and critic passes, the shared-prompt training pass) run the decoder blocks:
#   unroll: a Python loop, one copy of every block's code in the program;
#   scan:   one `lax.scan` over the blocks' parameters stacked along a new leading axis
#           (stacked inside the program: the params tree, checkpoints, sharding rules and
#           LoRA keep one entry per block), so XLA compiles one block, not n_layers;
#   auto:   scan from SCAN_MIN_LAYERS blocks on, else unroll.
# Sampling (prefill and the decode loop) always unrolls: it updates each layer's cache
# buffer in place. The RL learner of Qwen2.5-0.5B shapes (`gsm8k_qwen`, CPU) compiles in
# 26 s instead of 57 s with 24 blocks, 16 s instead of 23 s with 8 (BENCHMARKS.md,
# session 19); a single forward+backward alone (`benchmarks/scan_layers_bench.py`)
# compiles slower with the scan: the stacking is paid per pass, the one block saved per
# pass pays back only in programs with many passes, as the learner.
LAYER_LOOPS = ("auto", "unroll", "scan")
SCAN_MIN_LAYERS = 8


def layer_loop(cfg: ModelConfig) -> str:
    """The loop `cfg.layer_loop` resolves to: "scan" or "unroll"."""
    if cfg.layer_loop != "auto":
        return cfg.layer_loop
    return "scan" if cfg.n_layers >= SCAN_MIN_LAYERS else "unroll"


def attention_impl(
    cfg: ModelConfig, q_len: int | None = None, kv_len: int | None = None, mask=None
) -> str:
    """The implementation `cfg.attention` resolves to on the default backend, for a pass
    of `q_len` queries over `kv_len` keys (static shapes; None: any) with `mask` (a
    `PaddedCausal`, a dense `[B, L, S]` array or None). `auto` keeps the einsum path
    where cuDNN cannot run: besides dtype and head_dim, its kernel with a mask (a bias to
    cuDNN) has no backward pass for odd lengths ("Unsupported sequence length" under
    `grad`), and the attention layer is not told whether its pass is differentiated
    (the Decoder's `train` flag stops at the blocks), so an odd-length prefill, which
    cuDNN could run, keeps the einsum path too. On a TPU `auto` picks splash only where
    it can run: a structured mask, a pass of >= SPLASH_MIN_LEN queries, and one device,
    a per-device program (pmap) or a context mesh whose batch shards divide the batch
    (`splash_shards`)."""
    if cfg.attention != "auto":
        return cfg.attention
    backend = jax.default_backend()
    if backend == "tpu":
        ok = (
            isinstance(mask, PaddedCausal)
            and q_len is not None
            and q_len >= SPLASH_MIN_LEN
            and splash_shards(cfg, mask.segments_bs.shape[0]) is not None
        )
        return "splash" if ok else "einsum"
    fits = cfg.dtype in ("bfloat16", "float16") and cfg.head_dim % 8 == 0 and cfg.head_dim <= 128
    even = all(n is None or n % 2 == 0 for n in (q_len, kv_len))
    return "cudnn" if fits and even and backend == "gpu" else "einsum"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 104  # V
    d_model: int = 128  # D
    n_layers: int = 2  # number of decoder blocks
    n_heads: int = 4  # H, query heads
    n_kv_heads: int = 2  # K, key/value heads (GQA: H % K == 0)
    head_dim: int = 32  # Dh
    mlp_dim: int = 384  # SwiGLU hidden width
    rope_theta: float = 10000.0  # RoPE base
    # RoPE frequency scaling as sorted (key, value) pairs (a dict is accepted and
    # converted), e.g. (("factor", 8.0), ..., ("rope_type", "llama3")); see ROPE_SCALING.
    rope_scaling: tuple | None = None
    rms_eps: float = 1e-6  # RMSNorm epsilon
    qkv_bias: bool = False  # Qwen2 uses biases on q/k/v projections
    tie_embeddings: bool = True  # share input embedding and output projection
    dtype: str = "float32"  # compute dtype (params stay float32)
    remat: str = "none"  # activation rematerialisation of each block, see REMAT_POLICIES
    # Attention of the multi-position passes (training, reference, prefill), see
    # ATTENTION: "auto" = cuDNN's fused kernel on GPUs in bf16/fp16, else "einsum".
    attention: str = "auto"
    # Decoder blocks of the passes without a per-step cache, see LAYER_LOOPS: "auto" =
    # one lax.scan over the blocks from SCAN_MIN_LAYERS blocks on (faster compile).
    layer_loop: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "rope_scaling", _check_rope_scaling(self.rope_scaling))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must be a multiple of n_kv_heads="
                f"{self.n_kv_heads} (grouped-query attention)"
            )
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "mlp_dim",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(
                f"model.remat={self.remat!r} is unknown: use one of {sorted(REMAT_POLICIES)}"
            )
        if self.attention not in ATTENTION:
            raise ValueError(
                f"model.attention={self.attention!r} is unknown: use one of {sorted(ATTENTION)}"
            )
        if self.layer_loop not in LAYER_LOOPS:
            raise ValueError(
                f"model.layer_loop={self.layer_loop!r} is unknown: use one of {sorted(LAYER_LOOPS)}"
            )
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(
                f"model.dtype={self.dtype!r} is unsupported: use float32, or bfloat16 "
                "(float32 master weights, bf16 matmuls, float32 softmax/logits/log-probs)"
            )


class KVCache(NamedTuple):
    """One buffer per layer (not a stacked array), so each decode step updates in place.

    Head-major, each stored as the right-hand operand of its attention product: keys
    transposed, [B, K, Dh, S] (scores = q · k, contracting Dh), values [B, K, S, Dh]
    (output = probs · v, contracting S). With the token-major [B, S, K, Dh] layout
    XLA:CPU made a transposed copy of every layer's K and V each decode step (more time
    than the attention itself); with this one the decode loop holds no copy.
    """

    k: tuple  # n_layers × [B, K, Dh, S]
    v: tuple  # n_layers × [B, K, S, Dh]

    def flat(self) -> KVCache:
        """The same buffers with batch and heads merged, [B·K, Dh, S] and [B·K, S, Dh]
        (free reshapes), which the attention takes as well and returns in kind. The decode
        loop carries this layout: XLA:CPU's batched attention dots merge (B, K) anyway,
        and with [B, K, ...] buffers it fused each cache update twice, once for the loop
        carry and once for that merged view, copying every buffer three times a decode
        step (BENCHMARKS.md, session 36)."""
        merge = lambda x: x.reshape(-1, *x.shape[2:])
        return KVCache(tuple(map(merge, self.k)), tuple(map(merge, self.v)))

    def flat_in_loop(self) -> KVCache:
        """`flat()` in a program of one device (one device in all, a mesh of one, or a
        shard_map's per-device body); itself where its arrays may be split over several
        devices, since batch and heads can be split over different axes and merging
        them made XLA gather the buffers (the (2,2,2) mesh test config: 26 -> 154 KB
        per rollout, `benchmarks/mesh_layout_bench.py`). The pmap path keeps it too
        (its trace does not say it is per device)."""
        mesh = jax.sharding.get_abstract_mesh()
        one = jax.device_count() == 1 if mesh.empty else mesh.size == 1 or mesh.are_all_axes_manual
        return self.flat() if one else self


def init_cache(cfg: ModelConfig, batch: int, length: int) -> KVCache:
    dt = jnp.dtype(cfg.dtype)
    k_shape = (batch, cfg.n_kv_heads, cfg.head_dim, length)
    v_shape = (batch, cfg.n_kv_heads, length, cfg.head_dim)
    zeros = lambda shape: tuple(jnp.zeros(shape, dt) for _ in range(cfg.n_layers))
    return KVCache(zeros(k_shape), zeros(v_shape))


def extend_cache(cache: KVCache, length: int) -> KVCache:
    """`cache` zero-padded at the end of its position axis to `length` positions."""

    def grow(x, axis):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, length - x.shape[axis])
        return jnp.pad(x, widths)

    return KVCache(tuple(grow(k, 3) for k in cache.k), tuple(grow(v, 2) for v in cache.v))


# Supported RoPE scaling types (the Hugging Face `rope_type`) and their required keys.
ROPE_SCALING = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def _check_rope_scaling(scaling):
    """None, or the scaling as sorted (key, value) pairs; raises on unsupported types."""
    if scaling is None:
        return None
    items = dict(scaling)
    kind = items.get("rope_type")
    if kind not in ROPE_SCALING:
        raise ValueError(
            f"model.rope_scaling rope_type={kind!r} is unsupported: use None or one of "
            f"{sorted(ROPE_SCALING)}"
        )
    missing = [k for k in ROPE_SCALING[kind] if items.get(k) is None]
    if missing:
        raise ValueError(f"model.rope_scaling of rope_type {kind!r} lacks {missing}")
    return tuple(sorted(items.items()))


def rope_inv_freq(dh: int, theta: float, scaling=None) -> jax.Array:
    """RoPE inverse frequencies [Dh/2] (float32, as Hugging Face computes them)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dh, 2, dtype=jnp.float32) / dh))
    if scaling is None:
        return inv_freq
    s = dict(scaling)
    factor = float(s["factor"])
    if s["rope_type"] == "linear":
        return inv_freq / factor
    # llama3: keep high frequencies, divide low ones by `factor`, interpolate between.
    old_len = float(s["original_max_position_embeddings"])
    lo, hi = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > old_len / lo, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
    return jnp.where(medium, smoothed, scaled)


class RopeTables(NamedTuple):
    """cos and sin of the rotary angles `[B, L, Dh/2]` (float32), computed once
    (`rope_tables`) where positions would be passed: every layer's `rope` reads them
    instead of evaluating cos and sin again. XLA fuses the angles' cos/sin into each
    consumer and evaluates them per element there (per head, per layer): in a profile of
    the CPU decode step (tiny preset, batch 128) those fusions took ~0.6 ms of ~19; the
    whole `generate` call gained 0-2.5% from the tables, within the machine's spread
    (BENCHMARKS.md, session 20)."""

    cos_blf: jax.Array
    sin_blf: jax.Array


def rope_tables(positions_bl: jax.Array, dh: int, theta: float, scaling=None) -> RopeTables:
    """`RopeTables` of integer positions `[B, L]` for head dimension `dh`."""
    ang_blf = positions_bl[..., None].astype(jnp.float32) * rope_inv_freq(dh, theta, scaling)
    return RopeTables(jnp.cos(ang_blf), jnp.sin(ang_blf))


def rope(x_blhd: jax.Array, positions_bl, theta: float, scaling=None) -> jax.Array:
    """Rotary embedding, rotate-half layout (first half pairs with second half).

    `positions_bl`: integer positions `[B, L]`, or their `RopeTables`.
    `scaling`: optional frequency scaling (`ModelConfig.rope_scaling`).
    """
    dh = x_blhd.shape[-1]
    if not isinstance(positions_bl, RopeTables):
        positions_bl = rope_tables(positions_bl, dh, theta, scaling)
    cos = positions_bl.cos_blf[:, :, None, :]
    sin = positions_bl.sin_blf[:, :, None, :]
    x1, x2 = jnp.split(x_blhd.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_blhd.dtype)


# A projection y = x @ W ([..., in] x [in, out]) whose weight gradient dW = x^T dy
# transposes the narrower of x and dy. JAX's own rule computes (dy^T x)^T, so XLA:CPU
# lays dy out transposed for the matmul, and with dy an elementwise gradient (SwiGLU's
# d gate, 7 ops a value) it fuses those ops into the transposing copy and runs them again
# there at a fraction of the elementwise rate: 25 ms a layer of the default SFT step's
# ~220 ms on the 2-core Xeon (a plain transpose of the same [8192, 192] array: 1.3 ms).
# Taking x ([8192, 64], already in memory) as the transposed operand instead: the SFT
# step 220 -> 165 ms there (BENCHMARKS.md, session 36). The same products and sums, in
# another order: float results differ in the last bits. dx is JAX's own rule.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dense(x, kernel, precision, preferred_element_type):
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    return jax.lax.dot_general(
        x, kernel, dims, precision=precision, preferred_element_type=preferred_element_type
    )


def _dense_fwd(x, kernel, precision, preferred_element_type):
    return _dense(x, kernel, precision, preferred_element_type), (x, kernel)


def _dense_bwd(precision, preferred_element_type, res, dy):
    x, kernel = res
    lead = tuple(range(x.ndim - 1))
    kw = {"precision": precision, "preferred_element_type": preferred_element_type}
    dx = jax.lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())), **kw)
    if x.shape[-1] <= dy.shape[-1]:
        dk = jax.lax.dot_general(x, dy, ((lead, lead), ((), ())), **kw)
    else:
        dk = jax.lax.dot_general(dy, x, ((lead, lead), ((), ())), **kw).T
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense_dot_general(
    x, kernel, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None
):
    """`jax.lax.dot_general` for the decoder blocks' `nnx.Linear`s (their `dot_general=`):
    the same forward, the weight gradient as `_dense` computes it (above); any other
    contraction (or an explicit `out_sharding`) is plain `jax.lax.dot_general`."""
    if (
        out_sharding is not None
        or kernel.ndim != 2
        or dimension_numbers != (((x.ndim - 1,), (0,)), ((), ()))
    ):
        return jax.lax.dot_general(
            x,
            kernel,
            dimension_numbers,
            precision=precision,
            preferred_element_type=preferred_element_type,
            out_sharding=out_sharding,
        )
    return _dense(x, kernel, precision, preferred_element_type)


def projection(d_in: int, d_out: int, bias: bool, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A decoder block's projection: `nnx.Linear` with `dense_dot_general`."""
    return nnx.Linear(
        d_in, d_out, use_bias=bias, dtype=dtype, dot_general=dense_dot_general, rngs=rngs
    )


SIDE_BY_SIDE_BACKENDS = ("cpu",)  # where `_side_by_side` fuses q/k/v and gate/up


def _side_by_side(x, layers):
    """`[layer(x) for layer in layers]` (`nnx.Linear`s on the same input), on XLA:CPU as
    one matmul with the kernels side by side: the same products (up to float summation
    order), but the narrow matmuls of a decode step (64 rows) run well below the CPU's
    rate, and q/k/v and gate/up fused took ~60% of the time of the separate ones
    (BENCHMARKS.md, "Sampling vs transformers"). Elsewhere the layers run one by one
    (on accelerators nothing was measured, and concatenated tensor-sharded kernels
    would need resharding). Used in cached (sampling) forwards only, on the backends in
    `SIDE_BY_SIDE_BACKENDS` (`benchmarks/sampling_bench.py --fused_projections=on` adds
    the accelerators, to measure them)."""
    if jax.default_backend() not in SIDE_BY_SIDE_BACKENDS or any(
        getattr(lay, "preferred_element_type", None) is not None for lay in layers
    ):
        return [lay(x) for lay in layers]
    first = layers[0]
    kernel = jnp.concatenate([lay.kernel[...] for lay in layers], axis=1)
    x, kernel = first.promote_dtype((x, kernel), dtype=first.dtype)
    y = first.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=first.precision)
    widths = [lay.kernel.shape[1] for lay in layers]
    outs = jnp.split(y, list(itertools.accumulate(widths))[:-1], axis=-1)
    for i, lay in enumerate(layers):
        if lay.bias is not None:
            (bias,) = lay.promote_dtype((lay.bias[...],), dtype=lay.dtype)
            outs[i] = outs[i] + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return outs


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dt = jnp.dtype(cfg.dtype)
        lin = lambda i, o, b: projection(i, o, b, dt, rngs)
        self.q_proj = lin(cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.qkv_bias)
        self.k_proj = lin(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, cfg.qkv_bias)
        self.v_proj = lin(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, cfg.qkv_bias)
        self.o_proj = lin(cfg.n_heads * cfg.head_dim, cfg.d_model, False)

    def __call__(self, x_bld, positions_bl, mask_bls, cache_kv=None, cache_index=None):
        cfg = self.cfg
        b, l, _ = x_bld.shape
        if cache_kv is not None:
            q, k, v = _side_by_side(x_bld, (self.q_proj, self.k_proj, self.v_proj))
        else:
            q, k, v = self.q_proj(x_bld), self.k_proj(x_bld), self.v_proj(x_bld)
        q = q.reshape(b, l, cfg.n_heads, cfg.head_dim)
        k = k.reshape(b, l, cfg.n_kv_heads, cfg.head_dim)
        v = v.reshape(b, l, cfg.n_kv_heads, cfg.head_dim)
        q = rope(q, positions_bl, cfg.rope_theta, cfg.rope_scaling)
        k = rope(k, positions_bl, cfg.rope_theta, cfg.rope_scaling)
        g = cfg.n_heads // cfg.n_kv_heads
        q_blkgd = q.reshape(b, l, cfg.n_kv_heads, g, cfg.head_dim)
        kv_len = l if cache_kv is None else cache_kv[1].shape[-2]  # value [B, K, S, Dh]
        if isinstance(mask_bls, PaddedCausal):  # structured: the pass runs splash
            impl = "splash"
        else:  # dense: a decode step, or a pass `mask_for_pass` kept off splash
            impl = attention_impl(cfg, l, kv_len)
            impl = "einsum" if impl == "splash" else impl
        if cache_kv is None and impl != "einsum":  # keys and values of this chunk only
            out = self._fused(q, k, v, _unblocked(mask_bls), impl)
            return self.o_proj(out.reshape(b, l, -1)), None
        if cache_kv is None:
            out = self._einsum(q_blkgd, k, v, mask_bls)
            return self.o_proj(out.reshape(b, l, -1)), None
        # Write this chunk at cache_index (layouts: KVCache) and attend over the cache as
        # plain batched matmuls: batch (b, k), rows m = (l, g) (one decode position: the
        # g heads sharing a KV head). Keeping l and g apart in the dots (as above) made
        # XLA:CPU's decode-step dots 3x slower.
        ck, cv = cache_kv
        kh = cfg.n_kv_heads
        # A causal pass writing a cache of its own length (prefill, the shared-prompt
        # pass) attends over the whole cache: by causal blocks it was no faster (P = 160,
        # left-padded; BENCHMARKS.md, session 37).
        mask_bls = _unblocked(mask_bls)
        k, v = k.transpose(0, 2, 3, 1).astype(ck.dtype), v.transpose(0, 2, 1, 3).astype(cv.dtype)
        flat = ck.ndim == 3  # KVCache.flat: batch and heads merged (the decode loop's carry)
        if flat:
            k, v = k.reshape(b * kh, *k.shape[2:]), v.reshape(b * kh, *v.shape[2:])
        k = jax.lax.dynamic_update_slice_in_dim(ck, k, cache_index, axis=ck.ndim - 1)
        v = jax.lax.dynamic_update_slice_in_dim(cv, v, cache_index, axis=cv.ndim - 2)
        if l > 1 and impl != "einsum":  # prefill, grouped training: over the whole cache
            k4, v4 = k.reshape(b, kh, *k.shape[-2:]), v.reshape(b, kh, *v.shape[-2:])
            ks, vs = k4.transpose(0, 3, 1, 2), v4.transpose(0, 2, 1, 3)  # [B, S, K, Dh]
            out = self._fused(q, ks, vs, mask_bls, impl)
            return self.o_proj(out.reshape(b, l, -1)), (k, v)
        # A flat cache: the dots batch over its merged axis, reading the update itself.
        lead, qk, pv = (
            ((b * kh,), "nmd,nds->nms", "nms,nsd->nmd")
            if flat
            else ((b, kh), "bkmd,bkds->bkms", "bkms,bksd->bkmd")
        )
        q_bkmd = q_blkgd.transpose(0, 2, 1, 3, 4).reshape(*lead, l * g, -1)
        scores = jnp.einsum(qk, q_bkmd, k).astype(jnp.float32).reshape(b, kh, l, g, -1)
        probs = self._probs(scores, mask_bls[:, None, :, None, :], v.dtype)
        out = jnp.einsum(pv, probs.reshape(*lead, l * g, -1), v)
        out = out.reshape(b, kh, l, g, -1).transpose(0, 2, 1, 3, 4)
        return self.o_proj(out.reshape(b, l, -1)), (k, v)

    def _einsum(self, q_blkgd, k_bskd, v_bskd, mask):
        """Attention of L queries over the S keys given: two einsums and a float32
        softmax; a `CausalDense` mask by causal blocks of queries (`CAUSAL_BLOCK`).
        Returns `[B, L, K, G, Dh]` in the value dtype."""
        l = q_blkgd.shape[1]
        causal = isinstance(mask, CausalDense)
        mask_bls = mask.mask_bls if causal else mask
        step = CAUSAL_BLOCK if causal and l > CAUSAL_BLOCK else l
        outs = []
        for a in range(0, l, step):
            e = min(a + step, l)
            s = e if causal else k_bskd.shape[1]  # keys after the block's last query: none
            scores = jnp.einsum("blkgd,bskd->bkgls", q_blkgd[:, a:e], k_bskd[:, :s])
            probs = self._probs(
                scores.astype(jnp.float32), mask_bls[:, None, None, a:e, :s], v_bskd.dtype
            )
            outs.append(jnp.einsum("bkgls,bskd->blkgd", probs, v_bskd[:, :s]))
        return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)

    def _fused(self, q_blhd, k_bskd, v_bskd, mask_bls, impl):
        """`jax.nn.dot_product_attention` (grouped-query: H query heads over K key/value
        heads) with the boolean mask `[B, L, S]`; `[B, L, H, Dh]` in the value dtype. A
        query row with no allowed key (left padding) gets finite values, as the einsum
        path (its output is never read). `impl` splash: `splash_attention` (`mask_bls` a
        `PaddedCausal`)."""
        if impl == "splash":
            return splash_attention(self.cfg, q_blhd, k_bskd, v_bskd, mask_bls)
        return jax.nn.dot_product_attention(
            q_blhd,
            k_bskd.astype(q_blhd.dtype),
            v_bskd.astype(q_blhd.dtype),
            mask=mask_bls[:, None, :, :],
            implementation=impl,
        )

    def _probs(self, scores, mask, dtype):
        """softmax(scores / sqrt(Dh)) over keys, masked entries excluded; in `dtype`."""
        scores = scores / jnp.sqrt(jnp.float32(self.cfg.head_dim))
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        return jax.nn.softmax(scores, axis=-1).astype(dtype)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt = jnp.dtype(cfg.dtype)
        self.gate_proj = projection(cfg.d_model, cfg.mlp_dim, False, dt, rngs)
        self.up_proj = projection(cfg.d_model, cfg.mlp_dim, False, dt, rngs)
        self.down_proj = projection(cfg.mlp_dim, cfg.d_model, False, dt, rngs)

    def __call__(self, x, side_by_side=False):
        """`side_by_side`: gate and up as one matmul (`_side_by_side`; sampling)."""
        if side_by_side:
            gate, up = _side_by_side(x, (self.gate_proj, self.up_proj))
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(jax.nn.silu(gate) * up)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt = jnp.dtype(cfg.dtype)
        self.input_norm = nnx.RMSNorm(cfg.d_model, epsilon=cfg.rms_eps, dtype=dt, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.post_attn_norm = nnx.RMSNorm(cfg.d_model, epsilon=cfg.rms_eps, dtype=dt, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x, positions, mask, cache_kv=None, cache_index=None):
        h, cache_kv = self.attn(self.input_norm(x), positions, mask, cache_kv, cache_index)
        x = x + h
        x = x + self.mlp(self.post_attn_norm(x), side_by_side=cache_kv is not None)
        return batch_sharded(x), cache_kv


def _remat_block(layer, x, positions, mask, policy_name, kv=None, cache_index=None):
    """`layer(x, ...)` under `nnx.remat` with the named policy (training passes only).

    Returns `(x, kv)`; `kv` is the layer's cache when one is given (a grouped training
    pass, `sampling.grouped_hidden`), else None."""

    def run(layer, x, positions, mask, kv):
        return layer(x, positions, mask, kv, cache_index)

    return nnx.remat(run, policy=REMAT_POLICIES[policy_name])(layer, x, positions, mask, kv)


def apply_block(layer, x, positions, mask, kv, cache_index, remat: str | None):
    """`layer(x, ...)`, under the named remat policy when `remat` is given (training
    passes); returns `(x, kv)`."""
    if remat:
        return _remat_block(layer, x, positions, mask, remat, kv, cache_index)
    return layer(x, positions, mask, kv, cache_index)


def scan_blocks(layers, x, positions, mask, cache, cache_index, remat: str | None):
    """`layers` applied in order to `x` as one `lax.scan` over their parameters stacked
    along a new leading axis (the same computation as the loop of `apply_block`s; XLA
    compiles the block once). `cache`: a `KVCache` of `len(layers)` buffers, stacked
    for the scan and returned as one buffer per layer again (a copy: passes that run
    once per program, not the decode loop). `remat`: the policy applied to each block.
    Returns `(x, new_cache or None)`."""
    graphdef, _ = nnx.split(layers[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(lay) for lay in layers])

    def body(x, xs):
        state, kv = xs
        return nnx.merge(graphdef, state)(x, positions, mask, kv, cache_index)

    if remat:
        body = jax.checkpoint(body, policy=REMAT_POLICIES[remat])
    kvs = None if cache is None else (jnp.stack(cache.k), jnp.stack(cache.v))
    x, kv_out = jax.lax.scan(body, x, (stacked, kvs))
    if cache is None:
        return x, None
    return x, KVCache(tuple(kv_out[0]), tuple(kv_out[1]))


class Decoder(nnx.Module):
    """Token embedding, blocks and final norm; returns hidden states `[B, L, D]`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype), rngs=rngs)
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.norm = nnx.RMSNorm(
            cfg.d_model, epsilon=cfg.rms_eps, dtype=jnp.dtype(cfg.dtype), rngs=rngs
        )

    def __call__(
        self,
        tokens_bl,
        positions_bl,
        mask_bls,
        cache: KVCache | None = None,
        cache_index=None,
        *,
        train: bool = False,
    ):
        """`train`: a differentiated pass that uses a cache (`sampling.grouped_hidden`);
        `cfg.remat` applies to it as to every pass without a cache. Sampling never remats."""
        kv_len = tokens_bl.shape[1] if cache is None else cache.v[0].shape[-2]
        mask_bls = mask_for_pass(self.cfg, mask_bls, tokens_bl.shape[1], kv_len)
        x = batch_sharded(embed_tokens(self.embed, tokens_bl))
        training = cache is None or train  # not a sampling pass
        policy = self.cfg.remat if training and self.cfg.remat != "none" else None
        if training and layer_loop(self.cfg) == "scan":
            x, new_cache = scan_blocks(
                list(self.layers), x, positions_bl, mask_bls, cache, cache_index, policy
            )
            return self.norm(x), new_cache
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            x, kv = apply_block(layer, x, positions_bl, mask_bls, kv, cache_index, policy)
            if cache is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        new_cache = None if cache is None else KVCache(tuple(new_k), tuple(new_v))
        return self.norm(x), new_cache


class CausalLM(nnx.Module):
    """Decoder with a language-model head: `__call__` returns (logits [B, L, V], cache)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.model = Decoder(cfg, rngs=rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(
                cfg.d_model, cfg.vocab_size, use_bias=False, dtype=jnp.dtype(cfg.dtype), rngs=rngs
            )

    def __call__(self, tokens_bl, positions_bl=None, mask_bls=None, cache=None, cache_index=None):
        """Returns (logits, cache). Called with tokens only, `model(tokens)`, it returns
        the logits alone (Hugging Face style). Missing positions/mask default to every
        token valid: positions 0..L-1 and a causal mask."""
        tokens_only = positions_bl is None and mask_bls is None and cache is None
        if cache is not None and mask_bls is None:
            raise ValueError("CausalLM with a KV cache needs mask_bls [B, L, S] (cache length)")
        if positions_bl is None or mask_bls is None:
            valid = jnp.ones(jnp.shape(tokens_bl), bool)
            positions_bl = positions_from_mask(valid) if positions_bl is None else positions_bl
            mask_bls = padded_causal(valid) if mask_bls is None else mask_bls
        h, cache = self.model(tokens_bl, positions_bl, mask_bls, cache, cache_index)
        if self.cfg.tie_embeddings:
            logits = self.model.embed.attend(h)
        else:
            logits = self.lm_head(h)
        logits = logits.astype(jnp.float32)
        return logits if tokens_only else (logits, cache)


class ValueModel(nnx.Module):
    """Separate critic (own weights, as in LLM PPO practice): per-token values [B, L]."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.model = Decoder(cfg, rngs=rngs)
        self.value_head = nnx.Linear(cfg.d_model, 1, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, tokens_bl, positions_bl, mask_bls):
        h, _ = self.model(tokens_bl, positions_bl, mask_bls)
        return self.value_head(h.astype(jnp.float32))[..., 0]


@struct.dataclass
class PaddedCausal:
    """A causal mask kept as its structure: `segments_bs` `[B, S]` (0: a padding key),
    queries at positions q_start.. of the keys. Query i sees key j iff
    j <= q_start + i, key j is real (segment > 0) and, for `packed` rows (several
    sequences side by side, SFT), j is in query i's segment. Unpacked, segments are
    the key validity (1/0) and the mask is `causal_mask(valid)[:, q_start:]`. The
    passes of this package give their masks so (`padded_causal`,
    `packed_causal`): the splash kernel takes this structure (a causal block pattern
    plus segment ids); every other implementation the dense `[B, L, S]` array
    (`dense_mask`)."""

    segments_bs: jax.Array  # [B, S] int32
    q_start: int = struct.field(pytree_node=False, default=0)
    packed: bool = struct.field(pytree_node=False, default=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        b, s = self.segments_bs.shape
        return (b, s - self.q_start, s)

    def dense(self) -> jax.Array:
        """`[B, S - q_start, S]` boolean."""
        seg = self.segments_bs
        mask = causal_mask(seg > 0)[:, self.q_start :]
        if self.packed:
            mask &= seg[:, self.q_start :, None] == seg[:, None, :]
        return mask


@struct.dataclass
class CausalDense:
    """A dense `[B, L, L]` mask of a causal pass: query i sees no key after position i
    (a `PaddedCausal` from query 0, expanded). The einsum path attends by causal blocks
    (`CAUSAL_BLOCK`); everything else reads `mask_bls`."""

    mask_bls: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mask_bls.shape


def _unblocked(mask):
    """The mask as an implementation other than the causal blocks takes it."""
    return mask.mask_bls if isinstance(mask, CausalDense) else mask


def padded_causal(valid_bs: jax.Array, q_start: int = 0) -> PaddedCausal:
    """`causal_mask(valid_bs)[:, q_start:]` as its structure (`PaddedCausal`)."""
    return PaddedCausal(valid_bs.astype(jnp.int32), int(q_start))


def packed_causal(segments_bs: jax.Array) -> PaddedCausal:
    """Causal attention within each packed sequence: `segments_bs` `[B, S]` numbers
    the sequences of a row 1, 2, ..., 0 on padding (`PaddedCausal`, packed)."""
    return PaddedCausal(segments_bs.astype(jnp.int32), 0, packed=True)


def dense_mask(mask) -> jax.Array:
    """A mask as the dense `[B, L, S]` boolean array (a `PaddedCausal` expanded)."""
    if isinstance(mask, CausalDense):
        return mask.mask_bls
    return mask.dense() if isinstance(mask, PaddedCausal) else mask


def mask_for_pass(cfg: ModelConfig, mask, q_len: int, kv_len: int):
    """The mask the blocks of one pass get: kept structured where the pass resolves to
    splash attention (`attention_impl`; never a one-position decode step), else dense
    (expanded once for all layers). A pass that `model.attention=splash` sets but where
    the kernel cannot run (`splash_shards` is None: e.g. the evaluation's decoder on a
    sharded model) takes the einsum path, with one warning."""
    if q_len > 1 and attention_impl(cfg, q_len, kv_len, mask) == "splash":
        if not isinstance(mask, PaddedCausal):
            raise ValueError(
                "model.attention=splash needs the mask as its structure, "
                "`padded_causal(valid, q_start)`, not a dense [B, L, S] array: pass that "
                "(or use model.attention=auto/einsum for arbitrary masks)"
            )
        if splash_shards(cfg, mask.shape[0]) is not None:
            return mask
        _warn_once(
            "model.attention=splash: a pass of %d rows cannot run the splash kernel here "
            "(several devices without a context mesh, a partly manual mesh, or a batch "
            "the mesh's data x fsdp shards do not divide): it takes the einsum path",
            mask.shape[0],
        )
    if (
        isinstance(mask, PaddedCausal)
        and mask.q_start == 0
        and q_len == kv_len > CAUSAL_BLOCK
        and attention_impl(cfg, q_len, kv_len, mask) in ("einsum", "splash")
    ):  # the einsum path (splash here: it falls back to einsum) by causal blocks
        return CausalDense(mask.dense())
    return dense_mask(mask)


@functools.lru_cache(maxsize=16)
def _warn_once(msg: str, *args) -> None:
    logging.getLogger("r1jax").warning(msg, *args)


def _context_mesh(x):
    """The context mesh of an automatically partitioned program traced under the
    trainer's mesh (`parallel.traced_under_mesh`) when `x` is traced in it, else None:
    no context mesh (one device, or a program traced outside the trainer, e.g. the
    evaluation's decoder), a mesh of one device or without a batch axis of several
    devices (tensor parallel only; a mesh of other axis names), a program that is per
    device already (pmap; a shard_map), or an eager call (arrays placed as they are)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1 or mesh.manual_axes or not isinstance(x, jax.core.Tracer):
        return None
    if all(mesh.shape.get(a, 1) == 1 for a in _BATCH_AXES):
        return None
    return mesh


def embed_tokens(embed: nnx.Embed, tokens):
    """`embed(tokens)`; under a context mesh with the table's feature dimension whole
    where the table is no larger than the looked-up rows (V <= B·L): FSDP then gathers
    the weight (`[V, D]`, D split over fsdp by the learner rules) before the lookup.
    Left to itself, XLA looks the rows up in the split table and moves the `[B, L, D]`
    activations from feature-split to batch-split by replicating them whole
    ("involuntary full rematerialization", in the backward pass too): the cheaper of
    the two where the table is the larger (a 150k vocabulary, a few thousand tokens a
    pass), in traffic and in memory. Same numbers as `nnx.Embed`."""
    (table,) = embed.promote_dtype((embed.embedding[...],), dtype=embed.dtype, inexact=False)
    mesh = _context_mesh(tokens)
    if mesh is not None and table.shape[0] <= math.prod(tokens.shape):
        spec = jax.sharding.PartitionSpec(jax.sharding.PartitionSpec.UNCONSTRAINED, None)
        table = jax.lax.with_sharding_constraint(table, jax.sharding.NamedSharding(mesh, spec))
    return jnp.take(table, tokens, axis=0)


def batch_spec(mesh, batch: int) -> jax.sharding.PartitionSpec:
    """Layout of an activation of `batch` rows on `mesh`: rows over the longest prefix
    of the batch axes (data, fsdp) whose sizes divide `batch`, every other dimension
    whole (the trailing Nones are implied)."""
    axes, n = [], 1
    for a in _BATCH_AXES:
        size = mesh.shape.get(a, 1)
        if size == 1:
            continue
        if batch % (n * size):
            break
        axes.append(a)
        n *= size
    return jax.sharding.PartitionSpec(tuple(axes) or None)


def batch_sharded(x):
    """`x` (`[B, ...]`, the residual stream) laid out by `batch_spec` under a context
    mesh (`_context_mesh`); itself elsewhere. Rows the batch axes do not divide at all
    (a pass over one prompt) are kept whole on every device rather than split by
    feature. Without it XLA's propagation takes the layout from the weights: in the
    learner's minibatch loop the gathered rows stayed whole, so every device computed
    every row (8 devices did 72% of one device's work per device in the smoke learner;
    16% with the constraint, BENCHMARKS.md "Session 34"), and FSDP meshes moved
    activations between feature and batch splits."""
    mesh = _context_mesh(x)
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(
        x, jax.sharding.NamedSharding(mesh, batch_spec(mesh, x.shape[0]))
    )


def splash_shards(cfg: ModelConfig, batch: int):
    """How a splash pass of `batch` rows is laid out on the devices: `()` to call the
    kernel directly (one device, or a program that is per device already: under pmap or
    inside a `shard_map`, an all-manual context mesh), `(mesh, batch_axes, head_axis)`
    for a `shard_map` over the context mesh (batch over its data x fsdp axes, heads
    over tensor where both head counts divide), or None where the kernel cannot run:
    several devices and no context mesh (an automatically partitioned program, e.g. the
    evaluation's decoder on a sharded model; a Mosaic kernel cannot be partitioned), a
    partly manual context mesh, or a batch its batch shards do not divide."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return () if jax.device_count() == 1 else None
    if mesh.size == 1 or mesh.are_all_axes_manual:
        return ()
    if mesh.manual_axes:
        return None
    sizes = mesh.shape
    batch_axes = tuple(a for a in _BATCH_AXES if sizes.get(a, 1) > 1)
    if batch % math.prod(sizes[a] for a in batch_axes):
        return None
    t = sizes.get(_HEAD_AXIS, 1)
    heads = t > 1 and cfg.n_heads % t == 0 and cfg.n_kv_heads % t == 0
    return mesh, batch_axes, _HEAD_AXIS if heads else None


def _block(n: int) -> int:
    """The largest of 512 / 256 / 128 that divides `n` (a multiple of SPLASH_BLOCK)."""
    return next(b for b in (512, 256, SPLASH_BLOCK) if n % b == 0)


@functools.lru_cache(maxsize=64)
def _splash_kernel(n_heads: int, q_len: int, kv_len: int, offset: int, interpret: bool):
    """The splash kernel for `n_heads` heads, a causal block pattern of `q_len` queries
    (starting at key `offset`) over `kv_len` keys (both multiples of SPLASH_BLOCK)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as splash_mask,
    )

    causal = splash_mask.CausalMask((q_len, kv_len), offset=offset)
    bq, bkv = _block(q_len), _block(kv_len)
    blocks = splash.BlockSizes(
        block_q=bq,
        block_kv=bkv,
        block_kv_compute=bkv,
        block_q_dkv=bq,
        block_kv_dkv=bkv,
        block_kv_dkv_compute=bkv,
        block_q_dq=bq,
        block_kv_dq=bkv,
    )
    # Built once and cached (its block tables are numpy work): their arrays are made
    # concrete, not values of whichever trace asked first.
    with jax.ensure_compile_time_eval():
        kernel = splash.make_splash_mha(
            splash_mask.MultiHeadMask([causal] * n_heads),
            block_sizes=blocks,
            head_shards=1,
            q_seq_shards=1,
            interpret=interpret,
        )
    return kernel, splash.SegmentIds


def splash_attention(cfg: ModelConfig, q_blhd, k_bskd, v_bskd, mask: PaddedCausal):
    """Attention of `[B, L, H, Dh]` queries over `[B, S, K, Dh]` keys/values under the
    structured `mask` (L = S - q_start) by the Pallas splash kernel; `[B, L, H, Dh]` in
    the query dtype. Lengths are padded to SPLASH_BLOCK: padded keys come after every
    real query's causal horizon and padded queries are dropped, so the padding changes
    nothing. The mask's segments are the kernel's segment ids (0 padding): a real query
    sees the real keys of its segment up to its position, as the dense mask says; a
    padding query sees padding keys only (at least itself, so no row is empty; its
    output is never read, as with the dense mask)."""
    b, l, h, dh = q_blhd.shape
    s = k_bskd.shape[1]
    if mask.segments_bs.shape != (b, s) or s - l != mask.q_start:
        raise ValueError(
            f"splash attention: the mask covers {mask.shape} (batch, queries, keys) but "
            f"the pass has {b} rows of {l} queries over {s} keys"
        )
    lp = -(-l // SPLASH_BLOCK) * SPLASH_BLOCK
    # Keys padded at least as far as the queries, so each padding query's own position
    # (q_start + i) is a key: a padding key, which it may see.
    sp = -(-(s + lp - l) // SPLASH_BLOCK) * SPLASH_BLOCK
    seg = mask.segments_bs
    seg_q = jnp.pad(seg[:, mask.q_start :], ((0, 0), (0, lp - l)))
    seg_kv = jnp.pad(seg, ((0, 0), (0, sp - s)))
    dt = q_blhd.dtype
    # The kernel does not scale: q / sqrt(Dh) first (exact where Dh is a power of 4).
    q = jnp.pad(
        q_blhd * jnp.asarray(1.0 / math.sqrt(dh), dt), ((0, 0), (0, lp - l), (0, 0), (0, 0))
    )
    pad_kv = ((0, 0), (0, sp - s), (0, 0), (0, 0))
    k = jnp.pad(k_bskd.astype(dt), pad_kv)
    v = jnp.pad(v_bskd.astype(dt), pad_kv)
    layout = splash_shards(cfg, b)
    if layout is None:
        raise ValueError(
            f"model.attention=splash: a pass of {b} rows cannot be split over the context "
            "mesh's batch shards (data x fsdp): use a batch they divide, or "
            "model.attention=einsum"
        )
    heads = h // layout[0].shape[layout[2]] if layout and layout[2] else h  # per shard
    interpret = jax.default_backend() != "tpu"
    kernel, segment_ids = _splash_kernel(heads, lp, sp, s - l, interpret)

    def attend(q, k, v, seg_q, seg_kv):  # one shard: [b', L', H', Dh] etc.
        one = lambda q, k, v, sq, skv: kernel(
            q.transpose(1, 0, 2),
            k.transpose(1, 0, 2),
            v.transpose(1, 0, 2),
            segment_ids=segment_ids(sq, skv),
        ).transpose(1, 0, 2)
        return jax.vmap(one)(q, k, v, seg_q, seg_kv)

    if layout:
        mesh, batch_axes, head_axis = layout
        bspec = batch_axes or None
        qkv = jax.sharding.PartitionSpec(bspec, None, head_axis, None)
        seg_spec = jax.sharding.PartitionSpec(bspec, None)
        attend = jax.shard_map(
            attend,
            mesh=mesh,
            in_specs=(qkv, qkv, qkv, seg_spec, seg_spec),
            out_specs=qkv,
            check_vma=False,
        )
    return attend(q, k, v, seg_q, seg_kv)[:, :l]


def causal_mask(valid_bl: jax.Array) -> jax.Array:
    """[B, L, L] mask: query i sees key j iff j <= i and key j is a real token."""
    l = valid_bl.shape[1]
    tri = jnp.tril(jnp.ones((l, l), bool))
    return tri[None] & valid_bl[:, None, :]


def positions_from_mask(valid_bl: jax.Array) -> jax.Array:
    """Position ids that skip left padding: 0 at the first real token."""
    return jnp.maximum(jnp.cumsum(valid_bl.astype(jnp.int32), axis=1) - 1, 0)
