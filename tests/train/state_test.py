"""Non-finite updates are skipped and counted; SFT packing keeps examples apart."""

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
