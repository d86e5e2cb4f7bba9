"""The task contract, checked before anything trains (a user's task audit, session 29):
`tasks.check_task`, `composite.checked_verdict`, `scoring.check_references`, and the
trainer refusing a broken task with exit 2 and nothing written."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from r1jax.rewards import composite, scoring
from r1jax.rewards.verifier import EquationVerifier, Verdict
from r1jax.tasks import (
    DOMAINS,
    Problem,
    check_task,
    get_task,
    import_task_module,
    list_tasks,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _sum_task_class():
    """The README's own task (``experiments/sum_task.py``), as a user's file is imported."""
    import_task_module(os.path.join(ROOT, "experiments", "sum_task.py"))
    return sys.modules["sum_task"].SumTask


class SumTask(_sum_task_class()):
    name = "sum_contract"
    level_weights = (0.5, 0.5)
    reward_parts = ("correctness", "efficiency")


def _task(**attrs):
    task = SumTask()
    for k, v in attrs.items():
        setattr(task, k, v)
    return task


def _problem(**fields):
    base = {"question": "q?", "answer": "5", "solution": "2+3=5\n#### 5", "level": 1}
    return Problem(**{**base, **fields, "min_steps": 1})


def test_every_registered_task_keeps_the_contract():
    # The package's own (other tests register broken ones); gsm8k needs its data
    # directory: tests/tasks/gsm8k_test.py.
    names = [n for n in list_tasks() if n in ("arithmetic", *DOMAINS)]
    assert len(names) == 11
    for name in names:
        check_task(get_task(name))


@pytest.mark.parametrize(
    "attrs, names",
    [
        ({"reward_parts": ("correctnes", "efficency")}, "unknown part(s) 'correctnes'"),
        ({"reward_parts": "correctness"}, "must be a tuple of part names"),
        ({"level_weights": None}, "level_weights=None"),
        ({"level_weights": (0.5, -0.5)}, "level_weights=(0.5, -0.5)"),
        ({"level_weights": ()}, "level_weights=()"),
        ({"sample": None}, "no method sample()"),
        ({"format_prompt": "text"}, "no method format_prompt()"),
        ({"verifier": EquationVerifier}, "verifier = EquationVerifier()"),
        ({"verifier": object()}, "has no verify(completion, reference)"),
        ({"sample": lambda rng, level: None}, "sample(rng, 1, 'train') raised TypeError"),
        ({"sample": lambda *a: {"question": "q"}}, "question is None"),
        ({"sample": lambda *a: _problem(question="")}, "question is ''"),
        ({"sample": lambda *a: _problem(answer=5)}, "answer is 5"),
        ({"sample": lambda *a: _problem(solution=None)}, "solution is None"),
        ({"format_prompt": lambda p: None}, "format_prompt(problem) gave None"),
        ({"reference_answer": lambda p: ""}, "reference_answer(problem) gave ''"),
        ({"reference_answer": lambda p: 1 / 0}, "raised ZeroDivisionError"),
    ],
)
def test_a_broken_task_is_refused_naming_the_part_and_the_fix(attrs, names):
    check_task(SumTask())  # the unbroken one passes
    with pytest.raises(ValueError, match="task 'sum_contract'") as e:
        check_task(_task(**attrs))
    assert names in str(e.value)


@pytest.mark.parametrize(
    "verdict, names",
    [
        (None, "returned NoneType"),
        ((True, 1, 1, True), "returned tuple"),
        (Verdict(float("nan"), 1, 1, True), "answer_correct=nan"),
        (Verdict("False", 1, 1, True), "answer_correct='False'"),
        (Verdict(True, 1, 1, 1.0), "has_answer=1.0"),
        (Verdict(True, -3, 0, True), "num_steps=-3"),
        (Verdict(True, 1.5, 1, True), "num_steps=1.5"),
        (Verdict(True, 1, 2, True), "valid_steps=2 is more than num_steps=1"),
        (Verdict(True, 2, 1, True, credited_steps=-1), "credited_steps=-1"),
    ],
)
def test_a_malformed_verdict_is_an_error_not_a_reward(verdict, names):
    class V:
        def verify(self, completion, reference):
            return verdict

    with pytest.raises(TypeError, match="V.verify") as e:
        composite.score("2+3=5\n#### 5", "5", verifier=V())
    assert names in str(e.value)


@pytest.mark.parametrize(
    "verdict", [Verdict(True, 2, 1, True), Verdict(np.bool_(False), np.int64(0), 0, 0)]
)
def test_well_formed_verdicts_pass(verdict):
    assert composite.checked_verdict(verdict) is verdict


class _Verifier:
    """Module-level (picklable): ``mode`` picks how it misbehaves."""

    def __init__(self, mode):
        self.mode = mode

    def verify(self, completion, reference):
        if self.mode == "raise":
            raise RuntimeError("my verifier broke")
        if self.mode == "hang":
            time.sleep(60)
        if self.mode == "half" and int(reference) % 2:
            return Verdict(False, 1, 1, True)
        ok = self.mode != "never" and completion.endswith(f"#### {reference}")
        return Verdict(ok, 1, 1, True)


def _check(mode, cfg=None, num_workers=0, deadline_s=2.0):
    task = _task(verifier=_Verifier(mode))
    problems = [task.sample(np.random.default_rng(i), 1, "train") for i in range(40)]
    with scoring.TaskScorer(task, cfg, num_workers=num_workers, deadline_s=deadline_s) as s:
        return scoring.check_references(s, problems)


def test_reference_solutions_scored_right_pass():
    assert _check("ok") is None


@pytest.mark.parametrize(
    "mode, cfg, names",
    [
        ("raise", None, "failed on all 4 reference solutions"),
        ("never", None, "judges none of 16 reference solutions correct"),
        (
            "ok",
            composite.RewardConfig(w_correctness=0, w_efficiency=0, w_novelty=1),
            "weighs none of the task's reward_parts ('correctness', 'efficiency')",
        ),
    ],
)
def test_a_verifier_that_cannot_score_the_references_is_refused(mode, cfg, names):
    with pytest.raises(ValueError, match="task 'sum_contract'") as e:
        _check(mode, cfg)
    assert names in str(e.value)
    if mode == "raise":
        assert "RuntimeError: my verifier broke" in str(e.value)


def test_a_weighted_part_the_check_cannot_score_is_no_error():
    # Novelty is 0 outside training (no history), but the config weighs it (review).
    cfg = composite.RewardConfig(w_correctness=0, w_efficiency=0, w_novelty=1)
    task = _task(verifier=_Verifier("ok"), reward_parts=("correctness", "novelty"))
    problems = [task.sample(np.random.default_rng(i), 1, "train") for i in range(20)]
    with scoring.TaskScorer(task, cfg) as s:
        assert scoring.check_references(s, problems) is None


def test_without_sft_references_judged_wrong_are_a_warning_and_stats_stay():
    task = _task(verifier=_Verifier("never"))
    problems = [task.sample(np.random.default_rng(i), 1, "train") for i in range(20)]
    with scoring.TaskScorer(task) as s:
        before = dict(s.pool.stats)
        warning = scoring.check_references(s, problems, strict=False)
        assert s.pool.stats == before  # the check's items are no training failures
    assert "judges none of 16 reference solutions correct" in warning
    with scoring.TaskScorer(_task(verifier=_Verifier("raise"))) as s:
        with pytest.raises(ValueError, match="failed on all 4"):  # a broken verifier still is
            scoring.check_references(s, problems, strict=False)
        assert s.pool.stats["errors"] == 0


def test_a_run_without_sft_may_have_no_solutions():
    task = _task(sample=lambda *a: _problem(solution=""))
    check_task(task, need_solution=False)
    with pytest.raises(ValueError, match="solution is ''"):
        check_task(task)


def test_the_sampled_level_is_one_the_task_draws():
    seen = []
    task = _task(level_weights=(0.0, 1.0))
    task.sample = lambda rng, level, split: seen.append(level) or _problem(level=level)
    check_task(task)
    assert seen == [2]


def test_some_references_judged_wrong_is_a_warning():
    warning = _check("half")
    assert warning is not None and "judged wrong" in warning and "of 16 reference" in warning


def test_a_hanging_verifier_is_refused_after_a_few_deadlines():
    # "all 4": the first four alone were scored (four deadlines, not sixteen).
    with pytest.raises(ValueError, match="failed on all 4 .*timeouts"):
        _check("hang", num_workers=2, deadline_s=0.3)


def test_an_unpicklable_verifier_is_named_with_the_fix():
    task = _task(verifier=type("V", (), {"verify": lambda *a: None, "f": lambda: 0})())
    task.verifier.f = lambda: 0  # an instance attribute holding a lambda
    with pytest.raises(ValueError, match="cannot be sent to the reward workers"):
        scoring.TaskScorer(task, num_workers=1)


TASK_FILE = """
from r1jax.rewards.verifier import Verdict
from r1jax.tasks import Problem, register_task, sample_in_split


