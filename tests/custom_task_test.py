"""The README's own-task example (`experiments/sum_task.py`, `experiments/sum.py`) end to
end: trained by `r1jax-train`, evaluated by `r1jax-eval` in a fresh process that imports
the task from the run's config (`task_module`)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _cli(entry, *args):
    code = f"import sys; from r1jax.main import {entry}; {entry}(['prog', *sys.argv[1:]])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=600
    )


def test_own_task_trains_and_evaluates(tmp_path):
    work = str(tmp_path / "sum")
    config = os.path.join(ROOT, "experiments", "sum.py") + ":smoke"
    r = _cli("train_entry", f"--config={config}", f"--workdir={work}")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.load(open(os.path.join(work, "summary.json")))
    assert summary["rl"]["num_problems"] == 8
    saved = json.load(open(os.path.join(work, "config.json")))
    assert saved["task"] == "sum" and saved["task_module"].endswith("sum_task.py")
    r = _cli("eval_entry", f"--workdir={work}")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["config"]["task"] == "sum" and out["accuracy"] == summary["rl"]["accuracy"]
    r = _cli("eval_entry", f"--workdir={work}", "--k=2", "--num_problems=4")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["num_problems"] == 4 and 0.0 <= out["maj@2"] <= out["pass@2"] <= 1.0


def test_a_missing_task_module_is_a_clear_error(tmp_path):
    config = os.path.join(ROOT, "experiments", "sum.py") + ":smoke"
    r = _cli(
        "train_entry",
        f"--config={config}",
        f"--workdir={tmp_path / 'w'}",
        "--config.task_module=/no/such/tasks.py",
    )
    assert r.returncode == 2 and "task module" in r.stderr and "Traceback" not in r.stderr


TASK_FILE = '''
from r1jax.rewards.verifier import Verdict
from r1jax.tasks import Problem, register_task


class ExactVerifier:
    """A user's own verifier: the completion must be the answer, exactly."""

    def verify(self, completion, reference):
        ok = completion.strip() == reference
        return Verdict(answer_correct=ok, num_steps=0, valid_steps=0, has_answer=bool(completion))


class EchoTask:
    name = "echo_exact"
    level_weights = (1.0,)
    reward_parts = ("correctness",)
    verifier = ExactVerifier()

    def reference_answer(self, problem):
        return problem.answer


register_task("echo_exact", EchoTask)
'''


def test_a_task_files_own_verifier_runs_in_the_reward_workers(tmp_path):
    """The task module's verifier pickles into the spawned reward workers (they import
    the file by its name: its directory is on sys.path)."""
    from r1jax.rewards import TaskScorer
    from r1jax.tasks import Problem, get_task, import_task_module

    path = tmp_path / "echo_task_file.py"
    path.write_text(TASK_FILE)
    import_task_module(str(path))
    import_task_module(str(path))  # once per process: no second registration
    task = get_task("echo_exact")
    p = Problem("q", "abc", "abc", 1, 0)
    with TaskScorer(task, num_workers=1) as scorer:
        rows = scorer.score([p, p], ["abc", "abd"])
    assert rows[:, 6].tolist() == [1.0, 0.0]  # answer_correct


def test_task_module_errors_name_the_module(tmp_path):
    import pytest

    from r1jax.tasks import import_task_module

    bad = tmp_path / "broken_task_mod.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="broken_task_mod.*boom"):
        import_task_module(str(bad))
    with pytest.raises(ValueError, match="no_such_module_xyz.*give a file by its path"):
        import_task_module("no_such_module_xyz")
    needs = tmp_path / "needs_missing_dep.py"  # the module exists; an import in it fails
    needs.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ValueError, match="no_such_dependency_xyz") as e:
        import_task_module(str(needs))
    assert "give a file by its path" not in str(e.value)
