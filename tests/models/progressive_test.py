"""Progressive networks: one params tree for every task's graph, the cached path equals
the full forward, task k sees only columns <= k, and training task k leaves every earlier
column bit-identical (no forgetting) under AdamW with weight decay."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from r1jax.evaluate import make_decoder
from r1jax.models.progressive import (
    ProgressiveLM,
    column_labels,
    init_progressive_params,
    merge_trainable,
    param_count,
    progressive_graphdef,
    split_trainable,
    trainable_param_count,
)
from r1jax.models.transformer import Block, CausalLM, ModelConfig, causal_mask, positions_from_mask
from r1jax.sampling import generate, grouped_sequence_logits, prefill, sequence_logits

CFG = ModelConfig(
    vocab_size=104, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64
)
N = 3  # columns
EOS, PAD = 2, 0
PROMPT = jnp.array([[PAD, PAD, 5, 17, 9], [11, 40, 3, 8, 60]], jnp.int32)
PROMPT_MASK = PROMPT != PAD
GRAPHS = [progressive_graphdef(CFG, N, k) for k in range(N)]


@pytest.fixture(scope="module")
def params():
    return init_progressive_params(CFG, N, seed=0)


@pytest.fixture(scope="module")
def decoders():
    return [make_decoder(g, max_new_tokens=6, eos_id=EOS, pad_id=PAD) for g in GRAPHS]


def _bytes(tree):
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


def _randomise_laterals(params, seed):
    """`params` with every lateral kernel set to small random values."""
    key = jax.random.PRNGKey(seed)

    def f(path, x):
        keys = [getattr(p, "key", None) for p in path]
        if "laterals" not in keys:
            return x
        k = jax.random.fold_in(key, zlib.crc32(repr(keys).encode()))
        return 0.3 * jax.random.normal(k, x.shape, x.dtype)

    return jax.tree_util.tree_map_with_path(f, params)


def _logits(column, params, tokens=PROMPT):
    return nnx.merge(GRAPHS[column], params)(tokens)


def test_params_structure_is_the_same_for_every_column(params):
    struct = jax.tree.structure(params)
    for k in range(N):
        model = ProgressiveLM(CFG, N, k, rngs=nnx.Rngs(0))
        assert model.cfg.n_layers == (k + 1) * CFG.n_layers and model.column_cfg == CFG
        assert model.cfg.tie_embeddings
        own = nnx.to_pure_dict(nnx.split(model)[1])
        assert jax.tree.structure(own) == struct
        merged = nnx.to_pure_dict(nnx.split(nnx.merge(GRAPHS[k], params))[1])
        assert _bytes(merged) == _bytes(params)
        # The cached graph definition (derived from column 0's, the column switched) is
        # the one of a model built for column k.
        assert GRAPHS[k] == nnx.graphdef(model) and hash(GRAPHS[k]) == hash(nnx.graphdef(model))
        assert GRAPHS[k] != GRAPHS[(k + 1) % N]
    # Laterals exist into columns k > 0 only, from each j < k, at L + 1 points, all zero.
    cols = params["model"]["columns"]
    assert "laterals" not in cols[0]
    for k in (1, 2):
        assert sorted(cols[k]["laterals"]) == list(range(k))
        for j in range(k):
            assert sorted(cols[k]["laterals"][j]) == list(range(CFG.n_layers + 1))
            for lat in cols[k]["laterals"][j].values():
                assert lat["kernel"].shape == (32, 32) and not np.any(np.asarray(lat["kernel"]))
    # Column k's init depends on the seed and k only, not on the number of columns.
    two = init_progressive_params(CFG, 2, seed=0)["model"]["columns"]
    assert _bytes(two) == _bytes({k: cols[k] for k in range(2)})
    with pytest.raises(ValueError):
        progressive_graphdef(CFG, N, N)


def test_column_0_is_a_causal_lm_and_zero_laterals_make_columns_independent(params):
    """Column 0's params are a CausalLM's; at init (U = 0) column k's logits are those
    of a CausalLM on column k's own weights."""
    lm = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(CFG, rngs=nnx.Rngs(0))))
    for k in range(N):
        own = {kk: v for kk, v in params["model"]["columns"][k].items() if kk != "laterals"}
        want = nnx.merge(lm, {"model": own})(PROMPT)
        np.testing.assert_allclose(_logits(k, params), want, rtol=1e-6, atol=1e-6)


