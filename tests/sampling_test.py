"""Sampler: log-probs agree with the learner; greedy is deterministic; EOS ends rows."""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax._testing import cache_sized_copies
from r1jax.models import CausalLM, ModelConfig
from r1jax.models.transformer import (
    KVCache,
    ValueModel,
    causal_mask,
    positions_from_mask,
)
from r1jax.sampling import (
    categorical_two_level,
    generate,
    grouped_hidden,
    grouped_sequence_logits,
    logp_at,
    nucleus_logp,
    prefill,
    sample_softmax,
    sequence_logits,
    token_logp,
)
from r1jax.tokenizer import EOS_ID, PAD_ID, CharTokenizer

TOK = CharTokenizer()
CFG = ModelConfig(
    vocab_size=TOK.vocab_size,
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    head_dim=8,
    mlp_dim=64,
)


def _setup():
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    prompt, mask = TOK.encode_left_padded(["Ann has 7 pens.\n", "Hi\n", "x"], 20)
    return model, prompt, mask


def _gen(model, prompt, mask, key, temperature, t=16):
    return jax.jit(
        lambda m, p, k: generate(
            m, p, mask, k, max_new_tokens=t, temperature=temperature, eos_id=EOS_ID, pad_id=PAD_ID
        )
    )(model, prompt, key)


def test_sampler_logp_matches_learner_logp():
    model, prompt, mask = _setup()
    for temperature in (1.0, 0.7):
        r = _gen(model, prompt, mask, jax.random.PRNGKey(0), temperature)
        logits = sequence_logits(model, prompt, mask, r.tokens_bt, r.mask_bt)
        lp = token_logp(logits, r.tokens_bt, temperature)
        err = np.abs(np.where(r.mask_bt, lp - r.logp_bt, 0.0)).max()
        assert err < 1e-4, err


def test_rows_end_at_eos_and_pad_after():
    model, prompt, mask = _setup()
    r = _gen(model, prompt, mask, jax.random.PRNGKey(3), 1.0, t=40)
    tok, m = np.asarray(r.tokens_bt), np.asarray(r.mask_bt)
    for row, mrow in zip(tok, m):
        eos = np.flatnonzero(row == EOS_ID)
        if eos.size:
            e = eos[0]
            assert mrow[: e + 1].all() and not mrow[e + 1 :].any()
            assert (row[e + 1 :] == PAD_ID).all()
        else:
            assert mrow.all()


def test_greedy_is_deterministic_and_key_independent():
    model, prompt, mask = _setup()
    a = _gen(model, prompt, mask, jax.random.PRNGKey(0), 0.0)
    b = _gen(model, prompt, mask, jax.random.PRNGKey(1), 0.0)
    np.testing.assert_array_equal(a.tokens_bt, b.tokens_bt)
    # Greedy picks the argmax of the learner's logits.
    logits = sequence_logits(model, prompt, mask, a.tokens_bt, a.mask_bt)
    np.testing.assert_array_equal(
        np.where(a.mask_bt, jnp.argmax(logits, -1), 0), np.where(a.mask_bt, a.tokens_bt, 0)
    )


def test_sampling_depends_on_key():
    model, prompt, mask = _setup()
    a = _gen(model, prompt, mask, jax.random.PRNGKey(0), 1.0)
    b = _gen(model, prompt, mask, jax.random.PRNGKey(1), 1.0)
    assert not np.array_equal(a.tokens_bt, b.tokens_bt)


def test_entropy_is_that_of_the_sampling_distribution():
    model, prompt, mask = _setup()
    r = _gen(model, prompt, mask, jax.random.PRNGKey(0), 1.0)
    logits = sequence_logits(model, prompt, mask, r.tokens_bt, r.mask_bt)
    logp = jax.nn.log_softmax(logits, -1)
    ent = -(jnp.exp(logp) * logp).sum(-1)
    np.testing.assert_allclose(np.where(r.mask_bt, ent, 0), r.entropy_bt, atol=1e-4)


