"""`model.attention=splash`: the Pallas splash-attention kernel (TPU) against our einsum
path, the reference. Off a TPU the kernel runs in the Pallas interpreter: the same
kernel code, block tables and segment-id masking, so logits, gradients, packed SFT rows,
prefill, sampling and the grouped training pass are checked here on the CPU (within
float32 tolerances, with left padding, odd lengths padded to the kernel's blocks and
grouped-query heads). `auto`'s choice on a TPU is checked with the backend stood in for;
the trainer on a mesh with splash (a `shard_map` per shard) is in
`tests/train/mesh_test.py`."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import parallel, sampling
from r1jax._testing import left_padded
from r1jax.models import CausalLM, ModelConfig, transformer
from r1jax.models.transformer import (
    attention_impl,
    causal_mask,
    packed_causal,
    padded_causal,
    positions_from_mask,
    splash_shards,
)

CFG = ModelConfig(vocab_size=50, d_model=48, n_layers=2, n_heads=6, n_kv_heads=2, head_dim=16)
TOL = 2e-5


def _models(**blocks):
    """The same weights under the einsum and the splash attention (`blocks`: how the
    splash model runs its blocks, e.g. layer_loop / remat)."""
    ref = CausalLM(dataclasses.replace(CFG, attention="einsum"), rngs=nnx.Rngs(0))
    cfg = dataclasses.replace(CFG, attention="splash", **blocks)
    splash = CausalLM(cfg, rngs=nnx.Rngs(1))
    nnx.update(splash, nnx.state(ref))
    return ref, splash


def _left_padded(b=3, length=13, seed=0):
    return left_padded(CFG.vocab_size, b, length, seed)


def _close(a, b, tol=TOL):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(b, a, atol=tol * max(1.0, float(np.abs(a).max())), rtol=tol)


def test_structured_masks_expand_to_the_dense_ones():
    _, valid = _left_padded(length=9)
    for q_start in (0, 4):
        np.testing.assert_array_equal(
            padded_causal(valid, q_start).dense(), causal_mask(valid)[:, q_start:]
        )
        assert padded_causal(valid, q_start).shape == (3, 9 - q_start, 9)
    seg = jnp.asarray([[1, 1, 1, 2, 2, 0], [1, 1, 2, 2, 2, 3]])
    tri = jnp.tril(jnp.ones((6, 6), bool))[None]
    sft = tri & (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)  # SFT's mask
    np.testing.assert_array_equal(packed_causal(seg).dense(), sft)


def _params(grads):
    return jax.tree.leaves(nnx.state(grads, nnx.Param))


@pytest.mark.parametrize("blocks", [{}, {"layer_loop": "scan", "remat": "full"}])
def test_logits_and_gradients_match_the_einsum_path(blocks):
    ref, splash = _models(**blocks)
    tokens, valid = _left_padded()
    pos, mask = positions_from_mask(valid), padded_causal(valid)

    @nnx.jit  # one program per model (the interpreted kernel is slow op by op)
    @functools.partial(nnx.value_and_grad, has_aux=True)
    def loss(model):
        logits, _ = model(tokens, pos, mask)
        lsm = jax.nn.log_softmax(logits)
        return jnp.sum(jnp.where(valid[..., None], lsm, 0.0) ** 2) / 1e3, logits

    (_, a), ga = loss(ref)
    (_, b), gb = loss(splash)
    assert np.isfinite(np.asarray(b)).all()  # padding rows too
    m = np.asarray(valid)
    _close(np.asarray(a)[m], np.asarray(b)[m])
    pa, pb = _params(ga), _params(gb)
    assert len(pa) == len(pb) > 10
    for x, y in zip(pa, pb, strict=True):
        _close(x, y, 1e-4)


def test_bf16_logits_match_within_its_rounding():
    """bf16 compute (the accelerators' setting): the kernel takes q / sqrt(Dh) rounded
    to bf16 and accumulates in float32; logits within bf16 tolerance of the einsum path."""
    cfg = dataclasses.replace(CFG, dtype="bfloat16")
    ref = CausalLM(dataclasses.replace(cfg, attention="einsum"), rngs=nnx.Rngs(0))
    splash = CausalLM(dataclasses.replace(cfg, attention="splash"), rngs=nnx.Rngs(1))
    nnx.update(splash, nnx.state(ref))
    tokens, valid = _left_padded()
    logits = nnx.jit(lambda m: m(tokens, positions_from_mask(valid), padded_causal(valid))[0])
    m = np.asarray(valid)
    _close(np.asarray(logits(ref))[m], np.asarray(logits(splash))[m], 3e-2)


def test_packed_rows_match():
    """SFT's rows: several sequences side by side, causal within each (segment ids)."""
    ref, splash = _models()
    seg = np.zeros((2, 20), np.int32)
    seg[0, :7], seg[0, 7:15] = 1, 2  # two sequences and padding
    seg[1, :20] = np.repeat([1, 2, 3], [5, 5, 10])
    pos = np.zeros_like(seg)
    for r in range(2):
        for s in range(1, 4):
            idx = np.flatnonzero(seg[r] == s)
            pos[r, idx] = np.arange(len(idx))
    tokens = jnp.asarray(np.random.default_rng(2).integers(1, 50, seg.shape), jnp.int32)
    mask = packed_causal(jnp.asarray(seg))
    a, _ = ref(tokens, jnp.asarray(pos), mask)
    b, _ = splash(tokens, jnp.asarray(pos), mask)
    real = seg > 0
    _close(np.asarray(a)[real], np.asarray(b)[real])


def test_prefill_sampling_and_the_grouped_pass_match():
    ref, splash = _models()
    prompt, pmask = _left_padded(b=2, length=10)
    comp = jnp.asarray(np.random.default_rng(1).integers(1, 50, (4, 7)), jnp.int32)
    cmask = jnp.ones((4, 7), bool).at[1, 4:].set(False)

    @nnx.jit
    @functools.partial(nnx.value_and_grad, has_aux=True)
    def loss(model):
        h = sampling.grouped_hidden(model.model, prompt, pmask, comp, cmask)
        return jnp.mean(h**2 * cmask[..., None]), h

    (_, ha), ga = loss(ref)
    (_, hb), gb = loss(splash)
    _close(np.asarray(ha)[np.asarray(cmask)], np.asarray(hb)[np.asarray(cmask)])
    for x, y in zip(_params(ga), _params(gb), strict=True):
        _close(x, y, 1e-4)
    # the prefill runs splash, the decode steps the einsum path: same draws
    kw = {"max_new_tokens": 6, "temperature": 1.0, "eos_id": -1, "pad_id": 0}
    generate = nnx.jit(lambda m: sampling.generate(m, prompt, pmask, jax.random.key(3), **kw))
    ra, rb = generate(ref), generate(splash)
    np.testing.assert_array_equal(ra.tokens_bt, rb.tokens_bt)
    _close(ra.logp_bt, rb.logp_bt, 1e-4)


def test_a_dense_mask_under_splash_is_a_clear_error():
    _, splash = _models()
    tokens, valid = _left_padded()
    with pytest.raises(ValueError, match=r"padded_causal\(valid, q_start\)"):
        splash(tokens, positions_from_mask(valid), causal_mask(valid))


def test_auto_picks_splash_on_a_tpu_where_it_can_run(monkeypatch):
    cfg = dataclasses.replace(CFG, attention="auto")
    _, valid = _left_padded(b=4, length=256)
    mask = padded_causal(valid)
    assert attention_impl(cfg, 256, 256, mask) == "einsum"  # not a TPU
    assert attention_impl(dataclasses.replace(cfg, attention="splash"), 8, 8) == "splash"
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert attention_impl(cfg, 256, 256, mask) == "splash"
    assert attention_impl(cfg, 200, 328, padded_causal(valid[:, :200])) == "splash"
    assert attention_impl(cfg, 256, 256, mask.dense()) == "einsum"  # arbitrary mask
    assert attention_impl(cfg, 64, 64, padded_causal(valid[:, :64])) == "einsum"  # short
    assert transformer.mask_for_pass(cfg, mask, 256, 256) is mask  # kept structured
    assert transformer.mask_for_pass(cfg, mask, 1, 256).shape == (4, 256, 256)  # decode
    # several devices and no context mesh (an automatically partitioned program, e.g. the
    # evaluation's decoder on sharded params): a Mosaic kernel cannot be partitioned
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    assert attention_impl(cfg, 256, 256, mask) == "einsum"
    # pmap's per-device program (an all-manual mesh): the kernel is called directly
    manual = jax.sharding.AbstractMesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Manual,))
    with jax.sharding.use_abstract_mesh(manual):
        assert attention_impl(cfg, 256, 256, mask) == "splash"
        assert splash_shards(cfg, 4) == ()
    # under a context mesh: per shard, batch over data x fsdp, heads over tensor
    mesh = jax.sharding.AbstractMesh((2, 2, 2), parallel.MESH_AXES)
    with jax.sharding.use_abstract_mesh(mesh):
        assert attention_impl(cfg, 256, 256, mask) == "splash"
        assert splash_shards(cfg, 4)[1:] == (("data", "fsdp"), "tensor")
        assert splash_shards(dataclasses.replace(cfg, n_kv_heads=1), 4)[1:] == (
            ("data", "fsdp"),
            None,  # one kv head cannot be split: heads replicated
        )
        six = padded_causal(jnp.ones((6, 256), bool))  # 6 rows over 4 batch shards
        assert attention_impl(cfg, 256, 256, six) == "einsum"
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((8, 1, 1), parallel.MESH_AXES)):
        assert splash_shards(cfg, 8)[1:] == (("data",), None)