def _reference_logits(params, k, tokens):
    """Column k's logits wired by hand from the paper's equations: x_{c,l} is column c's
    stream at the input of its layer l (l = L: before the final norm), and
    x_{c,l} = x'_{c,l} + sum_{j<c} x_{j,l} @ U_{c,j,l}."""
    block = nnx.graphdef(nnx.eval_shape(lambda: Block(CFG, rngs=nnx.Rngs(0))))
    valid = jnp.ones(tokens.shape, bool)
    pos, mask = positions_from_mask(valid), causal_mask(valid)
    cols = params["model"]["columns"]
    streams = []
    for c in range(k + 1):
        col = cols[c]
        x = jnp.take(col["embed"]["embedding"], tokens, axis=0)
        mine = []
        for l in range(CFG.n_layers + 1):
            for j in range(c):
                x = x + streams[j][l] @ col["laterals"][j][l]["kernel"]
            mine.append(x)
            if l < CFG.n_layers:
                x, _ = nnx.merge(block, col["layers"][l])(x, pos, mask)
        streams.append(mine)
    x = streams[k][-1]
    h = x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + CFG.rms_eps)
    h = h * cols[k]["norm"]["scale"]
    return h @ cols[k]["embed"]["embedding"].T


def test_forward_matches_a_hand_wired_reference(params):
    params = _randomise_laterals(params, 4)
    for k in range(N):
        np.testing.assert_allclose(
            _logits(k, params), _reference_logits(params, k, PROMPT), rtol=1e-4, atol=1e-4
        )


STEPS = 4  # greedy decode steps compared with the naive loop


def _cached_and_full(graphdef, params, grouped_check):
    """(prefill logits, full-forward last logits, greedy generate, naive greedy loop,
    grouped logits, plain logits) for one column; one jitted program."""
    model = nnx.merge(graphdef, params)
    # Prefill (left-padded prompt) vs the full forward's last position.
    logits_bv, cache, _, _ = prefill(model, PROMPT, PROMPT_MASK, 4)
    assert len(cache.k) == len(cache.v) == model.cfg.n_layers
    full, _ = model(PROMPT, positions_from_mask(PROMPT_MASK), causal_mask(PROMPT_MASK))
    # Greedy generate vs a loop rerunning the full forward on the growing sequence.
    prompt = PROMPT[1:]
    valid = jnp.ones_like(prompt, bool)
    out = generate(
        model,
        prompt,
        valid,
        jax.random.PRNGKey(0),
        max_new_tokens=STEPS,
        temperature=0.0,
        eos_id=-1,  # never stops early: compare every step
        pad_id=PAD,
    ).tokens_bt
    seq = prompt
    for _ in range(STEPS):
        nxt = jnp.argmax(model(seq)[:, -1], axis=-1).astype(jnp.int32)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    if not grouped_check:
        return logits_bv, full[:, -1], out, seq[:, prompt.shape[1] :]
    # The grouped (cached, differentiable) training pass vs the plain one.
    cmask = jnp.ones_like(out, bool)
    grouped = grouped_sequence_logits(model, prompt, valid, out, cmask)
    plain = sequence_logits(model, prompt, valid, out, cmask)
    return logits_bv, full[:, -1], out, seq[:, prompt.shape[1] :], grouped, plain


def test_cached_path_equals_the_full_forward(params):
    params = _randomise_laterals(params, 1)
    for k in range(N):
        last = k == N - 1  # the grouped pass on the deepest stack only (compile time)
        pre, full, out, naive, *rest = jax.jit(_cached_and_full, static_argnums=(0, 2))(
            GRAPHS[k], params, last
        )
        np.testing.assert_allclose(pre, full, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out, naive)
        if last:
            np.testing.assert_allclose(*rest, rtol=1e-5, atol=1e-5)


def test_task_id_selects_the_column_and_later_columns_are_unused(params, decoders):
    key = jax.random.PRNGKey(0)
    outs = [np.asarray(d(params, PROMPT, PROMPT_MASK, key, 0)) for d in decoders]
    assert outs[0].shape == (2, 6)
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])

    lat = _randomise_laterals(params, 2)
    cols = lat["model"]["columns"]

    def perturbed(indices):
        new = {k: v for k, v in cols.items()}
        for j in indices:
            new[j] = jax.tree.map(lambda x: x + 0.5, cols[j])
        return {"model": {"columns": new}}

    for k in range(N):
        base = np.asarray(_logits(k, lat))
        # Columns > k (and the laterals into them) play no part: bitwise equal logits.
        later = perturbed(range(k + 1, N))
        np.testing.assert_array_equal(np.asarray(_logits(k, later)), base)
        # Every earlier column j < k feeds column k through the (non-zero) laterals.
        for j in range(k):
            assert not np.allclose(np.asarray(_logits(k, perturbed([j]))), base)