def test_decoding_stops_early_with_the_same_result_as_a_full_length_run():
    # With an EOS id the model never emits, every row runs T steps. Declaring the token
    # that row 0 emits at position 2 to be EOS must give the same rows cut after their
    # first such token; with one row, the loop then stops after 3 of 16 steps.
    model, prompt, mask = _setup()
    gen = lambda p, m, eos: jax.jit(
        lambda mdl, pp, mm: generate(
            mdl,
            pp,
            mm,
            jax.random.PRNGKey(0),
            max_new_tokens=16,
            temperature=0.0,
            eos_id=eos,
            pad_id=PAD_ID,
        )
    )(model, p, m)
    full = np.asarray(gen(prompt, mask, -1).tokens_bt)
    for rows in (slice(0, 1), slice(0, 3)):
        eos = int(full[0, 2])
        r = gen(prompt[rows], mask[rows], eos)
        for want, got, m in zip(full[rows], np.asarray(r.tokens_bt), np.asarray(r.mask_bt)):
            hits = np.flatnonzero(want == eos)
            end = hits[0] + 1 if hits.size else len(want)
            np.testing.assert_array_equal(got[:end], want[:end])
            assert (got[end:] == PAD_ID).all() and m[:end].all() and not m[end:].any()


def test_rows_sample_the_same_however_the_batch_is_split():
    # Per-row keys (fold_in of the global row index): sampling the rows in two blocks
    # with row_offset gives exactly the one-batch sample (the pmap path relies on it).
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    prompt, mask = TOK.encode_left_padded(["Ann has 7 pens.\n", "Hi\n", "x", "12+3="], 20)
    gen = jax.jit(
        lambda m, p, pm, off: generate(
            m,
            p,
            pm,
            jax.random.PRNGKey(5),
            max_new_tokens=12,
            temperature=1.0,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
            row_offset=off,
        )
    )
    whole = gen(model, prompt, mask, 0)
    parts = [gen(model, prompt[a:b], mask[a:b], a) for a, b in ((0, 1), (1, 4))]
    for field in ("tokens_bt", "mask_bt"):
        got = np.concatenate([np.asarray(getattr(r, field)) for r in parts])
        np.testing.assert_array_equal(got, np.asarray(getattr(whole, field)))
    got = np.concatenate([np.asarray(r.logp_bt) for r in parts])
    np.testing.assert_allclose(got, np.asarray(whole.logp_bt), atol=1e-5)


def _gen_top_p(model, prompt, mask, key, temperature, top_p, t=16):
    # top_p is a traced argument here: the lax.cond path, not the static skip at 1.0.
    return jax.jit(
        lambda m, p, k, tp: generate(
            m,
            p,
            mask,
            k,
            max_new_tokens=t,
            temperature=temperature,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
            top_p=tp,
        )
    )(model, prompt, key, jnp.float32(top_p))


def test_top_p_one_changes_nothing():
    model, prompt, mask = _setup()
    for temperature in (0.0, 0.7, 1.0):
        want = _gen(model, prompt, mask, jax.random.PRNGKey(2), temperature)
        got = _gen_top_p(model, prompt, mask, jax.random.PRNGKey(2), temperature, 1.0)
        for field in want._fields:
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_tiny_top_p_is_greedy_and_logp_is_the_learners():
    model, prompt, mask = _setup()
    greedy = _gen(model, prompt, mask, jax.random.PRNGKey(0), 0.0)
    for key in range(3):
        r = _gen_top_p(model, prompt, mask, jax.random.PRNGKey(key), 0.7, 1e-6)
        np.testing.assert_array_equal(r.tokens_bt, greedy.tokens_bt)
        # logp stays that of the full tempered distribution, as the learner computes it.
        logits = sequence_logits(model, prompt, mask, r.tokens_bt, r.mask_bt)
        lp = token_logp(logits, r.tokens_bt, 0.7)
        assert np.abs(np.where(r.mask_bt, lp - r.logp_bt, 0.0)).max() < 1e-4


