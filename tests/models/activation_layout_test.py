"""The model's activation layout under the trainer's mesh (`transformer.batch_sharded`,
`transformer.embed_tokens`): rows over the batch axes where they divide, the embedding
table gathered before the lookup, nothing without a context mesh. The numbers and the
work per device on 8 CPU devices are in `tests/train/mesh_test.py`."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import parallel
from r1jax.models import CausalLM, ModelConfig, transformer
from r1jax.models.transformer import batch_spec, padded_causal, positions_from_mask

P = jax.sharding.PartitionSpec
CFG = ModelConfig(vocab_size=40, d_model=16, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=8)


def _mesh(*shape):
    return jax.sharding.AbstractMesh(shape, parallel.MESH_AXES)


@pytest.mark.parametrize(
    ("shape", "batch", "spec"),
    [
        ((2, 4, 1), 8, P(("data", "fsdp"))),
        ((2, 4, 1), 16, P(("data", "fsdp"))),
        ((2, 4, 1), 2, P(("data",))),  # fsdp does not divide what is left: data only
        ((2, 4, 1), 3, P(None)),
        ((1, 4, 2), 4, P(("fsdp",))),  # axes of size 1 are skipped, tensor never used
        ((8, 1, 1), 1, P(None)),
        ((1, 1, 8), 8, P(None)),
    ],
)
def test_rows_go_over_the_batch_axes_that_divide_them(shape, batch, spec):
    assert batch_spec(_mesh(*shape), batch) == spec


def _specs(jaxpr):
    """The specs of every sharding constraint in `jaxpr` and the programs inside it."""
    out = []
    for e in jaxpr.eqns:
        if e.primitive.name == "sharding_constraint":
            out.append(e.params["sharding"].spec)
        for sub in jax.extend.core.jaxprs_in_params(e.params):
            out += _specs(sub)
    return out


def _constraints(model, tokens):
    valid = jnp.ones(tokens.shape, bool)
    fn = lambda t: model(t, positions_from_mask(valid), padded_causal(valid))[0]
    return _specs(jax.make_jaxpr(fn)(tokens).jaxpr)


@pytest.mark.parametrize("layer_loop", ["unroll", "scan"])
def test_the_residual_stream_is_laid_out_under_a_context_mesh_only(layer_loop):
    model = CausalLM(dataclasses.replace(CFG, layer_loop=layer_loop), rngs=nnx.Rngs(0))
    tokens = jnp.zeros((8, 5), jnp.int32)
    assert _constraints(model, tokens) == []  # no context mesh: the program as before
    with jax.sharding.use_abstract_mesh(_mesh(2, 2, 2)):
        specs = _constraints(model, tokens)
    table = P(P.UNCONSTRAINED, None)  # the table's feature dimension whole, vocab as it is
    rows = P(("data", "fsdp"))
    # the table, the embeddings, and each block's output (once in the scanned body)
    blocks = CFG.n_layers if layer_loop == "unroll" else 1
    assert sorted(map(str, specs)) == sorted(map(str, [table, rows] + [rows] * blocks))


def test_the_table_is_gathered_only_where_it_is_no_larger_than_the_rows():
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    with jax.sharding.use_abstract_mesh(_mesh(2, 2, 2)):
        specs = _constraints(model, jnp.zeros((4, 5), jnp.int32))  # 20 tokens < V = 40
    assert sorted(map(str, specs)) == [str(P(("data", "fsdp")))] * (1 + CFG.n_layers)


@pytest.mark.parametrize(
    "mesh",
    [
        _mesh(1, 1, 1),  # one device
        _mesh(1, 1, 8),  # no batch axis to split rows over: XLA's own layout
        jax.sharding.AbstractMesh((2, 2, 2), ("x", "y", "z")),  # a mesh of other axes
        jax.sharding.AbstractMesh(
            (2, 2, 2), parallel.MESH_AXES, axis_types=(jax.sharding.AxisType.Manual,) * 3
        ),  # per device already (pmap, shard_map)
    ],
)
def test_nothing_is_laid_out_where_there_is_no_batch_to_split(mesh):
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    with jax.sharding.use_abstract_mesh(mesh):
        assert _constraints(model, jnp.zeros((8, 5), jnp.int32)) == []


def test_an_eager_call_under_a_mesh_keeps_its_arrays_as_placed():
    x = jnp.ones((8, 3))
    with jax.sharding.use_abstract_mesh(_mesh(2, 2, 2)):
        assert transformer.batch_sharded(x) is x


def test_embed_tokens_is_nnx_embed():
    embed = nnx.Embed(CFG.vocab_size, CFG.d_model, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, CFG.vocab_size, (3, 7)))
    got = transformer.embed_tokens(embed, tokens)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(got, np.float32), np.asarray(embed(tokens), np.float32)
    )


def test_the_evaluation_decoder_is_the_plain_one_on_one_device():
    """`evaluate.make_mesh_decoder` on a one-device mesh without splash is the cached
    `make_decoder` itself (the same program, so one device's evaluations cannot move);
    on several devices it is traced under the mesh (its work per device and its tokens
    on 8 devices: `tests/train/mesh_test.py`)."""
    from r1jax.evaluate import make_decoder, make_mesh_decoder

    graphdef, params = nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))
    kw = {"max_new_tokens": 3, "eos_id": 1, "pad_id": 0, "temperature": 0.5, "top_p": 0.9}
    one = parallel.make_mesh(1, 1, 1)
    assert make_mesh_decoder(graphdef, one, cfgs=(CFG,), **kw) is make_decoder(graphdef, **kw)
    splash = dataclasses.replace(CFG, attention="splash")
    if parallel.may_splash(splash):  # a TPU: splash runs per shard, so under the mesh
        assert make_mesh_decoder(graphdef, one, cfgs=(splash,), **kw) is not make_decoder(
            graphdef, **kw
        )
    tokens = np.array([[0, 5, 6], [7, 8, 9]], np.int32)
    out = make_mesh_decoder(graphdef, one, **kw)(
        params, tokens, tokens > 0, jax.random.PRNGKey(0), jnp.int32(0)
    )
    assert out.shape == (2, 3)
