"""LoRA adapters: identity at init, W + scale·a@b after, gradients reach only the adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.models.lora import (
    LORA_TARGETS,
    LoraConfig,
    apply_lora,
    init_lora,
    lora_param_count,
    lora_shardings,
)
from r1jax.models.transformer import CausalLM, ModelConfig

CFG = ModelConfig(
    vocab_size=32, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32
)
LCFG = LoraConfig(rank=4, alpha=8.0)
TOKENS = jnp.array([[1, 5, 7, 2, 9, 3], [4, 4, 8, 30, 0, 11]], jnp.int32)


@pytest.fixture(scope="module")
def model():
    graphdef, state = nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))
    return graphdef, nnx.to_pure_dict(state)


def _logits(graphdef, params):
    return nnx.merge(graphdef, params)(TOKENS)


def _adapted_paths(lora):
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(lora)[0]:
        keys = tuple(k.key for k in path)
        if keys[-1] == "a":
            out.append(keys[:-1])
    return sorted(out, key=str)


def test_identity_at_init(model):
    graphdef, params = model
    lora = init_lora(params, LCFG, jax.random.PRNGKey(0))
    assert set(lora["model"]["layers"][0]["attn"]["q_proj"]) == {"a", "b"}
    a = lora["model"]["layers"][0]["attn"]["q_proj"]["a"]
    b = lora["model"]["layers"][0]["attn"]["q_proj"]["b"]
    assert a.shape == (16, 4) and b.shape == (4, 16)
    assert a.dtype == b.dtype == jnp.float32
    assert float(jnp.abs(a).max()) > 0 and float(jnp.abs(a).max()) <= 1 / np.sqrt(16)
    assert not np.any(np.asarray(b))
    np.testing.assert_array_equal(
        _logits(graphdef, apply_lora(params, lora, LCFG)), _logits(graphdef, params)
    )


def _random_b(lora, seed=1):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(lora)
    rng = np.random.default_rng(seed)
    new = [
        (0.1 * rng.normal(size=x.shape)).astype(np.float32) if p[-1].key == "b" else x
        for p, x in leaves
    ]
    return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in new])


@pytest.mark.parametrize("targets", [LCFG.targets, ("all",)])
def test_apply_matches_numpy_reference(model, targets):
    graphdef, params = model
    cfg = LoraConfig(rank=4, alpha=8.0, targets=targets)
    lora = _random_b(init_lora(params, cfg, jax.random.PRNGKey(0)))

    ref = jax.tree.map(np.array, params)  # independent NumPy copy
    for path in _adapted_paths(lora):
        node, ad = ref, lora
        for k in path:
            node, ad = node[k], ad[k]
        a, b = np.asarray(ad["a"], np.float64), np.asarray(ad["b"], np.float64)
        w = node["kernel"].astype(np.float64) + (8.0 / 4) * (a @ b)
        node["kernel"] = w.astype(np.float32)

    adapted = apply_lora(params, lora, cfg)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), adapted, ref)
    got = _logits(graphdef, adapted)
    want = _logits(graphdef, jax.tree.map(jnp.asarray, ref))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(got - _logits(graphdef, params)).max() > 1e-2  # the adapter matters

    # untouched leaves are the very same objects; adapted kernels keep their dtype
    assert adapted["model"]["embed"]["embedding"] is params["model"]["embed"]["embedding"]
    assert adapted["model"]["norm"]["scale"] is params["model"]["norm"]["scale"]
    l0 = adapted["model"]["layers"][0]
    assert l0["input_norm"]["scale"] is params["model"]["layers"][0]["input_norm"]["scale"]
    assert (
        l0["attn"]["q_proj"]["kernel"]
        is not params["model"]["layers"][0]["attn"]["q_proj"]["kernel"]
    )
    assert l0["attn"]["q_proj"]["kernel"].dtype == jnp.float32
    # the input tree is not mutated
    np.testing.assert_array_equal(_logits(graphdef, params), _logits(graphdef, model[1]))


def test_apply_keeps_kernel_dtype():
    w = jnp.ones((3, 5), jnp.bfloat16)
    params = {"blk": {"q_proj": {"kernel": w}}}
    cfg = LoraConfig(rank=2, alpha=2.0)
    lora = {"blk": {"q_proj": {"a": jnp.ones((3, 2)), "b": jnp.full((2, 5), 0.25)}}}
    out = apply_lora(params, lora, cfg)["blk"]["q_proj"]["kernel"]
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.full((3, 5), 1.5))


def test_gradients_flow_to_adapters_only(model):
    graphdef, params = model
    lora = init_lora(params, LCFG, jax.random.PRNGKey(0))

    def loss(lora):
        logits = _logits(graphdef, apply_lora(params, lora, LCFG))
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 3])

    grads = jax.grad(loss)(lora)
    # gradients exist for the adapters only: same tree as `lora`, nothing for the base
    assert jax.tree.structure(grads) == jax.tree.structure(lora)
    assert len(jax.tree.leaves(grads)) == 2 * 4 * CFG.n_layers
    for path in _adapted_paths(grads):
        g = grads
        for k in path:
            g = g[k]
        assert float(jnp.abs(g["b"]).max()) > 0, path  # b receives signal at init
        assert not np.any(np.asarray(g["a"])), path  # dL/da = dL/dW @ b.T = 0 while b = 0

    # after a step on b, a gets gradient too
    lora2 = jax.tree.map(lambda x, g: x - 0.1 * g, lora, grads)
    g2 = jax.grad(loss)(lora2)
    assert float(jnp.abs(g2["model"]["layers"][1]["attn"]["v_proj"]["a"]).max()) > 0


def test_targets_default_attention_all_seven(model):
    _, params = model
    key = jax.random.PRNGKey(0)
    default = init_lora(params, LCFG, key)
    full = init_lora(params, LoraConfig(rank=4, alpha=8.0, targets=("all",)), key)
    for i in range(CFG.n_layers):
        assert set(default["model"]["layers"][i]) == {"attn"}
        assert set(default["model"]["layers"][i]["attn"]) == {
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
        }
        assert set(full["model"]["layers"][i]["attn"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
        assert set(full["model"]["layers"][i]["mlp"]) == {"gate_proj", "up_proj", "down_proj"}
    assert set(default["model"]) == {"layers"}
    assert len(_adapted_paths(default)) == 4 * CFG.n_layers
    assert len(_adapted_paths(full)) == 7 * CFG.n_layers
    assert LoraConfig(rank=1, alpha=1.0, targets="all").targets == LORA_TARGETS
    only_mlp = init_lora(params, LoraConfig(rank=4, alpha=8.0, targets=("up_proj",)), key)
    assert _adapted_paths(only_mlp) == sorted(
        [("model", "layers", i, "mlp", "up_proj") for i in range(CFG.n_layers)], key=str
    )
    # rank 4: q [16,16], k [16,8], v [16,8], o [16,16] -> 4*(16+16+16+8+16+8+16+16)
    assert lora_param_count(default) == CFG.n_layers * 4 * (32 + 24 + 24 + 32)
    # an adapter depends only on the key and its path, not on the other targets
    np.testing.assert_array_equal(
        default["model"]["layers"][1]["attn"]["k_proj"]["a"],
        full["model"]["layers"][1]["attn"]["k_proj"]["a"],
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0, "alpha": 1.0}, "rank must be a positive int"),
        ({"rank": -2, "alpha": 1.0}, "rank must be a positive int"),
        (
            {"rank": 4, "alpha": 1.0, "targets": ("q_proj", "qproj")},
            r"unknown module names \['qproj'\].*'all'.*q_proj",
        ),
        ({"rank": 4, "alpha": 1.0, "targets": ()}, "empty"),
        ({"rank": 4, "alpha": float("nan")}, "finite"),
    ],
)
def test_invalid_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoraConfig(**kwargs)


def test_no_match_and_mismatched_adapter_raise(model):
    _, params = model
    with pytest.raises(ValueError, match="matched no kernel"):
        init_lora(
            {"model": {"embed": {"embedding": jnp.ones((4, 4))}}}, LCFG, jax.random.PRNGKey(0)
        )
    lora = init_lora(params, LCFG, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="rank 8"):
        apply_lora(params, lora, LoraConfig(rank=8, alpha=8.0))


def test_init_deterministic_order_independent_and_jittable(model):
    _, params = model
    key = jax.random.PRNGKey(3)
    l1 = init_lora(params, LCFG, key)
    l2 = init_lora(params, LCFG, key)
    jax.tree.map(np.testing.assert_array_equal, l1, l2)
    l3 = init_lora(params, LCFG, jax.random.PRNGKey(4))
    assert not np.array_equal(
        l1["model"]["layers"][0]["attn"]["q_proj"]["a"],
        l3["model"]["layers"][0]["attn"]["q_proj"]["a"],
    )
    # distinct modules get distinct draws
    assert not np.array_equal(
        l1["model"]["layers"][0]["attn"]["q_proj"]["a"],
        l1["model"]["layers"][1]["attn"]["q_proj"]["a"],
    )

    def reverse(t):
        return {k: reverse(t[k]) for k in reversed(list(t))} if isinstance(t, dict) else t

    l4 = init_lora(reverse(params), LCFG, key)
    jax.tree.map(np.testing.assert_array_equal, l1, l4)

    jitted = jax.jit(init_lora, static_argnums=1)(params, LCFG, key)
    jax.tree.map(np.testing.assert_array_equal, l1, jitted)
    shapes = jax.eval_shape(lambda p, k: init_lora(p, LCFG, k), params, key)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes) == jax.tree.map(
        lambda x: (x.shape, x.dtype), l1
    )
    assert lora_param_count(shapes) == lora_param_count(l1)
    applied = jax.jit(apply_lora, static_argnums=2)(params, _random_b(l1), LCFG)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6),
        applied,
        apply_lora(params, _random_b(l1), LCFG),
    )


def test_lora_shardings_follow_kernel_axes():
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("fsdp", "tensor"))
    lora = {"m": {"q_proj": {"a": jnp.zeros((4, 2)), "b": jnp.zeros((2, 6))}}}
    shard = {"m": {"q_proj": {"kernel": NamedSharding(mesh, P("fsdp", "tensor"))}}, "x": None}
    out = lora_shardings(lora, shard)
    assert out["m"]["q_proj"]["a"].spec == P("fsdp", None)
    assert out["m"]["q_proj"]["b"].spec == P(None, "tensor")
