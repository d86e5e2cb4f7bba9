"""Tests for r1jax.rl.advantages against NumPy loop references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl import advantages as adv_lib

# ----------------------------------------------------------------- references


def _gae_ref(rewards, values, lengths, gamma, lam):
    """GAE written from the recursion, one row and one token at a time (float64)."""
    b, t = rewards.shape
    adv = np.zeros((b, t))
    ret = np.zeros((b, t))
    for i in range(b):
        n = lengths[i]
        last = 0.0
        for j in reversed(range(n)):
            next_v = values[i, j + 1] if j + 1 < n else 0.0
            delta = rewards[i, j] + gamma * next_v - values[i, j]
            last = delta + gamma * lam * last
            adv[i, j] = last
            ret[i, j] = last + values[i, j]
    return adv, ret


def _grpo_ref(rewards, g, scale_by_std, eps):
    out = np.zeros(len(rewards))
    for start in range(0, len(rewards), g):
        grp = [float(r) for r in rewards[start : start + g]]
        mean = sum(grp) / g
        std = math.sqrt(sum((r - mean) ** 2 for r in grp) / g)  # ddof = 0
        for k, r in enumerate(grp):
            out[start + k] = (r - mean) / (std + eps) if scale_by_std else r - mean
    return out


def _prefix_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


# ------------------------------------------------------------------------ gae


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_matches_reference(gamma, lam):
    rng = np.random.default_rng(0)
    b, t = 6, 9
    lengths = np.array([0, 1, 4, 9, 7, 3])
    mask = _prefix_mask(lengths, t)
    rewards = rng.normal(size=(b, t))
    values = rng.normal(size=(b, t))
    # Garbage beyond the valid prefix must not leak in.
    rewards = np.where(mask, rewards, 1e6)
    values = np.where(mask, values, -1e6)
    adv, ret = jax.jit(adv_lib.gae)(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = _gae_ref(rewards, values, lengths, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)
    assert adv.dtype == jnp.float32 and adv.shape == (b, t)
    assert np.all(np.asarray(adv)[~mask] == 0) and np.all(np.asarray(ret)[~mask] == 0)


def test_gae_terminal_reward_monte_carlo_case():
    # γ = λ = 1 with only a terminal reward R: Â_t = R − V_t, returns = R.
    values = np.array([[0.1, 0.2, 0.3, 0.0]])
    rewards = np.array([[0.0, 0.0, 1.0, 0.0]])
    mask = np.array([[1, 1, 1, 0]], bool)
    adv, ret = adv_lib.gae(rewards, values, mask, 1.0, 1.0)
    np.testing.assert_allclose(adv, [[0.9, 0.8, 0.7, 0.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[1.0, 1.0, 1.0, 0.0]], atol=1e-6)


def test_gae_lambda_zero_is_one_step_td():
    values = np.array([[1.0, 2.0, 3.0]])
    rewards = np.array([[0.5, -1.0, 2.0]])
    mask = np.ones((1, 3), bool)
    adv, _ = adv_lib.gae(rewards, values, mask, 0.5, 0.0)
    np.testing.assert_allclose(adv, [[0.5 + 0.5 * 2 - 1, -1 + 0.5 * 3 - 2, 2 - 3]], atol=1e-6)


# ------------------------------------------------------------ group relative


@pytest.mark.parametrize("scale_by_std", [True, False])
def test_group_relative_matches_reference(scale_by_std):
    rng = np.random.default_rng(1)
    g = 4
    rewards = rng.integers(0, 3, size=5 * g).astype(np.float64)
    rewards[:g] = 1.0  # a constant group
    fn = jax.jit(adv_lib.group_relative_advantages, static_argnums=(1, 2))
    out = fn(rewards, g, scale_by_std)
    np.testing.assert_allclose(out, _grpo_ref(rewards, g, scale_by_std, 1e-6), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out)[:g], 0.0)


def test_group_relative_uses_population_std():
    # G = 2, rewards {0, 1}: σ (ddof=0) = 0.5 → ±1; ddof=1 would give ±0.707.
    out = adv_lib.group_relative_advantages(jnp.array([0.0, 1.0, 1.0, 0.0]), 2, eps=0.0)
    np.testing.assert_allclose(out, [-1.0, 1.0, 1.0, -1.0], atol=1e-6)


def test_group_relative_groups_are_contiguous():
    # Group of index i is i // G: [1, 0 | 5, 5] → group 2 is constant.
    out = adv_lib.group_relative_advantages(jnp.array([1.0, 0.0, 5.0, 5.0]), 2, scale_by_std=False)
    np.testing.assert_allclose(out, [0.5, -0.5, 0.0, 0.0])


def test_group_relative_rejects_bad_group_size():
    with pytest.raises(ValueError):
        adv_lib.group_relative_advantages(jnp.zeros(6), 4)


# --------------------------------------------------------------------- whiten


def test_whiten_matches_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, size=(4, 6))
    mask = _prefix_mask([6, 2, 0, 5], 6)
    out = np.asarray(jax.jit(adv_lib.whiten)(x, mask))
    vals = [x[i, j] for i in range(4) for j in range(6) if mask[i, j]]
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / len(vals)
    ref = np.where(mask, (x - mean) / math.sqrt(var + 1e-8), 0.0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1) < 1e-4


def test_whiten_empty_mask_is_zero():
    out = adv_lib.whiten(jnp.ones((2, 3)), jnp.zeros((2, 3), bool))
    assert np.all(np.isfinite(out)) and np.all(np.asarray(out) == 0)


# ------------------------------------------------------------ data-parallel shards


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_whiten_over_a_mapped_axis_equals_whitening_the_whole_batch(shards):
    # vmap with axis_name stands in for pmap: each of `shards` row blocks is whitened
    # with psum'ed statistics, which must give the global whitening's rows.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32) * 3 + 1
    mask = rng.random((8, 6)) < 0.7
    want = adv_lib.whiten(x, mask)
    split = lambda a: a.reshape(shards, 8 // shards, 6)
    got = jax.vmap(lambda a, m: adv_lib.whiten(a, m, axis_name="d"), axis_name="d")(
        split(x), split(mask)
    )
    np.testing.assert_allclose(np.asarray(got).reshape(8, 6), want, atol=1e-6)
