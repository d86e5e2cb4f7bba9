"""Precision and memory options: gradient accumulation, rematerialisation, bf16 compute,
completion-length buckets.

Accumulation and remat change how a step is computed, never what it computes: the smoke
run's SFT and RL losses and parameters match the plain run. bf16 compute keeps float32
master weights and float32 logits/log-probs, with bf16 matmuls in the compiled step.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.config import validate
from r1jax.configs.arith_tiny import get_config
from r1jax.errors import ConfigError
from r1jax.models.transformer import CausalLM, ModelConfig, causal_mask, positions_from_mask
from r1jax.tokenizer import PAD_ID
from r1jax.train.experiment import Experiment
from r1jax.train.rl_step import _bucket_sizes, generate


def _run(tmp_path, _learn_lens=None, **overrides):
    """2 SFT steps + 2 RL iterations of the smoke config; (losses, policy params).

    `_learn_lens`: a list that receives each RL iteration's `learn_len` metric."""
    c = get_config("smoke")
    with c.unlocked():
        c.sft.rows = 8
        c.rl.prompts_per_iter = 8
        c.reward.num_workers = 0
        for dotted, v in overrides.items():
            part, field = dotted.split("__")
            c[part][field] = v
    validate(c)
    exp = Experiment(c, str(tmp_path))
    try:
        state, out = exp.init_state, []
        for s in range(2):
            state, m = exp.sft_fn(state, exp.sft_batch(s))
            out.append(float(m["loss"]))
        state = exp.start_rl(state)
        for i in range(2):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            out += [float(m[k]) for k in ("loss", "pg_loss", "vf_loss", "approx_kl", "clip_frac")]
            if _learn_lens is not None:
                _learn_lens.append(float(m["learn_len"]))
        params = jax.tree.map(np.asarray, state.policy)
    finally:
        exp.close()
    return np.array(out), params


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("base"))


def _max_param_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_accumulation_and_remat_give_the_plain_step(tmp_path, baseline):
    base_out, base_params = baseline
    out, params = _run(tmp_path, sft__grad_accum=2, rl__grad_accum=2, model__remat="full")
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5


def test_shared_prompt_learner_equals_the_per_row_learner(tmp_path, baseline):
    """Minibatches of whole groups run each prompt once (`sampling.grouped_hidden`); one
    row per microbatch (grad_accum=8 of 8 rows) takes the per-row forward on the same
    minibatches, and chunked reference passes (one group each) the grouped chunks."""
    base_out, base_params = baseline
    out, params = _run(tmp_path, rl__grad_accum=8, rl__logp_chunk=2)
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5


def test_chunked_logits_give_the_plain_step(tmp_path, baseline):
    """`rl.logit_chunk`: log-probs and entropy from the hidden states a few positions at
    a time (reference and learner, shared-prompt and per-row forwards) compute what the
    whole-logits path computes."""
    base_out, base_params = baseline
    out, params = _run(tmp_path, rl__logit_chunk=5)
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5
    out, params = _run(tmp_path / "per_row", rl__logit_chunk=7, rl__grad_accum=8)
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5


def test_scanned_blocks_give_the_unrolled_step(tmp_path, monkeypatch):
    """`model.layer_loop=scan`: the SFT step, the reference, policy and critic passes run
    their two blocks as one `lax.scan` and compute what the unrolled loop computes."""
    from r1jax.models import transformer

    traced = []
    real = transformer.scan_blocks
    monkeypatch.setattr(transformer, "scan_blocks", lambda *a: traced.append(len(a[0])) or real(*a))
    two = {"model__n_layers": 2, "value_model__n_layers": 2, "rl__logit_chunk": 5}
    out_u, params_u = _run(tmp_path / "unroll", model__layer_loop="unroll", **two)
    assert traced == []
    out_s, params_s = _run(tmp_path / "scan", model__layer_loop="scan", **two)
    assert traced and set(traced) == {2}  # the trainer's programs took the scan
    np.testing.assert_allclose(out_s, out_u, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params_s, params_u) < 1e-5


def test_grpo_prioritized_accumulation_matches(tmp_path):
    kw = {"rl__algo": "grpo", "rl__prioritized": True}
    base_out, base_params = _run(tmp_path / "a", **kw)
    out, params = _run(
        tmp_path / "b", rl__grad_accum=4, sft__grad_accum=4, model__remat="dots", **kw
    )
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5


def _short_rollouts(monkeypatch, keep):
    """Every rollout's completions cut to their first `keep` tokens, as if the policy had
    stopped there (the smoke run's untrained policy rarely writes EOS)."""
    real = generate

    def short(*args, **kwargs):
        r = real(*args, **kwargs)
        m = r.mask_bt & (jnp.arange(r.mask_bt.shape[1]) < keep)
        return r._replace(
            tokens_bt=jnp.where(m, r.tokens_bt, PAD_ID),
            mask_bt=m,
            logp_bt=jnp.where(m, r.logp_bt, 0.0),
            entropy_bt=jnp.where(m, r.entropy_bt, 0.0),
        )

    monkeypatch.setattr("r1jax.train.rl_step.generate", short)


