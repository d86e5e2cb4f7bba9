"""Non-finite updates are skipped and counted; SFT packing keeps examples apart."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax.train.sft_step import pack_examples
from r1jax.train.state import guarded_update


def test_guarded_update_skips_non_finite_and_counts():
    tx = optax.adam(0.1)
    params = {"w": jnp.ones(3)}
    opt = tx.init(params)
    good = {"w": jnp.ones(3)}
    p1, o1, bad = guarded_update(tx, good, opt, params, jnp.float32(1.0))
    assert int(bad) == 0 and not np.allclose(p1["w"], params["w"])
    nan = {"w": jnp.array([1.0, jnp.nan, 1.0])}
    p2, o2, bad = guarded_update(tx, nan, o1, p1, jnp.float32(1.0))
    assert int(bad) == 1
    np.testing.assert_array_equal(p2["w"], p1["w"])
    assert int(o2[0].count) == int(o1[0].count)  # optimizer state untouched too
    _, _, bad = guarded_update(tx, good, o1, p1, jnp.float32(jnp.inf))
    assert int(bad) == 1
    # One non-finite value among many leaves, and an inf in another leaf.
    many = {f"w{i}": jnp.ones(4) for i in range(12)}
    o = tx.init(many)
    grads = dict(many, w7=jnp.array([1.0, 1.0, -jnp.inf, 1.0]))
    p3, _, bad = guarded_update(tx, grads, o, many, jnp.float32(1.0))
    assert int(bad) == 1 and all(np.array_equal(p3[k], many[k]) for k in many)
    p3, _, bad = guarded_update(tx, many, o, many, jnp.float32(1.0))
    assert int(bad) == 0 and not np.array_equal(p3["w0"], many["w0"])


def _compiled_lines(n_leaves):
    params = {f"w{i}": jnp.ones(16) for i in range(n_leaves)}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    step = jax.jit(lambda g, o, p: guarded_update(tx, g, o, p, jnp.float32(1.0)))
    return step.lower(params, tx.init(params), params).compile().as_text().count("\n")


def test_guarded_update_compiles_to_a_program_linear_in_the_leaves():
    """The skip flag is computed once, not inside each leaf's update: the flag built by
    `and`s over N leaves was fused into all 3N selects (N^2 ops; 250k for a 24-layer
    model, most of its step's compile time)."""
    small, large = _compiled_lines(20), _compiled_lines(80)
    assert large < 5 * small, (small, large)  # 4x the leaves: ~4x the program


def test_pack_examples_segments_positions_and_loss_mask():
    ex = [([5, 6, 7], [8, 9, 2]), ([5, 6], [10, 2]), ([11] * 5, [12] * 6)]
    b = pack_examples(ex, rows=2, length=10, pad_id=0)
    seg, pos, loss = np.asarray(b.segments), np.asarray(b.positions), np.asarray(b.loss_mask)
    # Row 0 holds examples 1 and 2 (6 + 4 tokens); the third (11 tokens) does not fit.
    assert seg[0].tolist() == [1] * 6 + [2] * 4
    assert pos[0].tolist() == list(range(6)) + list(range(4))
    assert (seg[1] == 0).all()
    # Loss on the positions that predict solution tokens (incl. EOS), never across examples.
    assert loss[0].tolist() == [0, 0, 1, 1, 1, 0, 0, 1, 1, 0]
    assert np.asarray(b.targets)[0, :5].tolist() == [6, 7, 8, 9, 2]