def test_top_p_samples_stay_in_the_nucleus():
    model, prompt, mask = _setup()
    top_p, seen = 0.3, set()
    for key in range(4):
        r = _gen_top_p(model, prompt, mask, jax.random.PRNGKey(key), 1.0, top_p, t=24)
        logits = sequence_logits(model, prompt, mask, r.tokens_bt, r.mask_bt)
        probs = np.asarray(jax.nn.softmax(logits, -1), np.float64)
        tok = np.asarray(r.tokens_bt)
        p_tok = np.take_along_axis(probs, tok[..., None], -1)
        mass_above = np.where(probs > p_tok, probs, 0.0).sum(-1)  # [B, T]
        m = np.asarray(r.mask_bt)
        assert (mass_above[m] < top_p + 1e-4).all(), mass_above[m].max()
        seen.update(tok[m].tolist())
    assert len(seen) > 3  # the nucleus holds several tokens: this is not greedy


def test_nucleus_matches_a_sort_based_reference():
    for scale in (0.1, 3.0):
        x = jax.nn.log_softmax(jax.random.normal(jax.random.PRNGKey(1), (8, 300)) * scale, -1)
        for top_p, early_exit in itertools.product((1e-6, 0.5, 0.9, 0.99), (True, False)):
            f = jax.jit(functools.partial(nucleus_logp, early_exit=early_exit))
            got = np.isfinite(np.asarray(f(x, top_p)))
            p = np.exp(np.asarray(x, np.float64))
            order = np.argsort(-p, -1)
            ps = np.take_along_axis(p, order, -1)
            keep = np.cumsum(ps, -1) - ps < top_p
            keep[:, 0] = True
            want = np.zeros_like(got)
            np.put_along_axis(want, order, keep, -1)
            np.testing.assert_array_equal(got, want)


def test_two_level_categorical_draws_from_the_softmax():
    # Chunk, then token within the chunk: the product of the two softmaxes is the
    # softmax, so frequencies match it; -inf entries (outside a nucleus) never come up.
    for v in (1, 2, 7, 104):
        logits = jax.random.normal(jax.random.PRNGKey(v), (v,)) * 2.0
        if v > 1:
            logits = logits.at[1].set(-jnp.inf)
        logp = jax.nn.log_softmax(logits)
        keys = jax.random.split(jax.random.PRNGKey(0), 50_000)
        draws = np.asarray(jax.jit(jax.vmap(categorical_two_level, in_axes=(0, None)))(keys, logp))
        assert draws.min() >= 0 and draws.max() < v
        freq = np.bincount(draws, minlength=v) / len(draws)
        p = np.asarray(jnp.exp(logp), np.float64)
        sd = np.sqrt(p * (1 - p) / len(draws))
        assert (np.abs(freq - p) <= 5 * sd + 1e-9).all(), (v, freq, p)


