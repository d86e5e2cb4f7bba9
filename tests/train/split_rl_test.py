"""The RL iteration as two programs with the host reward between them
(`reward.host_call="split"`, `train.split_rl`) computes what the one program with the
`io_callback` computes, bit for bit; a failing host reward raises before the learner
runs, so the state (donated only to the learner) survives; the compile report lists both
programs. The pmap and per-shard layouts are compared in `pmap_test` and
`reward_shard_test`; that both programs land in the persistent compilation cache, in
`compile_cache_test`."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from r1jax._testing import xla_env
from r1jax.configs.arith_tiny import get_config
from r1jax.errors import RewardError
from r1jax.train import experiment, split_rl
from r1jax.train.experiment import Experiment


def _config(host_call, **rl):
    c = get_config("smoke")
    with c.unlocked():
        c.sft.rows = 8
        c.rl.prompts_per_iter = 8
        c.reward.num_workers = 0
        c.reward.noise_std = 0.5  # non-zero rewards, advantages and updates from the start
        c.reward.host_call = host_call
        c.rl.update(warmup=1, policy_lr=1e-3, **rl)
    return c


def _run(c, tmp_path, iterations=2):
    exp = Experiment(c, str(tmp_path))
    try:
        state = exp.start_rl(exp.init_state)
        metrics = []
        for i in range(iterations):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            metrics.append(jax.tree.map(np.asarray, m))
        assert exp.rl_fn._cache_size() == 1  # one compile of each program
        return metrics, [np.asarray(x) for x in jax.tree.leaves((state.policy, state.value))]
    finally:
        exp.close()


def _compare(rl, tmp_path):
    """The split and the one-program iteration, 2 iterations each: a list of what differs
    (empty when every metric and final parameter is bitwise equal), and whether the
    policy loss was ever non-zero."""
    split = _run(_config("split", **rl), tmp_path / "split")
    one = _run(_config("io_callback", **rl), tmp_path / "one")
    diffs = []
    for i, (a, b) in enumerate(zip(split[0], one[0])):
        if a.keys() != b.keys():
            diffs.append(f"iteration {i}: keys {sorted(a)} != {sorted(b)}")
        diffs += [
            f"iteration {i}: {k} {a[k]!r} != {b[k]!r}"
            for k in a
            if k in b and not np.array_equal(a[k], b[k])
        ]
    diffs += [
        f"parameter leaf {j} differs"
        for j, (a, b) in enumerate(zip(split[1], one[1]))
        if not np.array_equal(a, b)
    ]
    return diffs, any(abs(float(m["pg_loss"])) > 0 for m in split[0])


@pytest.mark.parametrize("rl", [{}, {"algo": "grpo", "prioritized": True}], ids=["ppo", "grpo"])
def test_split_iteration_equals_the_one_program(tmp_path, rl):
    # In a subprocess with XLA's own fusion emitters, as the trainer compiles: the suite's
    # faster-compiling emitters (tests/conftest.py) fuse the two layouts differently.
    code = (
        "import importlib.util, json, pathlib, sys\n"
        "spec = importlib.util.spec_from_file_location('split_rl_test', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "diffs, learned = mod._compare(json.loads(sys.argv[2]), pathlib.Path(sys.argv[3]))\n"
        "print(json.dumps({'diffs': diffs, 'learned': learned}))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, __file__, json.dumps(rl), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        env=xla_env(bitwise=True),
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["diffs"] == []
    assert out["learned"]  # something was learned


def test_a_failing_reward_raises_before_the_learner_and_keeps_the_state(tmp_path):
    exp = Experiment(_config("split"), str(tmp_path))
    try:
        assert isinstance(exp.rl_fn, split_rl.SplitIteration)
        step0 = int(exp.init_state.step)
        state = exp.start_rl(exp.init_state)  # donated: init_state is consumed
        score = exp.host_reward._score

        def broken(*a):
            raise ZeroDivisionError("verifier bug")

        exp.host_reward._score = broken
        with pytest.raises(RewardError, match=r"global step 0: ZeroDivisionError: verifier bug"):
            exp.rl_fn(state, exp.rl_batch(0))
        assert exp.host_reward.error is None  # taken: a later iteration does not re-raise it
        assert not any(x.is_deleted() for x in jax.tree.leaves(state))  # not donated
        exp.host_reward._score = score
        state, m = exp.rl_fn(state, exp.rl_batch(0))  # the same iteration runs from it
        assert int(state.step) == step0 + 1 and np.isfinite(float(m["loss"]))
    finally:
        exp.close()


def test_a_reward_of_the_wrong_shape_is_a_clear_error(tmp_path):
    exp = Experiment(_config("split"), str(tmp_path))
    try:
        state = exp.start_rl(exp.init_state)
        score = exp.host_reward._score
        exp.host_reward._score = lambda *a: tuple(x[:1] for x in score(*a))
        with pytest.raises(RewardError, match=r"host reward returned shapes \(1, \d+\)"):
            exp.rl_fn(state, exp.rl_batch(0))
    finally:
        exp.close()


def test_compile_report_lists_both_programs_and_the_larger_figures():
    rep = experiment.compile_report(_config("split"))["rl_iteration"]
    parts = rep["rollout"], rep["learn"]
    assert all(p["argument_bytes"] > 0 for p in parts)
    for k in ("argument_bytes", "temp_bytes", "peak_bytes_estimate"):
        assert rep[k] == max(p[k] for p in parts)
    assert rep["compile_seconds"] == pytest.approx(sum(p["compile_seconds"] for p in parts))
