"""The einsum path of a causal pass attends by causal blocks of queries (`CausalDense`,
`transformer.CAUSAL_BLOCK`): the same logits and gradients as attending every query over
every key with the dense mask, and the key blocks the mask rules out are not computed."""

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax._testing import left_padded
from r1jax.models import CausalLM, ModelConfig, transformer
from r1jax.models.transformer import (
    CausalDense,
    mask_for_pass,
    packed_causal,
    padded_causal,
    positions_from_mask,
)

CFG = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16)
BLOCK = 8  # small blocks: short sequences still hold several, the last one partial


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(transformer, "CAUSAL_BLOCK", BLOCK)


def _close(a, b, tol=2e-5):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(b, a, atol=tol * max(1.0, float(np.abs(a).max())), rtol=tol)


def _packed(b=3, length=29, seed=0):
    """SFT's rows: sequences side by side (segment ids), padding at the end."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((b, length), np.int32)
    pos = np.zeros_like(seg)
    for r in range(b):
        a, s = 0, 1
        while a < length - 4:
            n = min(int(rng.integers(3, 14)), length - a)
            seg[r, a : a + n], pos[r, a : a + n] = s, np.arange(n)
            a, s = a + n, s + 1
    tokens = rng.integers(1, CFG.vocab_size, (b, length)).astype(np.int32)
    return jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(seg)


def _score_elements(fn, *args):
    """Elements of the attention scores the program forms (its softmaxes' `exp`s)."""
    jaxpr = jax.make_jaxpr(fn)(*args)
    total = 0

    def walk(jx):
        nonlocal total
        for eqn in jx.eqns:
            out = eqn.outvars[0].aval.shape if eqn.outvars else ()
            if eqn.primitive.name == "exp" and len(out) == 5:  # [B, K, G, L, S]
                total += int(np.prod(out))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    return total


def test_only_causal_passes_from_the_first_query_are_blocked():
    _, valid = left_padded(CFG.vocab_size, 3, 29, 0)
    mask = padded_causal(valid)
    blocked = mask_for_pass(CFG, mask, 29, 29)
    assert isinstance(blocked, CausalDense)
    np.testing.assert_array_equal(transformer.dense_mask(blocked), mask.dense())
    assert isinstance(
        mask_for_pass(CFG, packed_causal(valid.astype(jnp.int32)), 29, 29), CausalDense
    )
    # Queries after a prefix (the completion pass over the prompt's cache), a decode
    # step, a pass no longer than one block, a dense mask: attended as before.
    for m, q, s in ((padded_causal(valid, 9), 20, 29), (mask, 1, 29), (mask, BLOCK, BLOCK)):
        assert not isinstance(mask_for_pass(CFG, m, q, s), CausalDense)
    assert not isinstance(mask_for_pass(CFG, mask.dense(), 29, 29), CausalDense)
    # The fused implementations keep the dense mask.
    xla = dataclasses.replace(CFG, attention="xla")
    assert not isinstance(mask_for_pass(xla, mask, 29, 29), CausalDense)


@pytest.mark.parametrize(
    "kind, blocks",
    [("left_padded", {}), ("packed", {}), ("packed", {"layer_loop": "scan", "remat": "full"})],
)
def test_logits_and_gradients_equal_the_dense_path(kind, blocks):
    model = CausalLM(dataclasses.replace(CFG, **blocks), rngs=nnx.Rngs(0))
    if kind == "packed":
        tokens, pos, seg = _packed()
        structured, valid = packed_causal(seg), seg > 0
    else:
        tokens, valid = left_padded(CFG.vocab_size, 3, 29, 1)
        pos, structured = positions_from_mask(valid), padded_causal(valid)

    def loss(model, mask):
        logits, _ = model(tokens, pos, mask)
        lsm = jax.nn.log_softmax(logits)
        return jnp.sum(jnp.where(valid[..., None], lsm, 0.0) ** 2) / 1e3, logits

    grad = nnx.value_and_grad(loss, has_aux=True)
    (la, a), ga = nnx.jit(grad)(model, structured.dense())  # dense: every key of every query
    (lb, b), gb = nnx.jit(grad)(model, structured)
    m = np.asarray(valid)
    _close(np.asarray(a)[m], np.asarray(b)[m])
    _close(la, lb)
    pa, pb = jax.tree.leaves(nnx.state(ga, nnx.Param)), jax.tree.leaves(nnx.state(gb, nnx.Param))
    assert len(pa) == len(pb) > 10
    for x, y in zip(pa, pb, strict=True):
        _close(x, y, 1e-4)
    # The blocked pass forms scores of BLOCK queries over the keys up to the block's end:
    # 8 x 8, 8 x 16, 8 x 24 and 5 x 29 per row and head, not 29 x 29.
    fwd = lambda mask: model(tokens, pos, mask)[0]
    layers = 1 if blocks else CFG.n_layers  # a scan's body holds one block
    per_head = 3 * CFG.n_heads * layers
    assert _score_elements(fwd, structured.dense()) == per_head * 29 * 29
    assert _score_elements(fwd, structured) == per_head * (64 + 128 + 192 + 5 * 29)
