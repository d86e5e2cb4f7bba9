"""Tests for r1jax.rl.controllers against plain-Python references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from r1jax.rl import controllers as ctl

# ----------------------------------------------------------------------- clip


def _clip_ref(el, eh, measured, target, rate, lo, hi):
    if measured > 1.5 * target:
        el, eh = el / (1 + rate), eh / (1 + rate)
    elif measured < target / 1.5:
        el, eh = el * (1 + rate), eh * (1 + rate)
    return min(max(el, lo), hi), min(max(eh, lo), hi)


@pytest.mark.parametrize("measured", [0.0, 0.005, 0.01, 0.0149, 0.016, 0.5])
def test_update_clip_matches_reference(measured):
    kw = dict(target=0.01, rate=0.1, eps_min=0.05, eps_max=0.4)
    state = ctl.init_clip(0.2, 0.28)
    new = jax.jit(functools.partial(ctl.update_clip, **kw))(state, measured)
    want = _clip_ref(0.2, 0.28, measured, 0.01, 0.1, 0.05, 0.4)
    np.testing.assert_allclose([new.eps_low, new.eps_high], want, rtol=1e-6)


def test_update_clip_clamps_and_converges_to_bounds():
    kw = dict(target=0.01, rate=0.5, eps_min=0.05, eps_max=0.3)
    update = jax.jit(functools.partial(ctl.update_clip, **kw))
    state = ctl.init_clip(0.2, 0.28)
    for _ in range(10):
        state = update(state, 1.0)  # far too large: shrink to the floor
    np.testing.assert_allclose([state.eps_low, state.eps_high], [0.05, 0.05])
    for _ in range(10):
        state = update(state, 0.0)  # far too small: grow to the ceiling
    np.testing.assert_allclose([state.eps_low, state.eps_high], [0.3, 0.3])


def test_clip_state_is_a_pytree_usable_in_scan():
    kw = dict(target=0.1, rate=0.1, eps_min=0.0, eps_max=1.0)
    state = ctl.init_clip(0.2, 0.2)
    assert len(jax.tree.leaves(state)) == 2

    def body(s, m):
        return ctl.update_clip(s, m, **kw), s.eps_low

    final, _ = jax.lax.scan(body, state, jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(final.eps_low, 0.2 / 1.1 / 1.1 * 1.1, rtol=1e-6)


# -------------------------------------------------------------------- entropy


def test_entropy_coef_update_matches_reference():
    state = ctl.init_entropy_coef(1e-3)
    np.testing.assert_allclose(ctl.entropy_coef(state), 1e-3, rtol=1e-6)
    update = jax.jit(functools.partial(ctl.update_entropy_coef, target=1.0, lr=0.5))
    log_c = math.log(1e-3)
    for h in [0.2, 0.4, 1.5, 3.0]:
        state = update(state, h)
        log_c = min(max(log_c + 0.5 * (1.0 - h), math.log(1e-6)), 0.0)
        np.testing.assert_allclose(state.log_coef, log_c, rtol=1e-5)
    np.testing.assert_allclose(ctl.entropy_coef(state), math.exp(log_c), rtol=1e-5)


def test_entropy_coef_direction_and_clamp():
    state = ctl.init_entropy_coef(0.01)
    low = ctl.update_entropy_coef(state, 0.1, target=1.0, lr=0.1)
    high = ctl.update_entropy_coef(state, 2.0, target=1.0, lr=0.1)
    assert float(ctl.entropy_coef(low)) > 0.01 > float(ctl.entropy_coef(high))
    top = ctl.update_entropy_coef(state, -100.0, target=1.0, lr=1.0)
    bottom = ctl.update_entropy_coef(state, 100.0, target=1.0, lr=1.0)
    np.testing.assert_allclose(
        [ctl.entropy_coef(top), ctl.entropy_coef(bottom)], [1.0, 1e-6], rtol=1e-5
    )
    with pytest.raises(ValueError):
        ctl.init_entropy_coef(0.0)


# ------------------------------------------------------------------------- KL


@pytest.mark.parametrize("kl", [0.0, 0.05, 0.1, 0.11, 0.5])
def test_kl_coef_update_matches_ziegler(kl):
    target, horizon, n = 0.1, 10_000, 256
    new = jax.jit(functools.partial(ctl.update_kl_coef, target=target, horizon=horizon))(
        ctl.init_kl_coef(0.2), kl, n_steps=n
    )
    err = min(max(kl / target - 1, -0.2), 0.2)
    np.testing.assert_allclose(new.coef, 0.2 * (1 + err * n / horizon), rtol=1e-6)


def test_kl_coef_moves_towards_target():
    state = ctl.init_kl_coef(0.1)
    up = ctl.update_kl_coef(state, 1.0, target=0.1, horizon=100, n_steps=10)
    down = ctl.update_kl_coef(state, 0.01, target=0.1, horizon=100, n_steps=10)
    np.testing.assert_allclose([up.coef, down.coef], [0.1 * 1.02, 0.1 * 0.98], rtol=1e-6)


# -------------------------------------------------------------- checkpointing


def test_states_round_trip_through_state_dict():
    states = (ctl.init_clip(0.1, 0.3), ctl.init_entropy_coef(0.05), ctl.init_kl_coef(0.2))
    raw = serialization.to_state_dict(states)
    template = (ctl.init_clip(0.0, 0.0), ctl.init_entropy_coef(1.0), ctl.init_kl_coef(0.0))
    restored = serialization.from_state_dict(template, raw)
    for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(restored)):
        assert a.dtype == jnp.float32 and a.shape == ()
        np.testing.assert_array_equal(a, b)
    assert isinstance(restored[0], ctl.ClipState)