def test_one_pass_draw_samples_the_softmax_and_returns_its_logp_and_entropy():
    # sample_softmax (the sampler without a nucleus): chunk masses from one exponential,
    # one Gumbel vector per row. Frequencies match the softmax, whichever way V is cut
    # (1 chunk, a divisor of V, or padding), and log π and the entropy are the
    # log-softmax's (float32 rounding).
    from r1jax.sampling import _chunking

    for v in (1, 2, 7, 64, 104, 8192):
        n, c = _chunking(v)
        assert n * c >= v and n * c - v < c and c * c >= v, (v, n, c)
        logits = jax.random.normal(jax.random.PRNGKey(v), (v,)) * 2.0
        rows = 50_000 if v <= 104 else 256
        keys = jax.random.split(jax.random.PRNGKey(0), rows)
        tok, m, log_s, ent = jax.jit(sample_softmax)(keys, jnp.tile(logits, (rows, 1)))
        draws = np.asarray(tok)
        assert draws.min() >= 0 and draws.max() < v
        logp = jax.nn.log_softmax(logits)
        p = np.asarray(jnp.exp(logp), np.float64)
        if v <= 104:  # frequencies (8,192 outcomes: only the range and the numbers)
            freq = np.bincount(draws, minlength=v) / rows
            sd = np.sqrt(p * (1 - p) / rows)
            assert (np.abs(freq - p) <= 5 * sd + 1e-9).all(), (v, freq, p)
        x = jnp.tile(logits, (rows, 1))
        np.testing.assert_allclose(logp_at(x, m, log_s, tok), logp[draws], atol=2e-6)
        want_ent = -np.sum(p * np.asarray(logp, np.float64))
        np.testing.assert_allclose(np.asarray(ent), want_ent, rtol=1e-5, atol=1e-6)
    # Rows keep their own keys: a row's draw does not depend on the others.
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 104)) * 3.0
    keys = jax.random.split(jax.random.PRNGKey(2), 6)
    whole = sample_softmax(keys, x)[0]
    halves = [sample_softmax(keys[i : i + 3], x[i : i + 3])[0] for i in (0, 3)]
    np.testing.assert_array_equal(whole, np.concatenate(halves))


def test_prefill_logits_are_the_full_forwards_last_position():
    # prefill applies the LM head to the last position only; it must stay the model's head.
    model, prompt, mask = _setup()
    logits_bv, *_ = prefill(model, prompt, mask, 4)
    full = sequence_logits(
        model, prompt, mask, jnp.zeros((3, 1), jnp.int32), jnp.ones((3, 1), bool)
    )
    np.testing.assert_allclose(logits_bv, full[:, 0], atol=1e-5)


def _group_rollout(model, prompt, mask, g, t=24):
    """Samples g completions per prompt with `num_samples`, at temperature 1."""
    return jax.jit(
        lambda m, p, k: generate(
            m,
            p,
            mask,
            k,
            max_new_tokens=t,
            temperature=1.0,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
            num_samples=g,
        )
    )(model, prompt, jax.random.PRNGKey(5))


def test_num_samples_equals_sampling_the_repeated_prompts():
    model, prompt, mask = _setup()
    g = 3
    r = _group_rollout(model, prompt, mask, g)
    rep = jax.jit(
        lambda m, p, pm, k: generate(
            m, p, pm, k, max_new_tokens=24, temperature=1.0, eos_id=EOS_ID, pad_id=PAD_ID
        )
    )(model, jnp.repeat(prompt, g, 0), jnp.repeat(mask, g, 0), jax.random.PRNGKey(5))
    assert r.tokens_bt.shape == (prompt.shape[0] * g, 24)
    np.testing.assert_array_equal(r.tokens_bt, rep.tokens_bt)
    np.testing.assert_allclose(r.logp_bt, rep.logp_bt, atol=1e-5)
    # The samples of one prompt differ (each row has its own random stream).
    assert len({tuple(np.asarray(x)) for x in r.tokens_bt[:g]}) > 1


def test_grouped_logits_equal_the_per_row_forward():
    model, prompt, mask = _setup()
    g = 4
    r = _group_rollout(model, prompt, mask, g)
    per_row = sequence_logits(
        model, jnp.repeat(prompt, g, 0), jnp.repeat(mask, g, 0), r.tokens_bt, r.mask_bt
    )
    grouped = jax.jit(grouped_sequence_logits)(model, prompt, mask, r.tokens_bt, r.mask_bt)
    assert grouped.shape == per_row.shape
    valid = np.asarray(r.mask_bt)
    np.testing.assert_allclose(np.asarray(grouped)[valid], np.asarray(per_row)[valid], atol=2e-5)