class NeverVerifier:
    def verify(self, completion, reference):
        return Verdict(False, 0, 0, True)


class EuroTask:
    name = "euro"
    level_weights = (1.0,)
    reward_parts = ("correctness",)
    ANSWER = "{answer}"
    verifier = {verifier}

    def sample(self, rng, level, split):
        def make():
            x = int(rng.integers(10, 99))
            return Problem(f"Price {{x}}?", f"{{x}}" + self.ANSWER, f"#### {{x}}" + self.ANSWER,
                           1, 1)
        return sample_in_split(make, split, 0.2)

    def format_prompt(self, problem):
        return problem.question + "\\n"

    def reference_answer(self, problem):
        return problem.answer


register_task("euro", EuroTask, overwrite=True)
"""


@pytest.mark.parametrize(
    "answer, verifier, names",
    [
        ("", "NeverVerifier()", "its verifier judges none of 16 reference solutions correct"),
        ("€", "None", "has characters the character tokenizer cannot write ('€')"),
    ],
)
def test_the_trainer_refuses_a_task_it_cannot_score_with_exit_2_and_writes_nothing(
    tmp_path, answer, verifier, names
):
    module = tmp_path / "euro_task.py"
    module.write_text(TASK_FILE.format(answer=answer, verifier=verifier), encoding="utf-8")
    work = tmp_path / "run"
    code = "import sys; from r1jax.main import train_entry; train_entry(['prog', *sys.argv[1:]])"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"--config={os.path.join(ROOT, 'experiments', 'arith_tiny.py')}:smoke",
            "--config.task=euro",
            "--config.rl.level_weights=()",
            f"--config.task_module={module}",
            f"--workdir={work}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert names in r.stderr and "Traceback" not in r.stderr
    assert not work.exists() or not any(work.iterdir())


class RareLongTask(SumTask):
    """Its prompts grow past max_prompt_len once ``long`` is set: a prompt rarer than
    the 512 the start checks."""

    name = "rare_long"
    long = False

    def format_prompt(self, problem):
        return problem.question + ("!" * 400 if self.long else "") + "\n"


def test_a_rare_long_training_prompt_mid_run_is_one_clear_error(tmp_path):
    import ml_collections

    from r1jax.configs.arith_tiny import get_config
    from r1jax.errors import RunError
    from r1jax.tasks import register_task
    from r1jax.train.experiment import Experiment

    register_task("rare_long", RareLongTask, overwrite=True)
    c = get_config("smoke")
    with c.unlocked():
        c.task, c.task_kwargs, c.rl.level_weights = "rare_long", ml_collections.ConfigDict(), ()
        c.reward.num_workers = 0
    exp = Experiment(c, str(tmp_path))
    try:
        exp.rl_batch(0)  # fits
        exp.task.long = True
        with pytest.raises(RunError) as e:
            exp.rl_batch(1)
    finally:
        exp.close()
    text = str(e.value)
    assert text.startswith("RL iteration 1: prompt of ") and "exceeds max_prompt_len" in text
    assert "start a new --workdir with a larger --config.max_prompt_len" in text
