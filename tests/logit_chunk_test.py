"""Log-probs and entropy without the logits tensor (`sampling.token_logp_entropy`): the
same numbers and gradients as the whole-logits path, and the compiled gradient keeps
far fewer bytes of temporaries (issue: speed, "log-probs without the logits tensor")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import sampling
from r1jax.models.transformer import CausalLM, ModelConfig
from r1jax.rl.losses import entropy_from_logits
from r1jax.train.learner import forward_logp

CFG = ModelConfig(
    vocab_size=512, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64
)


def _setup(n=4, u=4, p=5, t=11, seed=0):
    model = CausalLM(CFG, rngs=nnx.Rngs(seed))
    gdef, params = nnx.split(model)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    prompt = jax.random.randint(k1, (u, p), 0, CFG.vocab_size)
    pmask = jnp.ones((u, p), bool).at[0, 0].set(False)  # a left-padded prompt
    tokens = jax.random.randint(k2, (n, t), 0, CFG.vocab_size)
    tmask = jnp.ones((n, t), bool).at[1, -3:].set(False)  # a short completion
    return gdef, params, prompt, pmask, tokens, tmask


def _objective(gdef, prompt, pmask, tokens, tmask, chunk):
    def f(params):
        logp, ent = forward_logp(gdef, params, prompt, pmask, tokens, tmask, 0.7, chunk)
        return (logp * tmask).sum() + 0.3 * (ent * tmask).sum(), (logp, ent)

    return f


@pytest.mark.parametrize("u", [4, 2])  # one prompt per row; two groups of two rows
@pytest.mark.parametrize("chunk", [1, 4, 5, 11])
def test_chunked_equals_whole_logits_values_and_gradients(u, chunk):
    gdef, params, prompt, pmask, tokens, tmask = _setup(u=u)
    whole = jax.value_and_grad(_objective(gdef, prompt, pmask, tokens, tmask, 0), has_aux=True)
    part = jax.value_and_grad(_objective(gdef, prompt, pmask, tokens, tmask, chunk), has_aux=True)
    (l0, (lp0, e0)), g0 = whole(params)
    (l1, (lp1, e1)), g1 = jax.jit(part)(params)
    np.testing.assert_allclose(lp1, lp0, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(e1, e0, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_whole_logits_path_is_token_logp_and_entropy_from_logits():
    """chunk = 0 is the reference: exactly `token_logp` and `entropy_from_logits`."""
    gdef, params, prompt, pmask, tokens, tmask = _setup()
    logp, ent = forward_logp(gdef, params, prompt, pmask, tokens, tmask, 0.7, 0)
    model = nnx.merge(gdef, params)
    lg = sampling.sequence_logits(model, prompt, pmask, tokens, tmask) / 0.7
    np.testing.assert_array_equal(logp, sampling.token_logp(lg, tokens))
    np.testing.assert_array_equal(ent, entropy_from_logits(lg))
    h = sampling.sequence_hidden(model, prompt, pmask, tokens, tmask)
    one_pass = sampling.token_logp_entropy(model, h, tokens, 0.7, 0)  # logit - logsumexp
    np.testing.assert_allclose(one_pass[0], logp, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(one_pass[1], ent, rtol=1e-5, atol=2e-5)


def test_chunked_gradient_keeps_no_logits_tensor():
    """The compiled gradient's temporaries: with 8 rows x 64 positions x 32k vocabulary
    the whole logits are 64 MiB in float32 (and the gradient holds several such tensors);
    in chunks of 8 positions the whole gradient needs less than one of them."""
    cfg = ModelConfig(
        vocab_size=32768, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64
    )
    gdef, params = nnx.split(CausalLM(cfg, rngs=nnx.Rngs(0)))
    prompt, pmask = jnp.zeros((8, 4), jnp.int32), jnp.ones((8, 4), bool)
    tokens, tmask = jnp.zeros((8, 64), jnp.int32), jnp.ones((8, 64), bool)

    def temp_bytes(chunk):
        f = _objective(gdef, prompt, pmask, tokens, tmask, chunk)
        grad = jax.jit(jax.grad(lambda p: f(p)[0]))
        stats = grad.lower(params).compile().memory_analysis()
        return stats.temp_size_in_bytes

    logits_bytes = 8 * 64 * 32768 * 4
    whole, chunked = temp_bytes(0), temp_bytes(8)
    assert whole >= logits_bytes  # the [8, 64, V] logits (and more) are live at once
    assert chunked < whole / 5 and chunked < logits_bytes, (whole, chunked)  # ~10x less


def test_masked_vocabulary_keeps_values_and_gradients_finite():
    """Logits of -inf (a vocabulary padded past the tokenizer is masked so) add nothing to
    the entropy and no nan to its gradient, as in `entropy_from_logits`."""
    logits = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 10)).at[..., 7:].set(-jnp.inf)
    tokens = jnp.array([[0, 1, 2], [3, 4, 5]])

    def ours(x):
        logp, ent = sampling._logp_entropy(x, tokens)
        return logp.sum() + ent.sum()

    def reference(x):
        return sampling.token_logp(x, tokens).sum() + entropy_from_logits(x).sum()

    np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-6)
    g, g_ref = jax.grad(ours)(logits), jax.grad(reference)(logits)
    assert np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def _sft_setup(vocab=512, rows=4, length=24):
    from r1jax.train.sft_step import pack_examples
    from r1jax.train.state import Graphs

    cfg = ModelConfig(
        vocab_size=vocab, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64
    )
    gdef, params = nnx.split(CausalLM(cfg, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    examples = [
        (rng.integers(1, vocab, 3).tolist(), rng.integers(1, vocab, int(n)).tolist())
        for n in rng.integers(2, 9, 12)
    ]
    batch = jax.tree.map(jnp.asarray, pack_examples(examples, rows, length, 0))
    return Graphs(policy=gdef, value=None, model_cfg=cfg), params, batch


@pytest.mark.parametrize("chunk", [5, 24])
def test_sft_loss_in_chunks_equals_whole_logits(chunk):
    """`sft.logit_chunk`: packed rows (segments), loss, token accuracy and gradients."""
    from r1jax.train.sft_step import sft_loss

    graphs, params, batch = _sft_setup()

    def run(c):
        f = lambda p: sft_loss(p, batch, graphs, logit_chunk=c)
        return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

    (l0, aux0), g0 = run(0)
    (l1, aux1), g1 = run(chunk)
    assert float(aux0["tokens"]) > 20
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    np.testing.assert_allclose(aux1["token_accuracy"], aux0["token_accuracy"])
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sft_step_in_chunks_keeps_no_logits_tensor():
    """A compiled SFT update (gradient + AdamW) with a 32k vocabulary: chunks of 8
    positions need a fraction of the whole-logits update's temporaries."""
    import optax

    from r1jax.train.sft_step import sft_loss

    graphs, params, batch = _sft_setup(vocab=32768, rows=8, length=64)
    tx = optax.adamw(1e-3)

    def temp_bytes(chunk):
        def update(p, opt):
            g = jax.grad(lambda q: sft_loss(q, batch, graphs, logit_chunk=chunk)[0])(p)
            updates, opt = tx.update(g, opt, p)
            return optax.apply_updates(p, updates), opt

        compiled = jax.jit(update).lower(params, tx.init(params)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    logits_bytes = 8 * 64 * 32768 * 4
    whole, chunked = temp_bytes(0), temp_bytes(8)
    assert whole >= logits_bytes
    assert chunked < whole / 4 and chunked < logits_bytes, (whole, chunked)