def test_the_mesh_axes_are_the_learner_rules():
    """transformer's copy of the axes (it cannot import `parallel`) stays in step."""
    assert transformer._BATCH_AXES == parallel.BATCH_AXES
    assert dict(parallel.LEARNER_RULES)["heads"] == transformer._HEAD_AXIS
    assert dict(parallel.LEARNER_RULES)["kv"] == transformer._HEAD_AXIS


def test_step_functions_trace_under_a_mesh_of_several_devices_or_where_splash_may_run(
    monkeypatch,
):
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), parallel.MESH_AXES)
    two = jax.sharding.Mesh(np.asarray(jax.devices() * 2).reshape(2, 1, 1), parallel.MESH_AXES)
    fn = lambda: jax.sharding.get_abstract_mesh()
    einsum = dataclasses.replace(CFG, attention="einsum")
    auto = dataclasses.replace(CFG, attention="auto")
    splash = dataclasses.replace(CFG, attention="splash")
    assert parallel.traced_under_mesh(fn, one, (einsum, None)) is fn
    assert parallel.traced_under_mesh(fn, one, (auto,)) is fn  # not a TPU
    assert parallel.traced_under_mesh(fn, one, (splash,))() == one.abstract_mesh
    assert parallel.traced_under_mesh(fn, two, (einsum, None))() == two.abstract_mesh

    def sft_step(x):
        return x

    # the program keeps its step's name (profiles, XLA dumps), a partial's too
    traced = parallel.traced_under_mesh(functools.partial(sft_step), two)
    assert jax.jit(traced).lower(1).as_text().count("jit_sft_step") >= 1
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert parallel.traced_under_mesh(fn, one, (einsum, auto))() == one.abstract_mesh


