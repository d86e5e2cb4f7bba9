"""`model.layer_loop`: one `lax.scan` over the decoder blocks computes what the unrolled
loop does (logits, gradients, the shared-prompt pass and its cache, under remat), and
its program holds one block whatever the depth."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.config import ConfigError, validate
from r1jax.configs import arith_tiny
from r1jax.models import CausalLM, ModelConfig, ValueModel
from r1jax.models.transformer import SCAN_MIN_LAYERS, layer_loop
from r1jax.sampling import grouped_hidden

CFG = ModelConfig(
    vocab_size=40,
    d_model=32,
    n_layers=3,
    n_heads=4,
    n_kv_heads=2,
    head_dim=8,
    mlp_dim=48,
    qkv_bias=True,
    tie_embeddings=False,
)


def _split(cfg, loop):
    return nnx.split(CausalLM(dataclasses.replace(cfg, layer_loop=loop), rngs=nnx.Rngs(0)))


def _tokens(b=3, l=9, seed=1):
    return jax.random.randint(jax.random.key(seed), (b, l), 0, CFG.vocab_size)


def test_auto_resolves_by_depth_and_unknown_values_are_refused():
    assert layer_loop(dataclasses.replace(CFG, n_layers=SCAN_MIN_LAYERS - 1)) == "unroll"
    assert layer_loop(dataclasses.replace(CFG, n_layers=SCAN_MIN_LAYERS)) == "scan"
    assert layer_loop(dataclasses.replace(CFG, n_layers=2, layer_loop="scan")) == "scan"
    assert layer_loop(dataclasses.replace(CFG, n_layers=24, layer_loop="unroll")) == "unroll"
    with pytest.raises(ValueError, match="layer_loop='loop' is unknown"):
        dataclasses.replace(CFG, layer_loop="loop")
    c = arith_tiny.get_config()
    c.model.layer_loop = "scanned"
    with pytest.raises(ConfigError, match="model.layer_loop"):
        validate(c)


@pytest.mark.parametrize("remat", ["none", "dots", "full"])
def test_scan_equals_unrolled_loss_and_gradients(remat):
    cfg = dataclasses.replace(CFG, remat=remat)
    toks = _tokens()
    out = {}
    for loop in ("unroll", "scan"):
        graphdef, params = _split(cfg, loop)

        def loss(p, graphdef=graphdef):
            logp = jax.nn.log_softmax(nnx.merge(graphdef, p)(toks))
            return -jnp.mean(jnp.take_along_axis(logp[:, :-1], toks[:, 1:, None], -1))

        out[loop] = jax.jit(jax.value_and_grad(loss))(params)
    (v_u, g_u), (v_s, g_s) = out["unroll"], out["scan"]
    np.testing.assert_allclose(v_s, v_u, rtol=1e-6)
    assert jax.tree.structure(g_s) == jax.tree.structure(g_u)  # one entry per block
    for a, b in zip(jax.tree.leaves(g_u), jax.tree.leaves(g_s)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    # The gradient reaches every block (not only the first), and differs between them.
    layers = g_s["model"]["layers"]
    norms = [float(jnp.linalg.norm(layers[i]["mlp"]["up_proj"]["kernel"])) for i in range(3)]
    assert min(norms) > 0 and len(set(norms)) == 3


def test_scan_equals_unrolled_in_the_shared_prompt_pass_with_its_cache():
    prompt = _tokens(2, 5, seed=2)
    prompt_mask = jnp.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], bool)  # left padding
    completion = _tokens(6, 4, seed=3)
    completion_mask = jnp.ones((6, 4), bool).at[1, 3].set(False)
    hs = {}
    for loop in ("unroll", "scan"):
        graphdef, params = _split(CFG, loop)

        def f(p, graphdef=graphdef):
            h = grouped_hidden(
                nnx.merge(graphdef, p).model, prompt, prompt_mask, completion, completion_mask
            )
            return jnp.sum(h**2), h

        (_, h), g = jax.jit(jax.value_and_grad(f, has_aux=True))(params)
        hs[loop] = (h, g)
    np.testing.assert_allclose(hs["scan"][0], hs["unroll"][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(hs["unroll"][1]), jax.tree.leaves(hs["scan"][1])):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_critic_values_equal():
    toks = _tokens()
    valid = jnp.ones(toks.shape, bool)
    from r1jax.models import causal_mask, positions_from_mask

    vals = [
        ValueModel(dataclasses.replace(CFG, layer_loop=loop), rngs=nnx.Rngs(4))(
            toks, positions_from_mask(valid), causal_mask(valid)
        )
        for loop in ("unroll", "scan")
    ]
    np.testing.assert_allclose(vals[1], vals[0], rtol=1e-6, atol=1e-7)


def _dots_in_program(n_layers, loop):
    cfg = dataclasses.replace(CFG, n_layers=n_layers)
    graphdef, params = _split(cfg, loop)
    toks = _tokens()
    f = jax.jit(jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(toks))))
    return f.lower(params).as_text().count("stablehlo.dot_general")


def test_the_scanned_program_holds_one_block_whatever_the_depth():
    unrolled = [_dots_in_program(n, "unroll") for n in (2, 6)]
    scanned = [_dots_in_program(n, "scan") for n in (2, 6)]
    assert unrolled[1] > unrolled[0]  # the loop copies every block into the program
    assert scanned[1] == scanned[0]  # the scan keeps one
    assert scanned[1] < unrolled[1]


def test_sampling_is_unchanged_by_the_loop(monkeypatch):
    """Decoding (cache, no `train`) always unrolls: no scan is traced, same tokens."""
    from r1jax.models import transformer
    from r1jax.sampling import generate

    traced = []
    real = transformer.scan_blocks
    monkeypatch.setattr(transformer, "scan_blocks", lambda *a: traced.append(1) or real(*a))

    toks = _tokens(2, 4, seed=5)
    mask = jnp.ones(toks.shape, bool)
    outs = []
    for loop in ("unroll", "scan"):
        graphdef, params = _split(CFG, loop)
        model = nnx.merge(graphdef, params)
        outs.append(
            generate(
                model,
                toks,
                mask,
                jax.random.key(0),
                max_new_tokens=6,
                temperature=1.0,
                eos_id=1,
                pad_id=0,
            )
        )
    assert traced == []
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
        np.testing.assert_array_equal(a, b)
