"""Decoder: cached decoding equals the full forward; RoPE is relative; GQA shapes."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models import (
    CausalLM,
    ModelConfig,
    ValueModel,
    causal_mask,
    init_cache,
    positions_from_mask,
    rope,
)
from r1jax.models.transformer import RopeTables, extend_cache, rope_tables

CFG = ModelConfig(
    vocab_size=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64
)


def _model(cfg=CFG, seed=0):
    return CausalLM(cfg, rngs=nnx.Rngs(seed))


def test_logits_shape_and_dtype():
    m = _model()
    tok = jnp.ones((3, 7), jnp.int32)
    valid = jnp.ones((3, 7), bool)
    logits, cache = m(tok, positions_from_mask(valid), causal_mask(valid))
    assert logits.shape == (3, 7, CFG.vocab_size)
    assert logits.dtype == jnp.float32
    assert cache is None


def test_causality_future_tokens_do_not_change_past_logits():
    m = _model()
    rng = np.random.default_rng(0)
    a = rng.integers(4, 48, (2, 10)).astype(np.int32)
    b = a.copy()
    b[:, 6:] = rng.integers(4, 48, (2, 4))
    valid = jnp.ones((2, 10), bool)
    la, _ = m(a, positions_from_mask(valid), causal_mask(valid))
    lb, _ = m(b, positions_from_mask(valid), causal_mask(valid))
    np.testing.assert_allclose(la[:, :6], lb[:, :6], atol=1e-5)
    assert not np.allclose(la[:, 6:], lb[:, 6:], atol=1e-3)


def test_left_padding_does_not_change_logits():
    m = _model()
    seq = np.array([[5, 9, 11, 7, 20]], np.int32)
    valid = np.ones((1, 5), bool)
    ref, _ = m(seq, positions_from_mask(valid), causal_mask(valid))
    padded = np.concatenate([np.zeros((1, 3), np.int32), seq], 1)
    pvalid = np.concatenate([np.zeros((1, 3), bool), valid], 1)
    out, _ = m(padded, positions_from_mask(pvalid), causal_mask(pvalid))
    np.testing.assert_allclose(out[:, 3:], ref, atol=1e-5)


def test_cached_decoding_matches_full_forward():
    m = _model()
    rng = np.random.default_rng(1)
    seq = rng.integers(4, 48, (2, 9)).astype(np.int32)
    valid = np.ones((2, 9), bool)
    full, _ = m(seq, positions_from_mask(valid), causal_mask(valid))
    s = 12
    cache = init_cache(CFG, 2, s)
    p = 5
    mask = np.zeros((2, p, s), bool)
    mask[:, :, :p] = np.tril(np.ones((p, p), bool))
    pos = np.broadcast_to(np.arange(p), (2, p))
    logits, cache = m(seq[:, :p], pos, mask, cache, 0)
    np.testing.assert_allclose(logits, full[:, :p], atol=1e-5)
    for t in range(p, 9):
        step_mask = np.zeros((2, 1, s), bool)
        step_mask[:, :, : t + 1] = True
        lt, cache = m(seq[:, t : t + 1], np.full((2, 1), t), step_mask, cache, t)
        np.testing.assert_allclose(lt[:, 0], full[:, t], atol=1e-5)


def test_chunked_cached_decoding_and_a_grown_cache_match_full_forward():
    # Prefill into a cache of the prompt's length, grow it (extend_cache), then feed
    # chunks of 2 and 1 positions at nonzero cache indices: the logits stay the full
    # forward's (several query positions per KV head in the cached attention).
    m = _model()
    rng = np.random.default_rng(3)
    seq = rng.integers(4, 48, (2, 10)).astype(np.int32)
    valid = np.ones((2, 10), bool)
    full, _ = m(seq, positions_from_mask(valid), causal_mask(valid))
    p, s = 4, 12
    pos = np.broadcast_to(np.arange(s), (2, s))
    logits, cache = m(seq[:, :p], pos[:, :p], causal_mask(valid[:, :p]), init_cache(CFG, 2, p), 0)
    np.testing.assert_allclose(logits, full[:, :p], atol=1e-5)
    cache = extend_cache(cache, s)
    assert cache.k[0].shape == (2, CFG.n_kv_heads, CFG.head_dim, s)
    assert cache.v[0].shape == (2, CFG.n_kv_heads, s, CFG.head_dim)
    for a, b in ((4, 6), (6, 7), (7, 9), (9, 10)):
        mask = np.zeros((2, b - a, s), bool)
        mask[:, :, :b] = np.tril(np.ones((b - a, b), bool), k=a)
        lt, cache = m(seq[:, a:b], pos[:, a:b], mask, cache, a)
        np.testing.assert_allclose(lt, full[:, a:b], atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

    def score(pq, pk):
        rq = rope(q, jnp.array([[pq]]), 10000.0)
        rk = rope(k, jnp.array([[pk]]), 10000.0)
        return float(jnp.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    # Rotation preserves the norm.
    np.testing.assert_allclose(
        jnp.linalg.norm(rope(q, jnp.array([[7]]), 1e4)), jnp.linalg.norm(q), rtol=1e-5
    )


def test_rope_tables_computed_once_give_the_same_rotation_and_model_output():
    # The sampler passes precomputed cos/sin (RopeTables) where positions go; every
    # layer must then rotate exactly as from the positions (also with rope scaling).
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 5, 3, 16)), jnp.float32)
    pos = jnp.asarray(rng.integers(0, 500, size=(2, 5)), jnp.int32)
    for scaling in (None, (("factor", 4.0), ("rope_type", "linear"))):
        tables = rope_tables(pos, 16, 1e6, scaling)
        assert isinstance(tables, RopeTables) and tables.cos_blf.shape == (2, 5, 8)
        np.testing.assert_array_equal(rope(x, tables, 1e6, scaling), rope(x, pos, 1e6, scaling))
    cfg = ModelConfig(
        vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64
    )
    m = CausalLM(cfg, rngs=nnx.Rngs(0))
    tok = jnp.asarray(rng.integers(1, 50, size=(2, 5)), jnp.int32)
    mask = jnp.tril(jnp.ones((5, 5), bool))[None].repeat(2, 0)
    want, _ = m(tok, pos, mask)
    got, _ = m(tok, rope_tables(pos, 8, cfg.rope_theta), mask)
    np.testing.assert_array_equal(got, want)


def test_gqa_requires_divisible_heads():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)


def test_value_model_outputs_per_token_values_starting_at_zero():
    vm = ValueModel(CFG, rngs=nnx.Rngs(0))
    tok = jnp.ones((2, 6), jnp.int32)
    valid = jnp.ones((2, 6), bool)
    v = vm(tok, positions_from_mask(valid), causal_mask(valid))
    assert v.shape == (2, 6)
    np.testing.assert_allclose(v, 0.0)  # zero-initialised head: V starts at 0


def test_untied_head_differs_from_tied():
    cfg = ModelConfig(**{**CFG.__dict__, "tie_embeddings": False})
    m = CausalLM(cfg, rngs=nnx.Rngs(0))
    assert hasattr(m, "lm_head")
    tok = jnp.ones((1, 4), jnp.int32)
    valid = jnp.ones((1, 4), bool)
    logits, _ = m(tok, positions_from_mask(valid), causal_mask(valid))
    assert logits.shape == (1, 4, cfg.vocab_size)