def test_grouped_hidden_gradients_equal_the_per_row_ones():
    """The learner differentiates through the shared prompt pass (critic and policy)."""
    critic = ValueModel(CFG, rngs=nnx.Rngs(1))
    critic.value_head.kernel[...] = jax.random.normal(jax.random.PRNGKey(2), (CFG.d_model, 1))
    model, prompt, mask = _setup()
    g = 2
    r = _group_rollout(model, prompt, mask, g, t=12)
    gdef, params = nnx.split(critic)
    w = jax.random.normal(jax.random.PRNGKey(3), r.tokens_bt.shape) * r.mask_bt
    p = prompt.shape[1]

    def per_row(params):
        c = nnx.merge(gdef, params)
        seq = jnp.concatenate([jnp.repeat(prompt, g, 0), r.tokens_bt], 1)
        valid = jnp.concatenate([jnp.repeat(mask, g, 0), r.mask_bt], 1)
        v = c(seq, positions_from_mask(valid), causal_mask(valid))[:, p - 1 : -1]
        return (v * w).sum()

    def grouped(params):
        c = nnx.merge(gdef, params)
        h = grouped_hidden(c.model, prompt, mask, r.tokens_bt, r.mask_bt)
        return (c.value_head(h)[..., 0] * w).sum()

    (l1, g1), (l2, g2) = (jax.jit(jax.value_and_grad(f))(params) for f in (per_row, grouped))
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(jnp.abs(a).max())))


def test_grouped_hidden_rejects_rows_that_are_not_whole_groups():
    model, prompt, mask = _setup()
    toks = jnp.zeros((prompt.shape[0] * 2 + 1, 5), jnp.int32)
    try:
        grouped_hidden(model.model, prompt, mask, toks, toks > -1)
    except ValueError as e:
        assert "whole groups" in str(e)
    else:
        raise AssertionError("no error for 7 rows over 3 prompts")


def _decode_program(model, prompt, mask, t=16):
    gen = lambda m, p, k: generate(
        m, p, mask, k, max_new_tokens=t, temperature=1.0, eos_id=EOS_ID, pad_id=PAD_ID, top_p=0.9
    )
    return jax.jit(gen).lower(model, prompt, jax.random.PRNGKey(0)).compile().as_text()


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_the_decode_loop_updates_the_cache_in_place(kv_heads, monkeypatch):
    """On one device the while body holds no copy of a KV-cache buffer: the loop carries
    `KVCache.flat()`. With one KV head and the buffers carried as `[B, 1, ...]`, XLA:CPU
    copied each three times a step (BENCHMARKS.md, session 36): the count sees that."""
    cfg = dataclasses.replace(CFG, n_kv_heads=kv_heads)
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    prompt, mask = TOK.encode_left_padded(["Ann has 7 pens.\n", "Hi\n", "x", "yz"] * 4, 20)
    n_cache = prompt.shape[0] * (prompt.shape[1] + 16) * kv_heads * cfg.head_dim
    assert cache_sized_copies(_decode_program(model, prompt, mask), n_cache)["loop"] == 0
    if kv_heads == 1:
        monkeypatch.setattr(KVCache, "flat_in_loop", lambda self: self)
        assert cache_sized_copies(_decode_program(model, prompt, mask), n_cache)["loop"] > 0


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_the_flat_carry_samples_the_same_tokens(kv_heads, monkeypatch):
    model = CausalLM(dataclasses.replace(CFG, n_kv_heads=kv_heads), rngs=nnx.Rngs(0))
    prompt, mask = TOK.encode_left_padded(["Ann has 7 pens.\n", "Hi\n", "x"], 20)
    r = _gen(model, prompt, mask, jax.random.PRNGKey(5), 1.0, t=24)
    monkeypatch.setattr(KVCache, "flat_in_loop", lambda self: self)
    r0 = _gen(model, prompt, mask, jax.random.PRNGKey(5), 1.0, t=24)
    for a, b in zip(r, r0):
        np.testing.assert_array_equal(a, b)
