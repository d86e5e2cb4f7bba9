"""Task interface: problems with verifiable answers, train/test splits, a registry.

A *task* generates :class:`Problem` s (a question, its reference final answer,
and a reference step-by-step solution used for SFT). Train and held-out
problems are disjoint **by construction**: :func:`split_of` hashes the
question text, and a task's ``sample(rng, level, split)`` resamples until the
hash puts the question in the requested split. :func:`sample_in_split` does
that loop for you.

Solutions are one step per line (e.g. ``7*4=28``) and end with a line
``#### <answer>``. ``format_prompt`` gives the text the model is conditioned
on; the model writes the solution lines after it (the tokenizer appends EOS).

Writing your own task takes about a dozen lines. Example::

    from r1jax.tasks import Problem, get_task, register_task, sample_in_split

    class SumTask:
        name = "sum"
        level_weights = (0.5, 0.3, 0.2)  # level L sums L + 1 numbers
        reward_parts = ("correctness",)

        def _make(self, rng, level):
            xs = [int(x) for x in rng.integers(2, 10, size=level + 1)]
            steps, acc = [], xs[0]
            for x in xs[1:]:
                steps.append(f"{acc}+{x}={acc + x}")
                acc += x
            question = "What is the sum of " + ", ".join(map(str, xs)) + "?"
            return Problem(question, str(acc), "\\n".join(steps + [f"#### {acc}"]),
                           level, len(steps))

        def sample(self, rng, level, split):
            return sample_in_split(lambda: self._make(rng, level), split, 0.1)

        def format_prompt(self, problem):
            return problem.question + "\\n"

        def reference_answer(self, problem):
            return problem.answer

    register_task("sum", SumTask, overwrite=True)
    task = get_task("sum")
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import sys
from typing import Callable, Protocol, runtime_checkable

import numpy as np

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem instance.

    Attributes:
      question: the question text (no trailing newline).
      answer: reference final answer as a string, e.g. ``"41"``.
      solution: reference solution for SFT, one step per line, last line
        ``#### <answer>``.
      level: difficulty, 1 (easiest) .. 3.
      min_steps: number of steps of the shortest correct solution (the number
        of computation steps; a verbose reference may have more lines).
      subgoals: the intermediate values of a shortest solution, in order, as
        strings (``("30", "27")`` for ``5*6=30``, ``30-3=27``, ``27+10=37``); empty
        when unknown. Feeds the composite reward's subgoal part
        (``rewards.composite``, ``reward.w_subgoal``).
    """

    question: str
    answer: str
    solution: str
    level: int
    min_steps: int
    subgoals: tuple[str, ...] = ()


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task (structural; no base class needed).

    A task owns how its completions are scored: ``verifier`` (optional attribute, a
    ``rewards.Verifier``: answer correctness, steps, valid steps, step spans; default
    ``rewards.EquationVerifier()``, one ``a=b`` per line and ``#### N``) and
    ``reward_parts`` (the parts of ``rewards.REWARD_PARTS`` it uses; a config's weight on
    any other part is set to 0). ``rewards.score_completions(task, problems,
    completions)`` scores with them, and so do the trainer, the evaluator and the CLIs.
    """

    name: str
    level_weights: tuple[float, ...]  # mixture over levels 1..len(level_weights)
    reward_parts: tuple[str, ...]  # reward parts this task uses (rewards.REWARD_PARTS)

    def sample(self, rng: np.random.Generator, level: int, split: str) -> Problem:
        """A problem of ``level`` whose question lies in ``split`` ("train"/"test")."""
        ...

    def format_prompt(self, problem: Problem) -> str:
        """The text the model is conditioned on."""
        ...

    def reference_answer(self, problem: Problem) -> str:
        """The reference final answer (what ``#### <answer>`` should contain)."""
        ...

    # Optional: ``verifier`` (see above), and ``chat_messages(problem) -> [{"role",
    # "content"}, ...]``, the prompt as chat messages for instruction-tuned models
    # (``config.chat``); without it the trainer sends ``format_prompt(problem)`` as one
    # user message.


# ---------------------------------------------------------------------------
# Splits.


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def split_of(question: str, test_fraction: float) -> str:
    """Deterministic split of a question: "test" for a ``test_fraction`` share.

    Uses blake2b of the UTF-8 question text, so it is stable across processes
    and Python versions (unlike ``hash``).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    digest = hashlib.blake2b(question.encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / float(1 << 64)
    return "test" if u < test_fraction else "train"


def sample_in_split(
    make: Callable[[], Problem], split: str, test_fraction: float, max_tries: int = 100_000
) -> Problem:
    """Calls ``make()`` until the problem's question falls in ``split``."""
    check_split(split)
    if (split == "test" and test_fraction <= 0.0) or (split == "train" and test_fraction >= 1.0):
        raise ValueError(f"split {split!r} is empty with test_fraction={test_fraction}")
    for _ in range(max_tries):
        problem = make()
        if split_of(problem.question, test_fraction) == split:
            return problem
    raise RuntimeError(f"no {split!r} problem found in {max_tries} tries")


# ---------------------------------------------------------------------------
# Sampling helpers.


def _level_probs(task: Task, weights=None) -> np.ndarray:
    raw = task.level_weights if weights is None else weights
    w = np.asarray(raw, dtype=np.float64)
    if w.ndim != 1 or w.size != len(task.level_weights) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"bad level weights {tuple(raw)!r}: need {len(task.level_weights)} "
            "non-negative weights with a positive sum"
        )
    return w / w.sum()


def sample_levels(task: Task, rng: np.random.Generator, n: int, weights=None) -> np.ndarray:
    """``n`` levels (1-based ints) drawn from ``weights`` (default ``task.level_weights``)."""
    p = _level_probs(task, weights)
    return rng.choice(p.size, size=n, p=p) + 1


def sample_mixture(
    task: Task, rng: np.random.Generator, n: int, split: str = "train", weights=None
) -> list[Problem]:
    """``n`` problems with levels drawn from ``weights`` (default ``task.level_weights``).

    A different mixture for one phase (e.g. an RL prompt curriculum that leans on the
    levels the policy has not mastered) is passed as ``weights``.
    """
    check_split(split)
    return [task.sample(rng, int(level), split) for level in sample_levels(task, rng, n, weights)]


class TooFewProblems(ValueError):
    """``heldout_set``: the task has fewer distinct held-out problems than asked for."""


def heldout_set(
    task: Task, n: int, seed: int = 0, level: int | None = None, max_tries_factor: int = 50
) -> list[Problem]:
    """A fixed, deterministic held-out set of ``n`` distinct test-split problems.

    Levels follow ``task.level_weights`` unless ``level`` is given. Questions are
    deduplicated; the same ``(task config, n, seed, level)`` always gives the
    same list.
    """
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    for _ in range(max_tries_factor * n + 100):
        if len(out) >= n:
            break
        lvl = int(sample_levels(task, rng, 1)[0]) if level is None else level
        problem = task.sample(rng, lvl, "test")
        if problem.question not in seen:
            seen.add(problem.question)
            out.append(problem)
    if len(out) < n:
        raise TooFewProblems(
            f"task {getattr(task, 'name', '?')!r}: only {len(out)} distinct held-out problems "
            f"found in {max_tries_factor * n + 100} draws, wanted {n}: ask for at most "
            f"{len(out)} (eval.num_problems, --num_problems) or give the task more test "
            "problems"
        )
    return out


# ---------------------------------------------------------------------------
# The contract, checked.


def check_task(task, need_solution: bool = True) -> None:
    """Raises ``ValueError`` naming the first part of ``task`` that breaks the ``Task``
    contract, and the fix: ``level_weights``, ``reward_parts`` (known part names, a tuple:
    a typo would silently weigh the part 0), the methods, ``verifier`` (an instance with
    ``verify``, not the class), and one training problem from ``sample`` (string
    ``question``/``answer``/``solution``, non-empty; ``format_prompt`` and
    ``reference_answer`` give non-empty strings; without ``need_solution``, for a run
    without SFT or an evaluation, the solution may be ""). Any exception the task's own
    code raises is reported as that method's failure. The trainer and ``r1jax-eval`` call
    it on every task they build, before anything is written."""
    from r1jax.rewards.composite import REWARD_PARTS  # (here: no import cycle)

    name = getattr(task, "name", type(task).__name__)
    where = f"task {name!r} ({type(task).__module__}.{type(task).__qualname__})"
    weights = getattr(task, "level_weights", None)
    try:
        w = np.asarray(weights, dtype=np.float64)
        ok = w.ndim == 1 and w.size > 0 and bool(np.all(w >= 0)) and w.sum() > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: level_weights={weights!r:.80} must be a tuple of weights >= 0 with a "
            "positive sum, one per level, e.g. (0.6, 0.3, 0.1)"
        )
    parts = getattr(task, "reward_parts", REWARD_PARTS)
    if isinstance(parts, str) or not isinstance(parts, (tuple, list)):
        raise ValueError(
            f"{where}: reward_parts={parts!r:.80} must be a tuple of part names, e.g. "
            f"({parts!r:.40},) for one part; known parts: {', '.join(REWARD_PARTS)}"
        )
    unknown = [p for p in parts if p not in REWARD_PARTS]
    if unknown:
        raise ValueError(
            f"{where}: reward_parts has unknown part(s) {', '.join(map(repr, unknown))}: "
            f"known parts are {', '.join(REWARD_PARTS)}"
        )
    for method in ("sample", "format_prompt", "reference_answer"):
        if not callable(getattr(task, method, None)):
            raise ValueError(f"{where}: has no method {method}(); see tasks.Task")
    verifier = getattr(task, "verifier", None)
    if isinstance(verifier, type):
        raise ValueError(
            f"{where}: verifier = {verifier.__name__} is the class: make it an instance, "
            f"verifier = {verifier.__name__}()"
        )
    if verifier is not None and not callable(getattr(verifier, "verify", None)):
        raise ValueError(
            f"{where}: verifier {type(verifier).__name__} has no verify(completion, reference) "
            "method; see rewards.Verifier"
        )

    def call(what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # the user's code: any error, named
            raise ValueError(f"{where}: {what} raised {type(e).__name__}: {e}") from e

    level = 1 + int(np.flatnonzero(w > 0)[0])  # a level the task samples
    problem = call(
        f"sample(rng, {level}, 'train')", task.sample, np.random.default_rng(0), level, "train"
    )
    for field in ("question", "answer", "solution"):
        value = getattr(problem, field, None)
        empty_ok = field == "solution" and not need_solution and isinstance(value, str)
        if not empty_ok and (not isinstance(value, str) or not value.strip()):
            raise ValueError(
                f"{where}: sample() gave a problem whose {field} is {value!r:.80}: it must be "
                f"a non-empty string (return tasks.Problem(question, answer, solution, level, "
                "min_steps))"
            )
    for what in ("format_prompt", "reference_answer"):
        value = call(f"{what}(problem)", getattr(task, what), problem)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {what}(problem) gave {value!r:.80}: return a non-empty str")


# ---------------------------------------------------------------------------
# Registry.

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task], overwrite: bool = False) -> None:
    """Registers ``factory`` (a class or function returning a Task) under ``name``.

    Re-registering the same factory is a no-op; a different one needs
    ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for task {name!r} is not callable")
    old = _REGISTRY.get(name)
    if old is not None and old is not factory and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True")
    _REGISTRY[name] = factory


def is_module_file(spec) -> bool:
    """Whether ``config.task_module`` names a file (a ``.py`` path or one with a path
    separator), not a dotted module name."""
    return isinstance(spec, str) and (spec.endswith(".py") or os.sep in spec)


def import_task_module(spec: str) -> None:
    """Imports the module that registers a user's task (``config.task_module``): a dotted
    module name (``my_pkg.tasks``) or the path of a ``.py`` file. A file is imported as a
    top-level module named after it, its directory added to ``sys.path``, so the reward
    pool's worker processes (which get this ``sys.path``) can import it too and unpickle
    the task's own verifier; it is imported once per process, so its ``register_task``
    calls run once. "" does nothing. Raises ``ValueError`` naming the module."""
    if not spec:
        return
    name = spec
    path = None
    if is_module_file(spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ValueError(f"task module file {spec!r} not found; give an existing .py file")
        directory, name = os.path.split(path[: -len(".py")] if path.endswith(".py") else path)
        if not name.isidentifier():
            raise ValueError(f"task module file {spec!r}: its name must be a Python identifier")
        if directory not in sys.path:
            sys.path.append(directory)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if path is None and e.name == name.split(".")[0]:  # the module itself, not an import in it
            raise ValueError(
                f"task module {spec!r} failed to import: {e!r}: a dotted name must be "
                "importable (an installed package, or its directory on PYTHONPATH); give a "
                "file by its path instead (my_task.py or dir/my_task.py)"
            ) from e
        raise ValueError(f"task module {spec!r} failed to import: {e!r}") from e
    except Exception as e:  # noqa: BLE001  (the user's module: any error, named)
        raise ValueError(f"task module {spec!r} failed to import: {e!r}") from e
    found = getattr(module, "__file__", None)
    if path is not None and (found is None or os.path.abspath(found) != path):
        raise ValueError(
            f"task module {spec!r}: another module named {name!r} comes first on sys.path "
            f"({found}); rename the file"
        )


def parse_task_kwargs(text: str) -> dict:
    """A task's arguments from a command line's JSON object (``--task_kwargs``); raises
    ``ValueError`` naming the flag and the fix."""
    try:
        kwargs = json.loads(text)
    except ValueError as e:
        raise ValueError(f"--task_kwargs={text!r} is not JSON ({e}); pass an object") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--task_kwargs={text!r} must be a JSON object, e.g. '{{}}'")
    return kwargs


def task_parameters(name: str) -> set[str] | None:
    """The keyword arguments the factory registered as ``name`` takes; None when it
    takes any (``**kwargs``), its signature cannot be read or ``name`` is unknown."""
    factory = _REGISTRY.get(name)
    if factory is None:
        return None
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds}


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str, **kwargs) -> Task:
    """Builds the task registered as ``name`` with ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown task {name!r}; known tasks: {', '.join(list_tasks()) or '(none)'}"
        )
    return _REGISTRY[name](**kwargs)