def test_length_buckets_learn_on_the_cut_completion_axis(tmp_path, monkeypatch):
    """With completions of at most 20 tokens, 3 buckets of T = 96 run the learner on 32
    positions (`learn_len`), and the losses and parameters (policy, via the critic's
    GAE advantages) are those of all 96."""
    _short_rollouts(monkeypatch, keep=20)
    lens_all, lens_cut = [], []
    base_out, base_params = _run(tmp_path / "a", lens_all)
    out, params = _run(tmp_path / "b", lens_cut, rl__length_buckets=3)
    assert lens_all == [96.0, 96.0] and lens_cut == [32.0, 32.0]
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-6)
    assert _max_param_diff(params, base_params) < 1e-5


def test_length_buckets_take_the_full_axis_for_long_completions(tmp_path, monkeypatch):
    _short_rollouts(monkeypatch, keep=70)  # longer than 64: the last bucket, all 96
    lens = []
    _run(tmp_path, lens, rl__length_buckets=3)
    assert lens == [96.0, 96.0]


@pytest.mark.parametrize(
    "t,k,sizes",
    [(96, 1, (96,)), (96, 3, (32, 64, 96)), (96, 5, (20, 39, 58, 77, 96)), (4, 9, (1, 2, 3, 4))],
)
def test_bucket_sizes(t, k, sizes):
    assert _bucket_sizes(t, k) == sizes


def test_bf16_keeps_fp32_master_weights_and_logprobs(tmp_path, baseline):
    out, params = _run(tmp_path, model__dtype="bfloat16")
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))
    assert np.all(np.isfinite(out))
    # bf16 matmuls move the numbers a little, not a lot.
    np.testing.assert_allclose(out[:2], baseline[0][:2], rtol=2e-2)


def _tiny(**kw):
    return ModelConfig(
        d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64, **kw
    )


def _loss_fn(tokens):
    valid = jnp.ones(tokens.shape, bool)

    def f(model):
        logits, _ = model(tokens, positions_from_mask(valid), causal_mask(valid))
        return jnp.mean(jax.nn.log_softmax(logits) ** 2), logits

    return f


def test_bf16_matmuls_with_fp32_logits():
    tokens = jnp.arange(24, dtype=jnp.int32).reshape(2, 12)
    model = CausalLM(_tiny(dtype="bfloat16"), rngs=nnx.Rngs(0))
    f = _loss_fn(tokens)
    _, logits = f(model)
    assert logits.dtype == jnp.float32
    hlo = jax.jit(lambda m: f(m)[0]).lower(model).as_text()
    assert "bf16" in hlo and "dot_general" in hlo
    grads = nnx.grad(lambda m: f(m)[0])(model)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(nnx.state(grads)))
    fp32 = CausalLM(_tiny(), rngs=nnx.Rngs(0))
    np.testing.assert_allclose(
        np.asarray(logits), np.asarray(f(fp32)[1]), atol=0.05 * float(jnp.abs(logits).max())
    )


@pytest.mark.parametrize("policy", ["full", "dots", "dots_saveable"])
def test_remat_is_in_the_training_graph_not_in_decoding(policy):
    tokens = jnp.arange(24, dtype=jnp.int32).reshape(2, 12)
    model = CausalLM(_tiny(remat=policy), rngs=nnx.Rngs(0))
    plain = CausalLM(_tiny(), rngs=nnx.Rngs(0))
    f = _loss_fn(tokens)

    def jaxpr(m):
        return str(jax.make_jaxpr(lambda s: f(nnx.merge(nnx.graphdef(m), s))[0])(nnx.state(m)))

    assert "remat" in jaxpr(model) or "checkpoint" in jaxpr(model)
    assert "remat" not in jaxpr(plain) and "checkpoint" not in jaxpr(plain)
    g1 = nnx.grad(lambda m: f(m)[0])(model)
    g0 = nnx.grad(lambda m: f(m)[0])(plain)
    for a, b in zip(jax.tree.leaves(nnx.state(g1)), jax.tree.leaves(nnx.state(g0))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("rl__grad_accum", 3, "rl.grad_accum"),
        ("sft__grad_accum", 0, "sft.grad_accum"),
        ("model__remat", "sometimes", "model.remat"),
        ("model__dtype", "int8", "model.dtype"),
        ("rl__logp_chunk", 6, "rl.logp_chunk"),
        ("rl__length_buckets", 0, "rl.length_buckets"),
    ],
)
def test_bad_precision_options_name_the_field(field, value, words):
    c = get_config("smoke")
    part, name = field.split("__")
    c[part][name] = value
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        validate(c)


def test_model_config_rejects_unknown_remat():
    with pytest.raises(ValueError, match="remat"):
        dataclasses.replace(_tiny(), remat="bogus")
