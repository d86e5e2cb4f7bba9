"""EWC against a NumPy reference on a model small enough to do by hand: a softmax-linear
classifier, whose per-example log-likelihood gradient is (onehot(y) − p) ⊗ x."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax._testing import xla_env
from r1jax.rl import ewc

C, D = 3, 4  # classes, features


def logp_fn(params, ex):
    logits = params["w"] @ ex["x"] + params["b"]
    return jax.nn.log_softmax(logits)[ex["y"]]


def np_probs(params, x):
    z = x @ np.asarray(params["w"], np.float64).T + np.asarray(params["b"], np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def np_grads(params, x, y):
    """Per-example gradients of log p(y|x): dW = (onehot − p) xᵀ, db = onehot − p."""
    p = np_probs(params, x)
    r = np.eye(C)[y] - p  # [N, C]
    return r[:, :, None] * x[:, None, :], r


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(C, D)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(C,)), jnp.float32),
    }
    x = rng.normal(size=(37, D)).astype(np.float32)
    y = rng.integers(0, C, size=37)
    return params, x, y


def test_empirical_fisher_equals_numpy_per_example_squares(setup):
    params, x, y = setup
    gw, gb = np_grads(params, x, y)
    fisher = ewc.fisher_diagonal(
        logp_fn, params, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, chunk=5
    )
    np.testing.assert_allclose(fisher["w"], (gw**2).mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fisher["b"], (gb**2).mean(0), rtol=1e-5, atol=1e-7)
    # ... which is not the square of the batch-mean gradient (that underestimates F).
    assert np.all(np.asarray(fisher["b"]) > gb.mean(0) ** 2 + 1e-3)


def test_chunking_and_weights_do_not_change_the_fisher(setup):
    params, x, y = setup
    ex = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    one = ewc.fisher_diagonal(logp_fn, params, ex, chunk=37)
    for chunk in (1, 4, 8, 100):
        got = ewc.fisher_diagonal(logp_fn, params, ex, chunk=chunk)
        for k in one:
            np.testing.assert_allclose(got[k], one[k], rtol=2e-6, atol=1e-8)
    # Zero weights drop examples exactly like leaving them out.
    w = np.ones(37, np.float32)
    w[20:] = 0
    sub = {"x": jnp.asarray(x[:20]), "y": jnp.asarray(y[:20])}
    a = ewc.fisher_diagonal(logp_fn, params, ex, weights=w, chunk=6)
    b = ewc.fisher_diagonal(logp_fn, params, sub, chunk=6)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-6, atol=1e-8)
    with pytest.raises(ValueError, match="no examples"):
        ewc.fisher_diagonal(logp_fn, params, {"x": jnp.zeros((0, D)), "y": jnp.zeros((0,), int)})


def test_true_fisher_on_model_samples_matches_the_exact_expectation(setup):
    """The true Fisher E_x E_{y~p(.|x)} g²: exact by enumerating the C classes in NumPy;
    the estimate from labels drawn from the model converges to it (and differs from the
    empirical Fisher on the given labels)."""
    params, x, y = setup
    p = np_probs(params, x)  # [N, C]
    exact_w = np.zeros((C, D))
    exact_b = np.zeros(C)
    for c in range(C):
        gw, gb = np_grads(params, x, np.full(len(x), c))
        exact_w += (p[:, c][:, None, None] * gw**2).mean(0)
        exact_b += (p[:, c][:, None] * gb**2).mean(0)
    reps = 400
    rng = np.random.default_rng(1)
    xs = np.repeat(x, reps, axis=0)
    ys = np.array([rng.choice(C, p=row) for row in np.repeat(p, reps, axis=0)])
    est = ewc.fisher_diagonal(
        logp_fn, params, {"x": jnp.asarray(xs), "y": jnp.asarray(ys)}, chunk=512
    )
    np.testing.assert_allclose(est["w"], exact_w, rtol=0.08, atol=2e-3)
    np.testing.assert_allclose(est["b"], exact_b, rtol=0.08, atol=2e-3)
    emp = ewc.fisher_diagonal(logp_fn, params, {"x": jnp.asarray(x), "y": jnp.asarray(y)})
    assert np.abs(np.asarray(emp["b"]) - exact_b).max() > 0.05


def _tasks(seed=3, k=3):
    rng = np.random.default_rng(seed)
    shape = {"w": (C, D), "b": (C,)}
    fish = [
        {n: rng.gamma(0.5, size=s).astype(np.float32) for n, s in shape.items()} for _ in range(k)
    ]
    anchors = [
        {n: rng.normal(size=s).astype(np.float32) for n, s in shape.items()} for _ in range(k)
    ]
    theta = {n: rng.normal(size=s).astype(np.float32) for n, s in shape.items()}
    return fish, anchors, theta


def test_offline_penalty_is_the_sum_over_tasks():
    fish, anchors, theta = _tasks()
    lam = 3.5
    state = ewc.init_ewc(theta, lam)
    assert float(ewc.penalty(theta, state)) == 0.0
    for k, (f, a) in enumerate(zip(fish, anchors)):
        state = ewc.consolidate(state, f, a, mode="offline")
        ref = sum(
            0.5
            * lam
            * sum(float(np.sum(fj[n].astype(np.float64) * (theta[n] - aj[n]) ** 2)) for n in f)
            for fj, aj in zip(fish[: k + 1], anchors[: k + 1])
        )
        np.testing.assert_allclose(float(ewc.penalty(theta, state)), ref, rtol=1e-5)
        grad = jax.grad(ewc.penalty)(theta, state)
        for n in theta:
            want = sum(
                lam * fj[n] * (theta[n] - aj[n]) for fj, aj in zip(fish[: k + 1], anchors[: k + 1])
            )
            np.testing.assert_allclose(grad[n], want, rtol=1e-4, atol=1e-5)
    assert int(state.tasks) == 3
    # At an anchor with the other tasks' Fisher zero, the penalty of that task alone is 0.
    one = ewc.consolidate(ewc.init_ewc(theta, lam), fish[0], anchors[0])
    assert float(ewc.penalty(anchors[0], one)) == pytest.approx(0.0, abs=1e-6)


def test_online_penalty_decays_the_fisher_and_keeps_the_last_anchor():
    fish, anchors, theta = _tasks(seed=4)
    lam, gamma = 2.0, 0.7
    state = ewc.init_ewc(theta, lam)
    running = {n: np.zeros_like(v) for n, v in theta.items()}
    for f, a in zip(fish, anchors):
        state = ewc.consolidate(state, f, a, mode="online", gamma=gamma)
        running = {n: gamma * running[n] + f[n] for n in f}
        ref = 0.5 * lam * sum(float(np.sum(running[n] * (theta[n] - a[n]) ** 2)) for n in f)
        np.testing.assert_allclose(float(ewc.penalty(theta, state)), ref, rtol=1e-5)
        for n in f:
            np.testing.assert_array_equal(state.anchor[n], a[n])
    # Online with γ = 1 and one task is offline EWC with one task.
    off = ewc.consolidate(ewc.init_ewc(theta, lam), fish[0], anchors[0], mode="offline")
    on = ewc.consolidate(ewc.init_ewc(theta, lam), fish[0], anchors[0], mode="online")
    assert float(ewc.penalty(theta, off)) == pytest.approx(float(ewc.penalty(theta, on)), rel=1e-6)


def test_bad_mode_and_gamma_are_errors():
    fish, anchors, theta = _tasks()
    state = ewc.init_ewc(theta, 1.0)
    with pytest.raises(ValueError, match="mode"):
        ewc.consolidate(state, fish[0], anchors[0], mode="sometimes")
    with pytest.raises(ValueError, match="gamma"):
        ewc.consolidate(state, fish[0], anchors[0], mode="online", gamma=1.5)


def test_fisher_and_penalty_gradient_keep_the_params_sharding():
    """On a 4-device mesh with the weight split over devices, the Fisher, the EWC state
    and the penalty's gradient come out sharded like the params."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from r1jax.rl import ewc
        mesh = Mesh(np.array(jax.devices()[:4]), ("fsdp",))
        sh = {"w": NamedSharding(mesh, P("fsdp", None)), "b": NamedSharding(mesh, P())}
        params = jax.device_put({"w": jnp.ones((8, 4)), "b": jnp.zeros((8,))}, sh)
        ex = {"x": jnp.ones((6, 4)), "y": jnp.arange(6) % 8}
        def logp(p, e):
            return jax.nn.log_softmax(p["w"] @ e["x"] + p["b"])[e["y"]]
        f = jax.jit(lambda p, e: ewc.fisher_diagonal(logp, p, e, chunk=4))(params, ex)
        st = ewc.consolidate(ewc.init_ewc(params, 1.0), f, params)
        g = jax.jit(jax.grad(ewc.penalty))(params, st)
        for tree in (f, st.fisher, st.anchor, g):
            assert tree["w"].sharding.is_equivalent_to(sh["w"], 2), tree["w"].sharding
        print("ok")
        """
    )
    env = xla_env(devices=4)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
