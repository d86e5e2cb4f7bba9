"""End to end on the smoke config: outputs, exact resume, reproducible evaluation."""

import json
import os

import numpy as np
import pytest

from r1jax.checkpoint_eval import evaluate_checkpoint
from r1jax.configs.arith_tiny import get_config
from r1jax.errors import ConfigError
from r1jax.train.experiment import Experiment
from r1jax.train.loop import train
from r1jax.train.metrics import read_metrics

TIMING_KEYS = {"iter_seconds"}
RL_KEYS = {
    "step",
    "phase",
    "loss",
    "reward_mean",
    "accuracy",
    "clip_eps",
    "entropy",
    "kl",
    "correctness",
    "efficiency",
    "novelty",
    "num_steps",
}


def _smoke():
    return get_config("smoke")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    summary = train(_smoke(), workdir)
    return workdir, summary


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_outputs_and_summary(full_run):
    workdir, summary = full_run
    for name in ("summary.json", "metrics.jsonl", "reward_accuracy.png", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    on_disk = _read_json(os.path.join(workdir, "summary.json"))
    for phase in ("sft", "rl"):
        assert set(on_disk[phase]) >= {"accuracy", "mean_steps"}
        assert 0.0 <= on_disk[phase]["accuracy"] <= 1.0
    assert on_disk["wall_seconds"] > 0
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    c = _smoke()
    rl = [r for r in rows if r["phase"] == "rl"]
    assert len(rl) == c.rl.iterations
    assert RL_KEYS <= set(rl[0])
    assert [r["step"] for r in rl] == list(
        range(c.sft.steps + 1, c.sft.steps + 1 + c.rl.iterations)
    )
    assert all(np.isfinite(r["loss"]) for r in rl)
    assert summary["skipped_updates"] == 0
    # The learning curve: the fixed held-out subset at RL start and every curve_every.
    curve = [r for r in rows if r["phase"] == "curve"]
    every, first = c.eval.curve_every, c.sft.steps
    assert [r["step"] for r in curve] == list(range(first, first + c.rl.iterations + 1, every))
    assert all(r["num_problems"] == c.eval.curve_problems for r in curve)


@pytest.mark.parametrize("where", ["after_sft_checkpoint", "mid_rl"])
def test_resume_continues_exactly(full_run, tmp_path, where):
    workdir, _ = full_run
    c = _smoke()
    resumed = str(tmp_path / "resumed")
    # Stop right after the SFT checkpoint, or one RL iteration after an RL checkpoint (as
    # a kill would: that iteration is redone).
    stop = (
        c.sft.steps if where == "after_sft_checkpoint" else (c.sft.steps + c.checkpoint_every + 1)
    )
    assert train(_smoke(), resumed, stop_after=stop) == {}
    partial = read_metrics(os.path.join(resumed, "metrics.jsonl"))
    assert max(r["step"] for r in partial) == stop
    train(_smoke(), resumed)
    a = _strip(read_metrics(os.path.join(workdir, "metrics.jsonl")))
    b = _strip(read_metrics(os.path.join(resumed, "metrics.jsonl")))
    assert a == b
    sa = _read_json(os.path.join(workdir, "summary.json"))
    sb = _read_json(os.path.join(resumed, "summary.json"))
    # The whole summary, reward-pool counters included, less wall-clock time.
    assert {k: v for k, v in sa.items() if k != "wall_seconds"} == {
        k: v for k, v in sb.items() if k != "wall_seconds"
    }


@pytest.mark.parametrize(
    "change", [("rl", "algo", "grpo"), ("value_model", "n_layers", 2), ("model", "d_model", 48)]
)
def test_resume_with_a_state_changing_config_is_a_clear_error(tmp_path, change):
    """A checkpoint the new config's state cannot hold (critic added or dropped, other
    shapes) is a ConfigError that names the fix, not an Orbax traceback; nothing is
    written over the run."""
    c = _smoke()
    resumed = str(tmp_path / "resumed")
    assert train(c, resumed, stop_after=c.sft.steps) == {}
    metrics = tmp_path / "resumed" / "metrics.jsonl"
    before = metrics.read_text()
    section, field, value = change
    c2 = _smoke()
    c2[section][field] = value
    if field == "d_model":
        c2.model.head_dim = value // c2.model.n_heads
    with pytest.raises(ConfigError, match=f"config.{section}.{field}=.* differs? from the run"):
        train(c2, resumed)
    assert metrics.read_text() == before


def test_eval_is_reproducible_and_matches_summary(full_run):
    workdir, summary = full_run
    a = evaluate_checkpoint(workdir)
    b = evaluate_checkpoint(workdir)
    assert a == b
    assert a["accuracy"] == summary["rl"]["accuracy"]
    assert a["mean_steps"] == summary["rl"]["mean_steps"]
    c = _smoke()
    assert a["step"] == c.sft.steps + c.rl.iterations
    sft = evaluate_checkpoint(workdir, step=c.sft.steps)
    assert sft["accuracy"] == summary["sft"]["accuracy"]
    with pytest.raises(FileNotFoundError, match="available steps"):
        evaluate_checkpoint(workdir, step=999)


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_rl_step_compiles_once(tmp_path, algo):
    c = _smoke()
    with c.unlocked():
        c.rl.algo = algo
        c.rl.prioritized = algo == "ppo"
        c.rl.top_entropy_q = 0.5 if algo == "grpo" else 1.0
        c.rl.adaptive_entropy = True
        c.rl.length_buckets = 3 if algo == "ppo" else 1  # a branch per length, one program
    exp = Experiment(c, str(tmp_path))
    try:
        state = exp.init_state
        eps = []
        for i in range(3):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            eps.append(float(state.clip.eps_low))
            assert np.isfinite(float(m["loss"]))
        assert exp.rl_fn._cache_size() == 1
        assert int(state.step) == 3
        assert len(set(eps)) > 1  # the adaptive clip controller moved ε
    finally:
        exp.close()


def test_subgoal_reward_reaches_the_scorer(tmp_path):
    from r1jax.train import loop

    c = _smoke()
    with c.unlocked():
        c.reward.w_subgoal = 0.1
        c.rl.level_weights = (0.0, 1.0, 0.0)  # multi-step problems: all have subgoals
    exp = Experiment(c, str(tmp_path))
    try:
        batch = exp.rl_batch(0)
        refs = exp.host_reward._lookup(np.asarray(batch.ref))
        assert all(subgoals for _, subgoals, _ in refs)  # references carry the subgoals
        _, m = exp.rl_fn(exp.init_state, batch)
        fetched = loop._fetch(m)
        assert 0.0 <= fetched["subgoal"] <= 1.0 and np.isfinite(fetched["correctness"])
    finally:
        exp.close()


def test_a_window_saved_before_has_answer_leaves_it_out_of_its_row():
    """A checkpoint written mid-window by a version with nine score fields (before
    has_answer): the resumed window's row has the nine means and no has_answer (its sum
    over the window is unknown); the next window has all of them (review, session 29)."""
    from r1jax.rewards.composite import SCORE_FIELDS
    from r1jax.train import loop

    old = {"count": 2, "sums": {"score_fields": [2.0] * 9, "entropy": 1.0}}
    window = loop._Window(old)
    row = np.ones(len(SCORE_FIELDS), np.float32)
    window.add({"score_fields": row, "entropy": np.float32(0.5)})
    fetched = loop._fetch(window.mean())
    assert "has_answer" not in fetched and fetched["num_steps"] == 1.0
    assert fetched["entropy"] == pytest.approx(0.5)
    window.add({"score_fields": row, "entropy": np.float32(0.5)})
    assert loop._fetch(window.mean())["has_answer"] == 1.0


@pytest.mark.parametrize("run", ["r1_zero", "resumed"])
def test_the_loop_lets_the_initial_state_go(tmp_path, monkeypatch, run):
    """Once the loop owns the state, the experiment's initial one is not kept alive beside
    it (on a 0.5B model in float32 that was a second state on the device, up to ~8 GB):
    in an R1-Zero run (no SFT step; `start_rl`'s donation frees only the buffers it
    reuses: 63 of the 94 initial arrays stayed alive without the loop's release) and in a
    run resumed from a checkpoint (the initial state is only the restore's target)."""
    import weakref

    import jax

    from r1jax.train import loop

    c = _smoke()
    with c.unlocked():
        c.rl.iterations = 1
        if run == "r1_zero":
            c.sft.steps = 0
    workdir = str(tmp_path)
    if run == "resumed":
        assert train(c, workdir, stop_after=c.sft.steps) == {}  # stopped at the SFT checkpoint
    seen = {}
    real_init = loop.Experiment.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        refs = [weakref.ref(x) for x in jax.tree.leaves(self.init_state)]
        rl_fn = self.rl_fn

        def spy(state, batch):
            held = [r() for r in refs]
            seen["initial"] = len(refs)
            seen["alive"] = sum(x is not None and not x.is_deleted() for x in held)
            del held
            return rl_fn(state, batch)

        self.rl_fn = spy

    monkeypatch.setattr(loop.Experiment, "__init__", init)
    train(c, workdir)  # resumed: the restored state's first RL iteration
    assert seen["initial"] > 50 and seen["alive"] == 0, seen
