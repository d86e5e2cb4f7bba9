"""The EWC penalty as a named loss term inside the jitted SFT and RL steps: its value is
logged as `ewc_penalty`, it is part of `loss`, and its gradient moves the update."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from r1jax import config as config_lib
from r1jax.configs.arith_tiny import get_config
from r1jax.rewards.composite import SCORE_FIELDS
from r1jax.rl import ewc
from r1jax.train.experiment import Experiment
from r1jax.train.rl_step import rl_iteration
from r1jax.train.sft_step import sft_step

LR = 1e-3


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    e = Experiment(get_config("smoke"), str(tmp_path_factory.mktemp("ewc")))
    yield e
    e.close()


def _with_ewc(state, lam=30.0):
    """EWC of one earlier task: a random positive Fisher, an anchor near the params."""
    rng = np.random.default_rng(0)
    fisher = jax.tree.map(
        lambda p: jnp.asarray(rng.gamma(1.0, size=p.shape), jnp.float32), state.policy
    )
    anchor = jax.tree.map(
        lambda p: p + 0.05 * jnp.asarray(rng.normal(size=p.shape), p.dtype), state.policy
    )
    e = ewc.consolidate(ewc.init_ewc(state.policy, lam), fisher, anchor)
    return state.replace(ewc=e), e


def _flat(tree):
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def test_sft_step_adds_the_penalty_and_its_gradient(exp):
    tx = optax.sgd(LR)
    step = jax.jit(functools.partial(sft_step, graphs=exp.graphs, tx=tx))
    state = exp.init_state
    state = state.replace(policy_opt=tx.init(state.policy))
    batch = exp.sft_batch(0)
    plain, m0 = step(state, batch)
    with_ewc, e = _with_ewc(state)
    after, m1 = step(with_ewc, batch)
    pen = float(ewc.penalty(state.policy, e))
    assert pen > 0 and "ewc_penalty" not in m0
    assert float(m1["ewc_penalty"]) == pytest.approx(pen, rel=1e-5)
    assert float(m1["loss"]) == pytest.approx(float(m0["loss"]) + pen, rel=1e-5)
    # SGD: the updates differ by exactly −lr · ∇penalty = −lr · λ F (θ − θ*).
    g = jax.grad(ewc.penalty)(state.policy, e)
    diff = jax.tree.map(lambda a, b: a - b, after.policy, plain.policy)
    np.testing.assert_allclose(_flat(diff), -LR * _flat(g), rtol=2e-3, atol=1e-7)
    assert int(after.ewc.tasks) == 1  # the EWC state travels through the step unchanged
    np.testing.assert_array_equal(_flat(after.ewc.fisher), _flat(e.fisher))


def test_rl_iteration_adds_the_penalty_and_its_gradient(exp):
    c = exp.c
    tx = optax.sgd(LR)
    it = jax.jit(
        functools.partial(
            rl_iteration,
            graphs=exp.graphs,
            hp=config_lib.rl_hyper(c, exp.eos_id, exp.pad_id),
            policy_tx=tx,
            value_tx=exp.value_tx,
            reward_fn=exp.host_reward,
            num_score_fields=len(SCORE_FIELDS),
        )
    )
    state = exp.init_state
    state = state.replace(policy_opt=tx.init(state.policy))
    batch = exp.rl_batch(0)
    plain, m0 = it(state, batch)
    with_ewc, e = _with_ewc(state, lam=2.0)
    after, m1 = it(with_ewc, batch)
    pen = float(ewc.penalty(state.policy, e))
    assert "ewc_penalty" not in m0
    # The logged penalty is the last epoch's mean over minibatches: near the initial one.
    assert float(m1["ewc_penalty"]) == pytest.approx(pen, rel=0.05)
    # Same rollouts (same params, same key): the params differ by the penalty's pull,
    # about −lr · ∇penalty per minibatch (c.rl.num_minibatches of them).
    g = _flat(jax.grad(ewc.penalty)(state.policy, e))
    d = _flat(jax.tree.map(lambda a, b: a - b, after.policy, plain.policy))
    cos = float(np.dot(d, -g) / (np.linalg.norm(d) * np.linalg.norm(g)))
    assert cos > 0.99
    steps = c.rl.epochs * c.rl.num_minibatches
    assert np.linalg.norm(d) == pytest.approx(steps * LR * np.linalg.norm(g), rel=0.05)
