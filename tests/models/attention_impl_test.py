"""`model.attention`: jax.nn.dot_product_attention (cuDNN's flash attention on GPUs)
against our einsum path, the reference. On the CPU the "xla" implementation runs the
same call as "cudnn" does on a GPU (`benchmarks/device_check.sh` compares cuDNN there):
logits, gradients, prefill and the grouped training pass agree within float32 / bf16
tolerances, with left padding, packed segments and grouped-query heads.
`R1JAX_TEST_ATTENTION=cudnn` (with `JAX_PLATFORMS=` on a GPU machine) tests cuDNN's
kernel instead (bf16 only: cuDNN has no float32 flash attention)."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import sampling
from r1jax._testing import left_padded
from r1jax.models import CausalLM, ModelConfig, transformer
from r1jax.models.transformer import attention_impl, causal_mask, positions_from_mask
from r1jax.sampling import grouped_hidden, prefill

CFG = ModelConfig(vocab_size=50, d_model=48, n_layers=2, n_heads=6, n_kv_heads=2, head_dim=16)
TOL = {"float32": 2e-5, "bfloat16": 3e-2}
IMPL = os.environ.get("R1JAX_TEST_ATTENTION", "xla")
FP32 = "bfloat16" if IMPL == "cudnn" else "float32"  # the float32 tests' dtype


def _models(dtype):
    """The same weights under the einsum and the xla attention."""
    cfg = dataclasses.replace(CFG, dtype=dtype, attention="einsum")
    ref = CausalLM(cfg, rngs=nnx.Rngs(0))
    graph, state = nnx.split(ref)
    xla = CausalLM(dataclasses.replace(cfg, attention=IMPL), rngs=nnx.Rngs(1))
    nnx.update(xla, state)  # the einsum model's weights
    return ref, xla, graph, state


def _left_padded(b=3, length=12, seed=0):
    return left_padded(CFG.vocab_size, b, length, seed)


@pytest.mark.parametrize("dtype", sorted({FP32, "bfloat16"}))
def test_logits_and_gradients_match_the_einsum_path(dtype):
    ref, xla, _, _ = _models(dtype)
    tokens, valid = _left_padded()
    pos, mask = positions_from_mask(valid), causal_mask(valid)
    a, _ = ref(tokens, pos, mask)
    b, _ = xla(tokens, pos, mask)
    assert np.isfinite(np.asarray(b, np.float32)).all()  # padding rows too
    m = np.asarray(valid)
    np.testing.assert_allclose(
        np.asarray(b, np.float32)[m], np.asarray(a, np.float32)[m], atol=TOL[dtype], rtol=TOL[dtype]
    )

    def loss(model):
        lg, _ = model(tokens, pos, mask)
        return (jax.nn.log_softmax(lg.astype(jnp.float32))[..., 1] * valid).sum()

    ga = nnx.state(nnx.grad(loss)(ref), nnx.Param)
    gb = nnx.state(nnx.grad(loss)(xla), nnx.Param)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        scale = max(1.0, float(jnp.abs(x).max()))
        assert float(jnp.abs(x - y).max()) <= 10 * TOL[dtype] * scale


def test_packed_segments_match():
    """SFT rows: several examples per row, each attending only within itself."""
    ref, xla, _, _ = _models(FP32)
    seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 2, 3, 3, 0, 0, 0]])
    tokens = jnp.arange(12, dtype=jnp.int32)[None] % CFG.vocab_size + 1
    pos = jnp.asarray([[0, 1, 2, 0, 1, 2, 3, 0, 1, 0, 0, 0]])
    mask = (
        jnp.tril(jnp.ones((12, 12), bool))[None]
        & (seg[:, :, None] == seg[:, None, :])
        & (seg[:, None, :] > 0)
    )
    a, _ = ref(tokens, pos, mask)
    b, _ = xla(tokens, pos, mask)
    keep = np.asarray(seg[0] > 0)
    np.testing.assert_allclose(
        np.asarray(b, np.float32)[0, keep], np.asarray(a, np.float32)[0, keep], atol=TOL[FP32]
    )


def test_prefill_and_grouped_pass_match():
    """Passes that write the KV cache and attend over it (prefill, the learner's
    prompt-once-per-group pass) use the fused call too."""
    ref, xla, _, _ = _models(FP32)
    tol = TOL[FP32]
    prompt, pmask = _left_padded(b=2, length=10)
    (la, ca, *_), (lb, cb, *_) = (prefill(m, prompt, pmask, 6) for m in (ref, xla))
    np.testing.assert_allclose(np.asarray(lb), np.asarray(la), atol=tol)
    for x, y in zip(jax.tree.leaves(ca), jax.tree.leaves(cb)):  # the cache the decode reads
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(x, np.float32), atol=tol)
    comp = jnp.asarray(np.random.default_rng(1).integers(1, 50, (4, 6)), jnp.int32)
    cmask = jnp.ones((4, 6), bool).at[1, 4:].set(False)
    ha = grouped_hidden(ref.model, prompt, pmask, comp, cmask)
    hb = grouped_hidden(xla.model, prompt, pmask, comp, cmask)
    np.testing.assert_allclose(np.asarray(hb, np.float32), np.asarray(ha, np.float32), atol=tol)


@pytest.mark.skipif(IMPL != "xla", reason="CPU-side logic: run with the default")
def test_auto_picks_cudnn_only_where_it_applies(monkeypatch):
    bf16 = dataclasses.replace(CFG, dtype="bfloat16", attention="auto")
    assert attention_impl(bf16) == "einsum"  # this CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert attention_impl(bf16) == "cudnn"
    assert attention_impl(dataclasses.replace(bf16, dtype="float32")) == "einsum"
    assert attention_impl(dataclasses.replace(bf16, head_dim=12)) == "einsum"
    assert attention_impl(dataclasses.replace(bf16, attention="xla")) == "xla"
    # cuDNN's masked kernel has no backward pass for odd lengths: auto keeps einsum there
    assert attention_impl(bf16, 12, 12) == "cudnn"
    assert attention_impl(bf16, 13, 13) == "einsum"
    assert attention_impl(bf16, 6, 15) == "einsum"  # a chunk over an odd-length cache
    assert attention_impl(dataclasses.replace(bf16, attention="cudnn"), 13, 13) == "cudnn"
    with pytest.raises(ValueError, match="model.attention='flash' is unknown"):
        ModelConfig(attention="flash")


@pytest.mark.skipif(IMPL != "xla", reason="CPU-side logic: run with the default")
def test_auto_passes_resolve_per_length(monkeypatch):
    """Under `auto` on a GPU, each pass picks by its own static lengths (recorded here on
    the CPU by standing in for the GPU backend and for the two implementations)."""
    seen = []
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(
        transformer.Attention,
        "_fused",
        lambda self, q, k, v, m, impl: (
            seen.append((impl, q.shape[1], k.shape[1])) or jnp.zeros(q.shape, q.dtype)
        ),
    )
    model = CausalLM(dataclasses.replace(CFG, dtype="bfloat16", attention="auto"), rngs=nnx.Rngs(0))
    for length in (12, 13):
        tokens, valid = _left_padded(length=length)
        model(tokens, positions_from_mask(valid), causal_mask(valid))
    # two layers at length 12 run the fused call; the odd length never reaches it
    assert seen == [("cudnn", 12, 12)] * CFG.n_layers


@pytest.mark.skipif(IMPL != "xla", reason="CPU-side logic: run with the default")
@pytest.mark.parametrize("choice", ["auto", "cudnn"])
def test_grouped_pass_runs_even_lengths_on_cudnn(monkeypatch, choice):
    """The learner's prompt-once-per-group pass attends T-1 completion positions over
    P+T-1 keys: odd where P and T are even, so where cuDNN runs (chosen by `auto` or set)
    it runs all T (the last state dropped), with the einsum path's states. Here the GPU's
    choice (`attention_impl`: cuDNN for even lengths) is stood in for in float32, and
    cuDNN's call is the same call's "xla" kernel."""
    ref, _, _, state = _models("float32")
    auto = CausalLM(dataclasses.replace(ref.cfg, attention=choice), rngs=nnx.Rngs(1))
    nnx.update(auto, state)
    seen = []
    fused = transformer.Attention._fused

    def xla_kernel(self, q, k, v, mask, impl):
        seen.append((impl, q.shape[1], k.shape[1]))
        assert q.shape[1] % 2 == 0 and k.shape[1] % 2 == 0  # what cuDNN needs under grad
        return fused(self, q, k, v, mask, "xla")

    def on_gpu(cfg, q_len=None, kv_len=None, mask=None):
        if cfg.attention != "auto":
            return cfg.attention
        return "cudnn" if all(n is None or n % 2 == 0 for n in (q_len, kv_len)) else "einsum"

    monkeypatch.setattr(transformer, "attention_impl", on_gpu)
    monkeypatch.setattr(sampling, "attention_impl", on_gpu)
    monkeypatch.setattr(transformer.Attention, "_fused", xla_kernel)
    prompt, pmask = _left_padded(b=2, length=10)
    comp = jnp.asarray(np.random.default_rng(1).integers(1, 50, (4, 6)), jnp.int32)
    cmask = jnp.ones((4, 6), bool).at[1, 4:].set(False)
    hb = grouped_hidden(auto.model, prompt, pmask, comp, cmask)
    monkeypatch.undo()
    ha = grouped_hidden(ref.model, prompt, pmask, comp, cmask)
    # per layer: the prompt pass (10 over 10), then all 6 completion tokens over 16 keys
    assert seen == [("cudnn", 10, 10)] * CFG.n_layers + [("cudnn", 6, 16)] * CFG.n_layers
    assert hb.shape == ha.shape == (4, 6, CFG.d_model)
    np.testing.assert_allclose(np.asarray(hb), np.asarray(ha), atol=TOL["float32"])
    # and the real choice on a GPU: bf16 with these lengths is cuDNN, the T-1 pass is not
    bf16 = dataclasses.replace(CFG, dtype="bfloat16", attention="auto")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert [attention_impl(bf16, 6, 16), attention_impl(bf16, 5, 15)] == ["cudnn", "einsum"]


def test_auto_trains_the_grouped_pass_through_the_fused_kernel(monkeypatch):
    """In bf16 under `auto`, the learner's grouped pass (P 10, T 6: the completion pass
    over all T) runs the fused kernel under `grad`, with the einsum path's states and
    gradients. On a GPU (`R1JAX_TEST_ATTENTION=cudnn`, benchmarks/device_check.sh) that
    is cuDNN; on the CPU the GPU's choice is stood in for and the kernel is the same
    call's "xla" one."""
    ref, _, _, state = _models("bfloat16")
    auto = CausalLM(dataclasses.replace(ref.cfg, attention="auto"), rngs=nnx.Rngs(1))
    nnx.update(auto, state)
    seen = []
    fused = transformer.Attention._fused

    def kernel(self, q, k, v, mask, impl):
        seen.append((impl, q.shape[1], k.shape[1]))
        return fused(self, q, k, v, mask, impl if IMPL == "cudnn" else "xla")

    if IMPL != "cudnn":
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(transformer.Attention, "_fused", kernel)
    prompt, pmask = _left_padded(b=2, length=10)
    comp = jnp.asarray(np.random.default_rng(1).integers(1, 50, (4, 6)), jnp.int32)
    cmask = jnp.ones((4, 6), bool).at[1, 4:].set(False)

    def loss(model):
        h = grouped_hidden(model.model, prompt, pmask, comp, cmask)
        return (h.astype(jnp.float32) ** 2 * cmask[..., None]).mean()

    step = lambda: nnx.jit(nnx.value_and_grad(loss))  # traced under each setting
    lb, gb = step()(auto)
    assert set(seen) == {("cudnn", 10, 10), ("cudnn", 6, 16)}, seen
    monkeypatch.undo()
    la, ga = step()(ref)
    tol = TOL["bfloat16"]
    assert abs(float(la) - float(lb)) <= tol * max(1.0, abs(float(la)))
    pa, pb = (jax.tree.leaves(nnx.state(g, nnx.Param)) for g in (ga, gb))
    assert len(pa) == len(pb) > 10
    for x, y in zip(pa, pb):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        assert np.abs(x - y).max() <= 10 * tol * max(1.0, np.abs(x).max())
