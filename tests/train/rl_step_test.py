"""The RL iteration's switches: two time scales, the adaptive KL controller, the
algorithm registry (a variant needs no change outside `rl.algorithms` and the config)."""

import jax
import numpy as np
import pytest

from r1jax.configs.arith_tiny import get_config
from r1jax.rl import ALGORITHMS
from r1jax.train.experiment import Experiment


def _smoke(**rl):
    c = get_config("smoke")
    c.rl.update(rl)
    return c


def _count(opt_state) -> int:
    """Optimizer updates applied so far (the Adam state's step counter)."""
    counts = [x for p, x in jax.tree_util.tree_leaves_with_path(opt_state) if "count" in str(p)]
    return int(np.asarray(counts[0]))


def _iterate(c, tmp_path, n=1):
    exp = Experiment(c, str(tmp_path))
    try:
        state = exp.init_state
        before = jax.device_get(state)
        metrics = []
        for i in range(n):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            metrics.append(jax.device_get(m))
        return before, jax.device_get(state), metrics
    finally:
        exp.close()


def test_critic_learns_on_its_own_time_scale(tmp_path):
    """The critic has its own learning rate and its own number of epochs."""
    c = _smoke(epochs=1, value_epochs=3, num_minibatches=2)
    before, after, _ = _iterate(c, tmp_path / "a")
    assert _count(after.policy_opt) == 1 * 2 and _count(after.value_opt) == 3 * 2
    frozen = _smoke(value_lr=0.0)
    before, after, _ = _iterate(frozen, tmp_path / "b")
    same = jax.tree.map(np.array_equal, before.value, after.value)
    assert all(jax.tree.leaves(same))  # value_lr = 0: the critic does not move ...
    moved = jax.tree.map(np.array_equal, before.policy, after.policy)
    assert not all(jax.tree.leaves(moved))  # ... while the policy does


@pytest.mark.parametrize("adaptive", [False, True])
def test_adaptive_kl_moves_beta_toward_the_target(tmp_path, adaptive):
    targets = {"kl_target": 1.0, "kl_horizon": 1.0} if adaptive else {}  # else: inert
    c = _smoke(adaptive_kl=adaptive, kl_coef=0.1, **targets)
    _, after, metrics = _iterate(c, tmp_path, n=2)
    betas = [float(m["kl_coef"]) for m in metrics]
    assert betas[0] == pytest.approx(0.1)  # logged: the β this iteration used
    # The rollouts' KL to the reference is far below 1.0: β shrinks by 20% an iteration.
    want = 0.1 * 0.8 if adaptive else 0.1
    assert betas[1] == pytest.approx(want, rel=1e-5)
    assert float(after.kl.coef) == pytest.approx(want * (0.8 if adaptive else 1.0), rel=1e-5)


def test_every_algorithm_runs(tmp_path):
    assert {"ppo", "grpo", "dr_grpo"} <= set(ALGORITHMS)
    c = _smoke(algo="dr_grpo")
    before, after, metrics = _iterate(c, tmp_path)
    assert before.value == {}  # no critic parameters
    assert np.isfinite(float(metrics[0]["loss"])) and float(metrics[0]["vf_loss"]) == 0.0


def test_a_checkpoint_from_before_the_kl_state_still_restores(tmp_path):
    """Checkpoints written before `TrainState.kl` existed resume and evaluate: β starts
    from the config."""
    from r1jax.checkpoint import Checkpointer

    exp = Experiment(_smoke(kl_coef=0.25), str(tmp_path))
    ckpt = Checkpointer(str(tmp_path))
    try:
        old = exp.checkpoint_view(exp.init_state)
        del old["kl"]  # the layout of an older checkpoint
        ckpt.save("sft", 6, old, {"phase": "sft"})
        state, meta = exp.restore(ckpt, "sft", 6)
        assert float(state.kl.coef) == pytest.approx(0.25) and meta == {"phase": "sft"}
        assert int(state.step) == int(exp.init_state.step)
    finally:
        ckpt.close()
        exp.close()


def test_small_states_save_through_host_memory_and_restore_the_same(tmp_path, monkeypatch):
    """A single-process state under `HOST_COPY_MAX_BYTES` is copied to numpy before Orbax
    writes it (a faster save); a larger one goes through Orbax's device path. Both
    checkpoints restore to the same arrays, as device arrays with the target's sharding."""
    from r1jax import checkpoint
    from r1jax.checkpoint import Checkpointer

    exp = Experiment(_smoke(), str(tmp_path))
    ckpt = Checkpointer(str(tmp_path))
    try:
        view = exp.checkpoint_view(exp.init_state)
        host = checkpoint._host_copy(view)
        assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(host))
        ckpt.save("rl", 1, view, {"phase": "rl"})
        monkeypatch.setattr(checkpoint, "HOST_COPY_MAX_BYTES", 0)
        assert checkpoint._host_copy(view) is view  # too large: Orbax's own path
        ckpt.save("rl", 2, view, {"phase": "rl"})
        (a, _), (b, _) = exp.restore(ckpt, "rl", 1), exp.restore(ckpt, "rl", 2)
        assert len(jax.tree.leaves(a)) == len(jax.tree.leaves(exp.init_state)) > 50
        for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(exp.init_state)):
            assert isinstance(x, jax.Array) and x.sharding == z.sharding
            assert np.array_equal(np.asarray(x), np.asarray(y))
            assert np.array_equal(np.asarray(x), np.asarray(z))
    finally:
        ckpt.close()
        exp.close()


def test_compile_report_allocates_no_state_and_starts_no_reward_worker(monkeypatch):
    from r1jax.rewards.host import RewardPool
    from r1jax.train import experiment

    def refuse(self):
        raise AssertionError("compile_only started a reward worker")

    monkeypatch.setattr(RewardPool, "_ensure_started", refuse)
    built = []
    real = experiment.Experiment.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        built.append(self)

    monkeypatch.setattr(experiment.Experiment, "__init__", spy)
    report = experiment.compile_report(_smoke())
    assert report["rl_iteration"]["argument_bytes"] > 0
    assert report["sft_step"]["argument_bytes"] > 0
    assert built[0].init_state is None and built[0].state_shapes is not None
    # No SFT phase (R1-Zero configs such as gsm8k_qwen): no SFT step to compile.
    c = _smoke()
    c.sft.steps = 0
    report = experiment.compile_report(c)
    assert report["sft_step"] is None and report["rl_iteration"]["argument_bytes"] > 0
