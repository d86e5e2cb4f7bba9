"""Tests for r1jax.rl.prioritized: sampling distribution and unbiasedness."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl import prioritized as pri

_sample = jax.jit(pri.prioritized_minibatches, static_argnums=(2, 3))


def test_shapes_dtypes_and_weights_match_reference():
    prio = np.array([0.0, -1.0, 2.0, 0.5, 3.0])
    idx, w = _sample(jax.random.key(0), prio, 4, 8, 0.7, 1e-3)
    assert idx.shape == (4, 8) and w.shape == (4, 8)
    assert idx.dtype == jnp.int32 and w.dtype == jnp.float32
    idx = np.asarray(idx)
    assert idx.min() >= 0 and idx.max() < 5
    q = [(abs(u) + 1e-3) ** 0.7 for u in prio]
    p = [qi / sum(q) for qi in q]
    want = np.array([[1.0 / (5 * p[i]) for i in row] for row in idx])
    np.testing.assert_allclose(w, want, rtol=1e-5)


def test_alpha_zero_is_uniform_with_unit_weights():
    prio = np.array([0.0, 10.0, 100.0, 1.0])
    idx, w = _sample(jax.random.key(1), prio, 50, 400, 0.0, 1e-3)
    np.testing.assert_array_equal(w, 1.0)
    freq = np.bincount(np.asarray(idx).ravel(), minlength=4) / idx.size
    se = math.sqrt(0.25 * 0.75 / idx.size)
    assert np.all(np.abs(freq - 0.25) < 5 * se)


def test_high_priorities_are_sampled_more_and_frequencies_match():
    prio = np.array([0.1, 0.5, 1.0, 4.0])
    idx, _ = _sample(jax.random.key(2), prio, 100, 500, 1.0, 1e-3)
    counts = np.bincount(np.asarray(idx).ravel(), minlength=4)
    assert np.all(np.diff(counts) > 0)
    q = prio + 1e-3
    p = q / q.sum()
    freq = counts / idx.size
    se = np.sqrt(p * (1 - p) / idx.size)
    assert np.all(np.abs(freq - p) < 5 * se)


def test_weighted_estimator_is_unbiased_monte_carlo():
    rng = np.random.default_rng(3)
    n = 12
    prio = rng.exponential(size=n)
    g = prio * 3.0 + rng.normal(size=n)  # correlated with priority: naive mean is biased
    true_mean = sum(g) / n
    idx, w = _sample(jax.random.key(3), prio, 200, 1000, 1.0, 1e-3)
    idx, w = np.asarray(idx).ravel(), np.asarray(w, np.float64).ravel()
    est = w * g[idx]
    se = est.std() / math.sqrt(est.size)
    assert abs(est.mean() - true_mean) < 4 * se
    # Without the weights the same draws are clearly biased (the check has teeth).
    naive = g[idx]
    assert abs(naive.mean() - true_mean) > 10 * naive.std() / math.sqrt(naive.size)


def test_shuffled_minibatches_is_a_permutation():
    fn = jax.jit(pri.shuffled_minibatches, static_argnums=(1, 2, 3))
    a = np.asarray(fn(jax.random.key(4), 24, 4, 6))
    b = np.asarray(fn(jax.random.key(5), 24, 4, 6))
    assert a.shape == (4, 6) and a.dtype == np.int32
    np.testing.assert_array_equal(np.sort(a.ravel()), np.arange(24))
    assert not np.array_equal(a, b) and not np.array_equal(a.ravel(), np.arange(24))


@pytest.mark.parametrize("m,mb", [(4, 5), (5, 6), (0, 24)])
def test_shuffled_minibatches_rejects_bad_split(m, mb):
    with pytest.raises(ValueError, match="must equal n"):
        pri.shuffled_minibatches(jax.random.key(0), 24, m, mb)
