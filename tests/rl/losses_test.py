"""Tests for r1jax.rl.losses against NumPy loop references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl import losses


def _prefix_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def _batch(seed=0, b=5, t=8, lengths=(8, 3, 0, 6, 1)):
    rng = np.random.default_rng(seed)
    mask = _prefix_mask(lengths, t)
    old = rng.normal(-2.0, 0.5, size=(b, t))
    logp = old + rng.normal(0.0, 0.3, size=(b, t))
    adv = rng.normal(size=(b, t))
    return logp, old, adv, mask


def _agg_ref(x, mask, mode, z):
    if mode in ("token_mean", "seq_mean_token_sum_norm"):
        return sum(x[i, j] for i in range(x.shape[0]) for j in range(x.shape[1]) if mask[i, j]) / z
    total = 0.0
    for i in range(x.shape[0]):
        vals = [x[i, j] for j in range(x.shape[1]) if mask[i, j]]
        total += sum(vals) / len(vals) if vals else 0.0
    return total / z


# ------------------------------------------------------------------ aggregate


@pytest.mark.parametrize("mode", losses.AGGREGATION_MODES)
def test_aggregate_matches_reference_and_splits_additively(mode):
    _, _, x, mask = _batch(1)
    z = {
        "token_mean": mask.sum(),
        "seq_mean_token_sum_norm": mask.size,
        "seq_mean_token_mean": mask.shape[0],
    }[mode]
    fn = jax.jit(losses.aggregate, static_argnums=2)
    full = fn(x, mask, mode, z)
    np.testing.assert_allclose(full, _agg_ref(x, mask, mode, z), rtol=1e-5)
    # With the global normalizer, minibatch losses sum to the full-batch loss.
    parts = fn(x[:2], mask[:2], mode, z) + fn(x[2:], mask[2:], mode, z)
    np.testing.assert_allclose(parts, full, rtol=1e-5)


def test_aggregate_modes_differ_and_bad_mode_raises():
    x = np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = _prefix_mask([4, 1], 4)
    np.testing.assert_allclose(losses.aggregate(x, mask, "token_mean", 5), 8 / 5)
    np.testing.assert_allclose(losses.aggregate(x, mask, "seq_mean_token_sum_norm", 8), 1.0)
    np.testing.assert_allclose(losses.aggregate(x, mask, "seq_mean_token_mean", 2), 2.5)
    with pytest.raises(ValueError, match="token_mean"):
        losses.aggregate(x, mask, "sum", 1)


# ----------------------------------------------------------------- PPO policy


def _ppo_ref(logp, old, adv, mask, el, eh, z, mode, w):
    b, t = logp.shape
    obj = np.zeros((b, t))
    grad = np.zeros((b, t))  # d(-sum obj)/d logp for token_mean-like modes, times z
    n = clipped = kl = rsum = 0.0
    for i in range(b):
        for j in range(t):
            if not mask[i, j]:
                continue
            r = math.exp(logp[i, j] - old[i, j])
            a = adv[i, j]
            r_clip = min(max(r, 1 - el), 1 + eh)
            s1, s2 = r * a, r_clip * a
            obj[i, j] = min(s1, s2) * w[i, j]
            is_clipped = s2 < s1
            grad[i, j] = 0.0 if is_clipped else -r * a * w[i, j]
            n += 1
            clipped += is_clipped
            kl += (r - 1) - math.log(r)
            rsum += r
    loss = -_agg_ref(obj, mask, mode, z)
    return loss, grad / z, {"clip_frac": clipped / n, "approx_kl": kl / n, "ratio_mean": rsum / n}


@pytest.mark.parametrize("mode", losses.AGGREGATION_MODES)
@pytest.mark.parametrize("weighted", [False, True])
def test_ppo_policy_loss_matches_reference(mode, weighted):
    logp, old, adv, mask = _batch(2)
    w = (
        np.random.default_rng(3).uniform(0.5, 2.0, size=mask.shape)
        if weighted
        else np.ones(mask.shape)
    )
    el, eh, z = 0.2, 0.28, 17.0
    fn = jax.jit(losses.ppo_policy_loss, static_argnames="mode")
    loss, aux = fn(logp, old, adv, mask, el, eh, z, mode=mode, weights_bt=w if weighted else None)
    ref_loss, ref_grad, ref_aux = _ppo_ref(logp, old, adv, mask, el, eh, z, mode, w)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-7)
    for k, v in ref_aux.items():
        np.testing.assert_allclose(aux[k], v, rtol=1e-4, atol=1e-7, err_msg=k)
    assert 0 < ref_aux["clip_frac"] < 1  # the batch exercises both branches
    if mode != "seq_mean_token_mean":
        grad = jax.grad(
            lambda lp: fn(
                lp, old, adv, mask, el, eh, z, mode=mode, weights_bt=w if weighted else None
            )[0]
        )(jnp.asarray(logp, jnp.float32))
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_ppo_clip_higher_is_asymmetric():
    # ρ = 1.25, Â > 0: clipped with ε_high = 0.2, not clipped with ε_high = 0.28.
    logp = np.log(np.array([[1.25]]))
    old = np.zeros((1, 1))
    adv = np.ones((1, 1))
    mask = np.ones((1, 1), bool)
    loss_sym, aux_sym = losses.ppo_policy_loss(logp, old, adv, mask, 0.2, 0.2, 1.0)
    loss_hi, aux_hi = losses.ppo_policy_loss(logp, old, adv, mask, 0.2, 0.28, 1.0)
    np.testing.assert_allclose([loss_sym, loss_hi], [-1.2, -1.25], rtol=1e-6)
    assert float(aux_sym["clip_frac"]) == 1.0 and float(aux_hi["clip_frac"]) == 0.0
    # ρ = 0.75, Â < 0: clipped at 1 − ε_low = 0.8 → objective −0.8.
    loss_lo, aux_lo = losses.ppo_policy_loss(np.log([[0.75]]), old, -adv, mask, 0.2, 0.28, 1.0)
    np.testing.assert_allclose(loss_lo, 0.8, rtol=1e-6)
    assert float(aux_lo["clip_frac"]) == 1.0


def test_ppo_ignores_garbage_in_padding():
    logp, old, adv, mask = _batch(4)
    bad_old = np.where(mask, old, -np.inf)
    bad_logp = np.where(mask, logp, 1e4)
    f = lambda lp: losses.ppo_policy_loss(lp, bad_old, adv, mask, 0.2, 0.2, mask.sum())[0]
    loss, grad = jax.value_and_grad(f)(jnp.asarray(bad_logp, jnp.float32))
    clean = losses.ppo_policy_loss(logp, old, adv, mask, 0.2, 0.2, mask.sum())[0]
    np.testing.assert_allclose(loss, clean, rtol=1e-6)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~mask] == 0)


# ---------------------------------------------------------------------- value


def test_value_loss_matches_reference():
    rng = np.random.default_rng(5)
    _, _, _, mask = _batch(5)
    old = rng.normal(size=mask.shape)
    v = old + rng.normal(0, 0.5, size=mask.shape)
    ret = rng.normal(size=mask.shape)
    c, z = 0.2, float(mask.sum())
    loss, aux = jax.jit(losses.value_loss)(v, old, ret, mask, c, z)
    per_tok = np.zeros(mask.shape)
    n = nclip = 0
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if mask[i, j]:
                vc = old[i, j] + min(max(v[i, j] - old[i, j], -c), c)
                l1, l2 = (v[i, j] - ret[i, j]) ** 2, (vc - ret[i, j]) ** 2
                per_tok[i, j] = 0.5 * max(l1, l2)
                n += 1
                nclip += l2 > l1
    np.testing.assert_allclose(loss, per_tok.sum() / z, rtol=1e-5)
    np.testing.assert_allclose(aux["vf_clip_frac"], nclip / n, rtol=1e-6)
    assert 0 < nclip < n


# ------------------------------------------------------------------------- KL


@pytest.mark.parametrize("kind", losses.KL_KINDS)
def test_kl_estimate_matches_reference(kind):
    logp, ref, _, _ = _batch(6)
    out = jax.jit(losses.kl_estimate, static_argnums=2)(logp, ref, kind)
    d = ref - logp
    want = {"k1": -d, "k2": 0.5 * d**2, "k3": np.exp(d) - 1 - d}[kind]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)
    assert out.dtype == jnp.float32


def test_kl_k3_is_accurate_for_tiny_differences():
    # k3 ≈ d²/2 for small d; a naive exp(d) − 1 − d in float32 loses it.
    logp = jnp.full((1, 3), -1.0, jnp.float32)
    d = np.array([[1e-3, -2e-3, 5e-4]], np.float32)
    out = losses.kl_estimate(logp, logp + d, "k3")
    d64 = np.asarray(logp + d, np.float64) - np.asarray(logp, np.float64)
    np.testing.assert_allclose(out, np.expm1(d64) - d64, rtol=1e-2)


def test_kl_estimators_are_unbiased_monte_carlo():
    # Samples from π; E[k1] = E[k3] = KL(π‖ref) exactly.
    rng = np.random.default_rng(7)
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.3, 0.5])
    true_kl = float(np.sum(p * np.log(p / q)))
    a = rng.choice(3, size=200_000, p=p)
    logp, ref = np.log(p[a])[None], np.log(q[a])[None]
    for kind in ("k1", "k3"):
        est = np.asarray(losses.kl_estimate(logp, ref, kind))
        se = est.std() / math.sqrt(est.size)
        assert abs(est.mean() - true_kl) < 5 * se, kind


def test_kl_bad_kind_raises():
    with pytest.raises(ValueError, match="k1.*k2.*k3"):
        losses.kl_estimate(jnp.zeros((1, 1)), jnp.zeros((1, 1)), "k4")


# -------------------------------------------------------------------- entropy


def test_entropy_matches_reference():
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 3, size=(2, 3, 7))
    logits[0, 0] += 1e4  # large logits must stay stable
    out = jax.jit(losses.entropy_from_logits)(logits.astype(np.float32))
    ref = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            z = logits[i, j] - logits[i, j].max()
            p = np.exp(z) / np.exp(z).sum()
            ref[i, j] = -sum(pk * math.log(pk) for pk in p if pk > 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_entropy_uniform_masked_vocab_and_dtype():
    logits = jnp.array([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -jnp.inf, -jnp.inf]]], jnp.bfloat16)
    out, grad = jax.value_and_grad(lambda l: losses.entropy_from_logits(l).sum())(
        logits.astype(jnp.float32)
    )
    np.testing.assert_allclose(out, math.log(4) + math.log(2), rtol=1e-6)
    assert np.all(np.isfinite(grad))
    assert losses.entropy_from_logits(logits).dtype == jnp.float32


# ----------------------------------------------------------- forking tokens


def _high_entropy_ref(ent, mask, q):
    vals = sorted(
        (ent[i, j] for i in range(ent.shape[0]) for j in range(ent.shape[1]) if mask[i, j]),
        reverse=True,
    )
    if not vals:
        return np.zeros_like(mask)
    k = max(1, math.ceil(q * len(vals)))
    return mask & (ent >= vals[k - 1])


@pytest.mark.parametrize("q", [0.07, 0.2, 0.25, 0.33, 0.5, 0.9, 1.0])
def test_high_entropy_mask_matches_reference(q):
    rng = np.random.default_rng(9)
    ent = rng.uniform(0, 3, size=(4, 10)).astype(np.float32)
    mask = _prefix_mask([10, 4, 0, 6], 10)  # 20 valid tokens
    ent_garbage = np.where(mask, ent, 100.0).astype(np.float32)  # invalid must never be picked
    out = jax.jit(losses.high_entropy_mask)(ent_garbage, mask, q)  # q traced
    ref = _high_entropy_ref(ent, mask, q)
    np.testing.assert_array_equal(out, ref)
    assert int(np.asarray(out).sum()) == math.ceil(q * 20)
    np.testing.assert_array_equal(losses.high_entropy_mask(ent_garbage, mask, q), ref)  # static q


def test_high_entropy_mask_edge_cases():
    ent = jnp.arange(6.0).reshape(2, 3)
    mask = jnp.array([[1, 1, 0], [1, 0, 0]], bool)
    np.testing.assert_array_equal(losses.high_entropy_mask(ent, mask, 1.0), mask)
    np.testing.assert_array_equal(
        losses.high_entropy_mask(ent, jnp.zeros((2, 3), bool), 0.5), np.zeros((2, 3), bool)
    )
    # One valid token is always kept even for tiny q.
    np.testing.assert_array_equal(
        losses.high_entropy_mask(ent, mask, 0.01), [[False, False, False], [True, False, False]]
    )
    with pytest.raises(ValueError):
        losses.high_entropy_mask(ent, mask, 0.0)


# ------------------------------------------------------------ data-parallel shards


def _shards(a, n):
    return jnp.asarray(a).reshape((n, a.shape[0] // n) + a.shape[1:])


@pytest.mark.parametrize("shards", [2, 4])
def test_losses_over_a_mapped_axis_sum_to_the_global_loss(shards):
    # vmap with axis_name stands in for pmap: each shard's loss is its contribution to
    # the global one (summed by the caller) and the aux means are global.
    rng = np.random.default_rng(1)
    b, t = 8, 5
    logp = rng.normal(size=(b, t)).astype(np.float32) * 0.1 - 1.0
    old = logp + rng.normal(size=(b, t)).astype(np.float32) * 0.2
    adv = rng.normal(size=(b, t)).astype(np.float32)
    mask = rng.random((b, t)) < 0.8
    z = float(mask.sum())
    want, want_aux = losses.ppo_policy_loss(logp, old, adv, mask, 0.2, 0.28, z)

    def shard_fn(lp, ol, ad, m):
        return losses.ppo_policy_loss(lp, ol, ad, m, 0.2, 0.28, z, axis_name="d")

    got, aux = jax.vmap(shard_fn, axis_name="d")(
        *(_shards(a, shards) for a in (logp, old, adv, mask))
    )
    np.testing.assert_allclose(np.asarray(got).sum(), want, rtol=1e-5, atol=1e-6)
    for k, v in want_aux.items():
        np.testing.assert_allclose(np.asarray(aux[k]), np.full(shards, v), rtol=1e-5, atol=1e-7)

    ret = rng.normal(size=(b, t)).astype(np.float32)
    want_v, want_vaux = losses.value_loss(logp, old, ret, mask, 0.2, z)
    got_v, vaux = jax.vmap(
        lambda v, o, r, m: losses.value_loss(v, o, r, m, 0.2, z, axis_name="d"), axis_name="d"
    )(*(_shards(a, shards) for a in (logp, old, ret, mask)))
    np.testing.assert_allclose(np.asarray(got_v).sum(), want_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vaux["vf_clip_frac"], np.full(shards, want_vaux["vf_clip_frac"]))


@pytest.mark.parametrize("q", [0.2, 0.5])
def test_high_entropy_mask_over_a_mapped_axis_uses_the_global_threshold(q):
    rng = np.random.default_rng(2)
    ent = rng.random((8, 6)).astype(np.float32)
    mask = rng.random((8, 6)) < 0.7
    want = losses.high_entropy_mask(ent, mask, q)
    got = jax.vmap(lambda e, m: losses.high_entropy_mask(e, m, q, axis_name="d"), axis_name="d")(
        _shards(ent, 4), _shards(mask, 4)
    )
    np.testing.assert_array_equal(np.asarray(got).reshape(8, 6), want)
