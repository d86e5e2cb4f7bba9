"""Tests for the task interface, split hashing, sampling helpers and registry."""

import collections
import re

import numpy as np
import pytest

from r1jax import tasks
from r1jax.tasks import (
    Problem,
    Task,
    base,
    get_task,
    heldout_set,
    list_tasks,
    register_task,
    sample_in_split,
    sample_mixture,
    split_of,
)


@pytest.fixture
def clean_registry():
    saved = dict(base._REGISTRY)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)


def _docstring_example():
    """The indented code block after 'Example::' in base's docstring."""
    doc = base.__doc__
    block = doc.split("Example::", 1)[1]
    lines = []
    for line in block.split("\n")[1:]:
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines)


class TinySum:
    """The docstring's sum-of-a-list task, built by hand."""

    name = "tiny_sum"
    level_weights = (0.5, 0.3, 0.2)
    reward_parts = ("correctness",)

    def _make(self, rng, level):
        xs = [int(x) for x in rng.integers(2, 10, size=level + 1)]
        steps, acc = [], xs[0]
        for x in xs[1:]:
            steps.append(f"{acc}+{x}={acc + x}")
            acc += x
        q = "What is the sum of " + ", ".join(map(str, xs)) + "?"
        return Problem(q, str(acc), "\n".join(steps + [f"#### {acc}"]), level, len(steps))

    def sample(self, rng, level, split):
        return sample_in_split(lambda: self._make(rng, level), split, 0.1)

    def format_prompt(self, problem):
        return problem.question + "\n"

    def reference_answer(self, problem):
        return problem.answer


def test_problem_is_frozen():
    p = Problem("q", "1", "#### 1", 1, 0)
    with pytest.raises(Exception):
        p.answer = "2"
    assert p == Problem("q", "1", "#### 1", 1, 0)
    assert hash(p) == hash(Problem("q", "1", "#### 1", 1, 0))


def test_split_of_deterministic_and_fraction():
    qs = [f"question number {i}" for i in range(20000)]
    splits = [split_of(q, 0.1) for q in qs]
    assert splits == [split_of(q, 0.1) for q in qs]
    frac = splits.count("test") / len(splits)
    assert abs(frac - 0.1) < 0.01
    assert split_of("x", 0.0) == "train" and split_of("x", 1.0) == "test"
    # Monotone in test_fraction: a test question stays test for larger fractions.
    assert all(split_of(q, 0.3) == "test" for q, s in zip(qs, splits) if s == "test")
    with pytest.raises(ValueError):
        split_of("x", 1.5)


def test_sample_in_split_errors():
    make = lambda: Problem("q", "1", "#### 1", 1, 0)
    with pytest.raises(ValueError):
        sample_in_split(make, "dev", 0.1)
    with pytest.raises(ValueError):
        sample_in_split(make, "test", 0.0)
    other = "test" if split_of("q", 0.5) == "train" else "train"
    with pytest.raises(RuntimeError):
        sample_in_split(make, other, 0.5, max_tries=10)


def test_docstring_example_runs(clean_registry):
    ns = {}
    exec(compile(_docstring_example(), "<base docstring>", "exec"), ns)
    task = ns["task"]
    assert isinstance(task, Task)
    assert "sum" in list_tasks()
    rng = np.random.default_rng(0)
    for p in sample_mixture(task, rng, 200, "train"):
        assert split_of(p.question, 0.1) == "train"
        xs = [int(x) for x in re.findall(r"\d+", p.question)]
        assert p.answer == str(sum(xs)) and p.solution.endswith(f"#### {sum(xs)}")
        assert p.min_steps == len(xs) - 1 == p.level
        assert task.format_prompt(p) == p.question + "\n"
    assert len(heldout_set(task, 20, seed=0)) == 20


def test_hand_built_task_with_helpers(clean_registry):
    register_task("tiny_sum", TinySum)
    task = get_task("tiny_sum")
    assert isinstance(task, Task)
    rng = np.random.default_rng(1)
    problems = sample_mixture(task, rng, 5000, "train")
    freq = collections.Counter(p.level for p in problems)
    for lvl, w in zip((1, 2, 3), task.level_weights):
        assert abs(freq[lvl] / 5000 - w) < 0.03
    test = sample_mixture(task, rng, 300, "test")
    assert all(split_of(p.question, 0.1) == "test" for p in test)
    assert not {p.question for p in problems} & {p.question for p in test}


def test_heldout_set_deterministic_distinct():
    task = get_task("arithmetic")
    a = heldout_set(task, 300, seed=0)
    b = heldout_set(get_task("arithmetic"), 300, seed=0)
    c = heldout_set(task, 300, seed=1)
    assert a == b and a != c
    assert len({p.question for p in a}) == 300
    assert all(split_of(p.question, task.test_fraction) == "test" for p in a)
    levels = collections.Counter(p.level for p in a)
    assert set(levels) == {1, 2, 3} and levels[1] > levels[2] > levels[3]
    only3 = heldout_set(task, 50, seed=0, level=3)
    assert {p.level for p in only3} == {3}


def test_heldout_set_too_small_raises(clean_registry):
    class OneQuestion(TinySum):
        def _make(self, rng, level):
            return Problem("What is 2+2?", "4", "2+2=4\n#### 4", 1, 1)

        def sample(self, rng, level, split):
            return self._make(rng, level)

    with pytest.raises(ValueError, match="only 1 distinct held-out problems .* at most 1"):
        heldout_set(OneQuestion(), 3, seed=0, max_tries_factor=2)


def test_registry(clean_registry):
    assert "arithmetic" in list_tasks()
    with pytest.raises(ValueError, match="arithmetic"):  # lists known names
        get_task("no_such_task")
    register_task("tiny_sum", TinySum)
    register_task("tiny_sum", TinySum)  # same factory: no-op
    with pytest.raises(ValueError):
        register_task("tiny_sum", lambda: TinySum())
    register_task("tiny_sum", lambda: TinySum(), overwrite=True)
    assert isinstance(get_task("tiny_sum"), TinySum)
    with pytest.raises(ValueError):
        register_task("", TinySum)
    with pytest.raises(TypeError):
        register_task("bad", 3)
    with pytest.raises(TypeError):  # unexpected kwargs reach the factory
        get_task("tiny_sum", nope=1)


def test_sample_mixture_validates(clean_registry):
    task = get_task("arithmetic")
    with pytest.raises(ValueError):
        sample_mixture(task, np.random.default_rng(0), 3, "validation")

    class BadWeights(TinySum):
        level_weights = (0.0, 0.0)

    with pytest.raises(ValueError):
        sample_mixture(BadWeights(), np.random.default_rng(0), 3)


def test_not_a_task():
    assert not isinstance(object(), Task)


def test_public_names():
    for name in tasks.__all__:
        assert hasattr(tasks, name)


def test_task_parameters_reads_the_factory_signature():
    from r1jax.tasks import register_task, task_parameters

    def any_kwargs(**kw):
        raise AssertionError("not called")

    register_task("takes_anything", any_kwargs, overwrite=True)
    assert task_parameters("takes_anything") is None
    assert task_parameters("no such task") is None
    assert {"test_fraction", "level_weights"} <= task_parameters("physics")
    assert "verbose_prob" in task_parameters("arithmetic")
    assert "verbose_prob" not in task_parameters("physics")
