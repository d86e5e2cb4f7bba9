"""The decoder's projections (`transformer.dense_dot_general`): the forward of
`jax.lax.dot_general` bit for bit, gradients equal to JAX's own up to float summation
order, with the weight gradient's transposed operand the narrower of input and output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models import CausalLM, ModelConfig
from r1jax.models.transformer import dense_dot_general

LINEAR = lambda x: (((x.ndim - 1,), (0,)), ((), ()))


def _loss(dot, x, kernel, r):
    y = dot(x, kernel, LINEAR(x))
    return jnp.sum(jax.nn.silu(y) * r), y


@pytest.mark.parametrize(
    "x_shape, out",
    [((3, 5, 4), 12), ((3, 5, 12), 4), ((7, 6), 6), ((2, 3, 4, 5), 9)],
    ids=["narrow_input", "wide_input", "square_2d", "4d"],
)
def test_values_and_gradients_equal_jaxs_own(x_shape, out):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, x_shape)
    kernel = jax.random.normal(k2, (x_shape[-1], out)) / np.sqrt(x_shape[-1])
    r = jax.random.normal(k3, (*x_shape[:-1], out))
    grad = lambda dot: jax.jit(jax.value_and_grad(_loss, (1, 2), has_aux=True), static_argnums=0)(
        dot, x, kernel, r
    )
    (_, y), (dx, dk) = grad(dense_dot_general)
    (_, y0), (dx0, dk0) = grad(jax.lax.dot_general)
    np.testing.assert_array_equal(y, y0)  # the forward is dot_general's own
    np.testing.assert_allclose(dx, dx0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dk, dk0, rtol=1e-5, atol=1e-5)
    assert dx.shape == x.shape and dk.shape == kernel.shape


def test_bf16_compute_keeps_float32_gradients_of_float32_weights():
    lin = lambda dg: nnx.Linear(
        8, 24, use_bias=True, dtype=jnp.bfloat16, dot_general=dg, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 8))

    def grads(dg):
        m = lin(dg)
        g = nnx.grad(lambda m: jnp.sum(m(x).astype(jnp.float32) ** 2))(m)
        return g.kernel[...], g.bias[...]

    (dk, db), (dk0, db0) = grads(dense_dot_general), grads(jax.lax.dot_general)
    assert dk.dtype == dk0.dtype == jnp.float32
    np.testing.assert_allclose(dk, dk0, rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(db, db0)


def test_other_contractions_are_plain_dot_general():
    a = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 4))
    b = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 5))
    dims = (((2,), (1,)), ((0,), (0,)))  # a batched matmul, not a projection
    f = lambda dot: jax.grad(lambda a, b: jnp.sum(dot(a, b, dims) ** 2), (0, 1))(a, b)
    for g, g0 in zip(f(dense_dot_general), f(jax.lax.dot_general)):
        np.testing.assert_array_equal(g, g0)


def _kernel_grad_dot(x, kernel):
    """The dot_general in the jaxpr of d/dW sum(x @ W) whose output has W's entries."""
    f = jax.grad(lambda x, k: jnp.sum(dense_dot_general(x, k, LINEAR(x))), 1)
    for e in jax.make_jaxpr(f)(x, kernel).jaxpr.eqns:
        shapes = {tuple(v.aval.shape) for v in e.outvars}
        if e.primitive.name == "dot_general" and shapes & {kernel.shape, kernel.shape[::-1]}:
            return e
    raise AssertionError("no weight-gradient dot_general")


@pytest.mark.parametrize("d_in, d_out", [(4, 12), (12, 4)])
def test_the_weight_gradient_transposes_the_narrower_operand(d_in, d_out):
    x = jnp.ones((8, 16, d_in))
    e = _kernel_grad_dot(x, jnp.ones((d_in, d_out)))
    (lhs_contract, _), _ = e.params["dimension_numbers"]
    lhs = e.invars[0].aval.shape
    # the left operand is the one contracted over its leading (token) axes: laid out
    # transposed for the matmul; it is the narrower of x [.., d_in] and dy [.., d_out]
    assert tuple(lhs_contract) == (0, 1)
    assert lhs[-1] == min(d_in, d_out), (lhs, d_in, d_out)


def test_a_models_gradients_equal_those_of_plain_projections():
    cfg = ModelConfig(
        vocab_size=40, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4, mlp_dim=48
    )
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.PRNGKey(4), (3, 9), 0, 40)

    def grads(model):
        loss = lambda m: jnp.mean(jax.nn.log_softmax(m(tokens).astype(jnp.float32))[..., 0])
        return nnx.state(nnx.grad(loss)(model), nnx.Param)

    g = grads(model)
    plain = nnx.clone(model)
    linears = [m for _, m in nnx.iter_modules(plain) if isinstance(m, nnx.Linear)]
    assert sum(m.dot_general is dense_dot_general for m in linears) == 2 * 7
    for m in linears:
        m.dot_general = jax.lax.dot_general
    g0 = grads(plain)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