def test_labels_and_split():
    p = init_progressive_params(CFG, N, seed=3)
    for k in range(N):
        labels = column_labels(p, k)
        flat = jax.tree_util.tree_flatten_with_path(labels)[0]
        for path, lab in flat:
            keys = tuple(q.key for q in path)
            assert lab == ("train" if keys[:3] == ("model", "columns", k) else "frozen")
        train, frozen = split_trainable(p, k)
        assert list(train["model"]["columns"]) == [k]
        assert sorted(frozen["model"]["columns"]) == [j for j in range(N) if j != k]
        merged = merge_trainable(train, frozen)
        assert jax.tree.structure(merged) == jax.tree.structure(p)
        assert all(a is b for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(p)))
        # Usable as optax labels too.
        tx = optax.multi_transform({"train": optax.sgd(0.1), "frozen": optax.set_to_zero()}, labels)
        tx.init(p)
    train, _ = split_trainable(p, 0)
    with pytest.raises(ValueError):
        merge_trainable(train, train)  # a leaf on both sides


def test_param_count_by_hand():
    p = init_progressive_params(CFG, N, seed=0)
    d, v, f, L = 32, 104, 64, 2
    q = o = 32 * (4 * 8)
    kv = 32 * (2 * 8)
    block = 2 * d + q + 2 * kv + o + 3 * d * f  # two norms, attention, SwiGLU
    column = v * d + L * block + d  # embedding (tied head), blocks, final norm
    assert column == 21920
    lm = nnx.to_pure_dict(nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))[1])
    assert sum(x.size for x in jax.tree.leaves(lm)) == column
    lateral = (L + 1) * d * d  # one elder column: L + 1 D x D maps
    for k in range(N):
        assert trainable_param_count(p, k) == column + k * lateral
        assert param_count(p, k) == (k + 1) * column + k * (k + 1) // 2 * lateral
    assert param_count(p, 2) == 3 * 21920 + 3 * 3072 == 74976
    shapes = jax.eval_shape(lambda: init_progressive_params(CFG, N, seed=0))
    assert param_count(shapes, 2) == 74976


def _task_batch(k):
    """Task k: continue an arithmetic sequence with stride k + 1 (mod 100, from 3)."""
    starts = np.arange(8)[:, None]
    seq = 3 + (starts * 7 + np.arange(10)[None] * (k + 1)) % 100
    return jnp.asarray(seq, jnp.int32)


def _loss(model, tokens):
    logits = model(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def test_sequential_training_never_touches_earlier_columns(params, decoders):
    tx = optax.adamw(3e-3, weight_decay=0.1)
    key = jax.random.PRNGKey(0)
    greedy0 = lambda p: np.asarray(decoders[0](p, PROMPT, PROMPT_MASK, key, 0))

    snapshots = []  # column k's bytes right after task k
    before0 = None
    for k in range(N):
        graphdef = GRAPHS[k]

        @jax.jit
        def step(train, frozen, opt, tokens, graphdef=graphdef):
            def loss(train):
                return _loss(nnx.merge(graphdef, merge_trainable(train, frozen)), tokens)

            value, grads = jax.value_and_grad(loss)(train)
            updates, opt = tx.update(grads, opt, train)
            return optax.apply_updates(train, updates), opt, value

        tokens = _task_batch(k)
        cols_before = params["model"]["columns"]
        train, frozen = split_trainable(params, k)
        opt = tx.init(train)
        losses = []
        for _ in range(8):
            train, opt, value = step(train, frozen, opt, tokens)
            losses.append(float(value))
        assert losses[-1] < losses[0]
        params = merge_trainable(train, frozen)
        cols = params["model"]["columns"]

        # The trained column changed, its laterals too (they start at zero)
        # (every leaf: gradient steps, or weight decay on rows no token reached).
        assert all(a != b for a, b in zip(_bytes(cols[k]), _bytes(cols_before[k])))
        if k > 0:
            assert all(np.any(np.asarray(x)) for x in jax.tree.leaves(cols[k]["laterals"]))
        # Earlier columns (own weights and laterals) are bit-identical to right after
        # their own task; later columns are untouched since init.
        for j in range(k):
            assert _bytes(cols[j]) == snapshots[j]
        init_cols = init_progressive_params(CFG, N, seed=0)["model"]["columns"]
        for j in range(k + 1, N):
            assert _bytes(cols[j]) == _bytes(init_cols[j])
        snapshots.append(_bytes(cols[k]))

        # Task 0's behaviour is frozen once learned.
        if k == 0:
            before0 = greedy0(params)
        else:
            np.testing.assert_array_equal(greedy0(params), before0)


def test_progressive_params_have_logical_axes_for_sharding():
    """Every progressive parameter maps to mesh axes (`parallel.param_shardings`): the
    columns like a decoder's, the laterals' input dimension like the model width."""
    from r1jax import parallel

    cfg = ModelConfig(
        vocab_size=104, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64
    )
    params = init_progressive_params(cfg, 3, 0)
    axes = parallel.param_logical_axes(params)
    lat = axes["model"]["columns"][2]["laterals"][0][1]["kernel"]
    assert lat == ("embed", None)
    assert axes["model"]["columns"][1]["embed"]["embedding"] == ("vocab", "embed")