def test_splash_runs_per_shard_under_a_context_mesh():
    """A Mosaic kernel cannot be partitioned automatically: under the context mesh the
    pass is a `shard_map` (checked in the program; the numbers on a mesh of 8 CPU devices
    are in tests/train/mesh_test.py), without one a direct call."""
    cfg = dataclasses.replace(CFG, attention="splash")
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((4, 130, 6, 16)), jnp.float32)
    kv = jnp.asarray(rng.standard_normal((4, 130, 2, 16)), jnp.float32)
    mask = padded_causal(jnp.ones((4, 130), bool))
    attend = lambda q, k, v: transformer.splash_attention(cfg, q, k, v, mask)
    assert "shard_map" not in str(jax.make_jaxpr(attend)(q, kv, kv))
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((2, 2, 2), parallel.MESH_AXES)):
        program = str(jax.make_jaxpr(attend)(q, kv, kv))
        assert "shard_map" in program
        with pytest.raises(ValueError, match="cannot be split over the context mesh"):
            transformer.splash_attention(
                cfg, q[:3], kv[:3], kv[:3], padded_causal(mask.segments_bs[:3] > 0)
            )


def test_splash_set_where_the_kernel_cannot_run_takes_the_einsum_path(monkeypatch, caplog):
    """`model.attention=splash` on several devices without a context mesh (the
    evaluation's decoder on a sharded model) or a batch the mesh's shards do not divide:
    the pass takes the einsum path, with a warning, instead of failing to compile."""
    cfg = dataclasses.replace(CFG, attention="splash")
    mask = padded_causal(jnp.ones((6, 130), bool))
    assert transformer.mask_for_pass(cfg, mask, 130, 130) is mask  # one device
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    transformer._warn_once.cache_clear()
    with caplog.at_level("WARNING", logger="r1jax"):
        dense = transformer.mask_for_pass(cfg, mask, 130, 130)
    assert isinstance(dense, transformer.CausalDense)  # the einsum path, by causal blocks
    np.testing.assert_array_equal(transformer.dense_mask(dense), mask.dense())
    assert "cannot run the splash kernel here" in caplog.text
    monkeypatch.undo()
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((2, 2, 2), parallel.MESH_AXES)):
        assert transformer.mask_for_pass(cfg, mask, 130, 130).shape == (6, 130, 130)  # 6 % 4
        four = padded_causal(jnp.ones((4, 130), bool))
        assert transformer.mask_for_pass(cfg, four, 130, 130) is four
