"""Task-owned scoring: how a task's completions become reward parts.

A task says how its completions are scored (``tasks.Task``): its ``verifier`` (answer
correctness, steps, valid steps, step spans; default ``verifier.EquationVerifier``) and
its ``reward_parts`` (the parts of ``composite.REWARD_PARTS`` it uses; the weights of
the others are set to 0 by ``task_reward_config``). Everything that scores goes through
here: the trainer's host reward inside the RL iteration (``bridge.HostReward``, through
``io_callback``), the in-loop and checkpoint evaluation, ``r1jax-eval`` and
``r1jax-verify --task``. So a new domain plugs in by giving its task a verifier::

    from r1jax.rewards import score_completions
    rows = score_completions(task, problems, completions)
    rows[0]["answer_correct"], rows[0]["total"], rows[0]["format"], ...

Each row holds every field of ``composite.SCORE_FIELDS`` (the metrics columns: ``total``,
the five parts, ``answer_correct``, ``num_steps``, ``valid_steps``, ``has_answer``) as floats,
under ``RewardConfig()`` unless a config is passed. Novelty needs the history of earlier
solutions (``novelty.NoveltyTracker``, kept by the trainer's host reward), so it is 0
here. ``TaskScorer`` is the reusable form: one verifier, one config and one
``host.RewardPool`` (worker processes with a hard per-item deadline, or inline).
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
from collections.abc import Sequence

import numpy as np

from r1jax.rewards import composite
from r1jax.rewards import verifier as verifier_lib
from r1jax.rewards.composite import REWARD_PARTS, SCORE_FIELDS, RewardConfig
from r1jax.rewards.host import RewardPool

__all__ = [
    "TaskScorer",
    "score_completions",
    "score_row",
    "task_reference",
    "task_reward_config",
    "task_verifier",
    "unused_parts",
]


def task_verifier(task) -> verifier_lib.Verifier:
    """The task's ``verifier`` (``EquationVerifier()`` when it declares none)."""
    v = getattr(task, "verifier", None)
    if v is None:
        return verifier_lib.DEFAULT_VERIFIER
    if not callable(getattr(v, "verify", None)):
        raise TypeError(
            f"task {getattr(task, 'name', task)!r}: its verifier {v!r} has no "
            "verify(completion, reference) method (see r1jax.rewards.Verifier)"
        )
    return v


def unused_parts(task, cfg: RewardConfig) -> tuple[str, ...]:
    """Reward parts with a positive weight in ``cfg`` that ``task.reward_parts`` lacks."""
    used = tuple(getattr(task, "reward_parts", REWARD_PARTS))
    return tuple(p for p in REWARD_PARTS if getattr(cfg, f"w_{p}") > 0 and p not in used)


def task_reward_config(task, cfg: RewardConfig | None = None) -> RewardConfig:
    """``cfg`` (default ``RewardConfig()``) with the weights of the parts the task does not
    use (``unused_parts``) set to 0."""
    cfg = RewardConfig() if cfg is None else cfg
    off = {f"w_{p}": 0.0 for p in unused_parts(task, cfg)}
    return dataclasses.replace(cfg, **off) if off else cfg


def task_reference(task, problem) -> tuple[str, tuple[str, ...]]:
    """``(reference answer, subgoals)`` of ``problem``: what its completions are scored
    against (any length: references stay on the host)."""
    return str(task.reference_answer(problem)), tuple(getattr(problem, "subgoals", ()) or ())


def score_row(
    completion: str,
    answer: str,
    subgoals: tuple[str, ...] = (),
    *,
    cfg: RewardConfig,
    verifier: verifier_lib.Verifier,
) -> tuple[float, ...]:
    """One completion's ``SCORE_FIELDS`` as a tuple: the ``score_fn`` of the reward pool
    (bind ``cfg`` and ``verifier`` with ``functools.partial``; both pickle)."""
    s = composite.score(completion, answer, cfg, verifier, subgoals=tuple(subgoals))
    return tuple(s[k] for k in SCORE_FIELDS)


class TaskScorer:
    """Scores completions of one task's problems (module doc).

    Args:
      task: the task (its ``verifier``, ``reward_parts``, ``reference_answer``).
      cfg: reward weights (default ``RewardConfig()``); parts the task does not use are 0.
      num_workers: reward-pool worker processes; 0 scores in this process (no deadline).
      deadline_s: hard per-completion deadline in the workers.
    """

    def __init__(
        self, task, cfg: RewardConfig | None = None, *, num_workers: int = 0, deadline_s=2.0
    ):
        self.task = task
        self.verifier = task_verifier(task)
        self.cfg = task_reward_config(task, cfg)
        if num_workers > 0:
            try:
                pickle.dumps(self.verifier)
            except Exception as e:  # the user's object: any failure, named
                raise ValueError(
                    f"task {getattr(task, 'name', type(task).__name__)!r}: its verifier "
                    f"{type(self.verifier).__name__} cannot be sent to the reward workers "
                    f"({type(e).__name__}: {e}): keep only picklable state in it (no "
                    "lambdas, open files or locks; module-level functions are fine), or "
                    "score in-process with --config.reward.num_workers=0"
                ) from e
        self.pool = RewardPool(
            functools.partial(score_row, cfg=self.cfg, verifier=self.verifier),
            num_workers=num_workers,
            deadline_s=deadline_s,
            num_fields=len(SCORE_FIELDS),
        )

    def reference(self, problem) -> tuple[str, tuple[str, ...]]:
        return task_reference(self.task, problem)

    def score_items(self, items: Sequence[tuple[str, str, tuple[str, ...]]]) -> np.ndarray:
        """``[N, F]`` float32 rows of ``(completion, answer, subgoals)`` items."""
        return self.pool.score_batch(list(items))

    def score(self, problems: Sequence, completions: Sequence[str]) -> np.ndarray:
        """``[N, F]`` float32: ``completions[i]`` answers ``problems[i]``."""
        if len(problems) != len(completions):
            raise ValueError(
                f"score: {len(problems)} problems but {len(completions)} completions; pass "
                "one problem per completion (repeat a problem for its samples)"
            )
        return self.score_items([(c, *self.reference(p)) for p, c in zip(problems, completions)])

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "TaskScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rows_as_dicts(scores: np.ndarray) -> list[dict[str, float]]:
    """``[N, F]`` score rows as dicts keyed by ``SCORE_FIELDS``."""
    return [{k: float(v) for k, v in zip(SCORE_FIELDS, row)} for row in np.asarray(scores)]


def score_completions(
    task,
    problems: Sequence,
    completions: Sequence[str],
    cfg: RewardConfig | None = None,
    *,
    num_workers: int = 0,
    deadline_s: float = 2.0,
) -> list[dict[str, float]]:
    """Every reward part of each completion, scored with the task's verifier (module doc).

    ``completions[i]`` answers ``problems[i]``. Returns one dict per completion with the
    keys of ``SCORE_FIELDS``: ``total``, ``correctness``, ``efficiency``, ``novelty``
    (0 here), ``format``, ``subgoal``, ``answer_correct`` (0/1), ``num_steps``,
    ``valid_steps``, ``has_answer`` (0/1). ``cfg`` defaults to ``RewardConfig()``;
    ``num_workers > 0`` scores in worker processes under ``deadline_s`` per completion.
    """
    with TaskScorer(task, cfg, num_workers=num_workers, deadline_s=deadline_s) as scorer:
        return rows_as_dicts(scorer.score(list(problems), list(completions)))


REFERENCE_CHECKS = (4, 12)  # reference solutions scored at start: a first few, then more


def check_references(scorer: TaskScorer, problems: Sequence, strict: bool = True) -> str | None:
    """Scores the reference solutions (``problem.solution``, what SFT teaches) of up to
    ``sum(REFERENCE_CHECKS)`` of ``problems`` with the task's own verifier, in its pool
    (the first few alone, so a verifier that always hangs costs a few deadlines).

    Raises ``ValueError`` (naming the task, what went wrong and the fix) when the
    config weighs none of the task's ``reward_parts`` (every reward would be 0), when the
    verifier fails on every one of them (raises, returns no ``Verdict``, hangs past the
    deadline, kills its worker: the first failure's message is quoted), or, if
    ``strict``, judges none of them correct (not ``strict``, a run without SFT, whose
    task's solutions may be placeholders: a warning). Returns one warning line when only
    some fail or are judged wrong, else None. The pool's counters (``pool.stats``) are
    left as they were: the check's items are no training failures. The trainer runs it
    before anything is written."""
    name = getattr(scorer.task, "name", type(scorer.task).__name__)
    parts = tuple(getattr(scorer.task, "reward_parts", REWARD_PARTS))
    if all(getattr(scorer.cfg, f"w_{p}") <= 0 for p in parts if p in REWARD_PARTS):
        raise ValueError(
            f"task {name!r}: the config weighs none of the task's reward_parts {parts}, so "
            "every reward would be 0; give one of them a weight (--config.reward.w_<part>)"
        )
    stats = dict(scorer.pool.stats)
    try:
        return _check_references(scorer, problems, strict, name)
    finally:
        scorer.pool.stats.update(stats)


def _check_references(scorer: TaskScorer, problems: Sequence, strict: bool, name: str):
    col = {k: i for i, k in enumerate(SCORE_FIELDS)}
    rows, failed, detail, checked = [], {}, {}, []
    for size in REFERENCE_CHECKS:
        batch_problems = list(problems[len(checked) : len(checked) + size])
        if not batch_problems:
            break
        items = [(p.solution, *scorer.reference(p)) for p in batch_problems]
        out = np.asarray(scorer.score_items(items))
        last = scorer.pool.last_batch or {}
        for i, kind in last.get("failed", ()):
            failed[len(checked) + i] = kind
            detail.setdefault(len(checked) + i, last.get("detail", {}).get(i, kind))
        rows += list(out)
        checked += batch_problems
        if len(failed) == len(checked):
            break  # every one failed: no need to wait for more
    n = len(checked)
    if not n:
        return None
    fix = (
        "rewards.score_completions(task, problems, [p.solution for p in problems]) "
        "reproduces it in one process"
    )
    if len(failed) == n:
        first = min(failed)
        kinds = sorted(set(failed.values()))
        raise ValueError(
            f"task {name!r}: its verifier failed on all {n} reference solutions it was given "
            f"({', '.join(kinds)}; the first: {detail[first]}): fix "
            f"{type(scorer.verifier).__name__}.verify; {fix}"
        )
    ok = [i for i in range(n) if i not in failed]
    right = [i for i in ok if rows[i][col["answer_correct"]] > 0]
    if not right:
        p = checked[ok[0]]
        message = (
            f"task {name!r}: its verifier judges none of {len(ok)} reference solutions "
            f"correct, e.g. the solution {p.solution!r:.120} against the reference answer "
            f"{scorer.reference(p)[0]!r:.60}: check verify() and reference_answer(); {fix}"
        )
        if strict:
            raise ValueError(message)
        return message
    if len(right) < n:
        wrong = [i for i in ok if i not in right]
        parts = [f"{len(wrong)} judged wrong"] if wrong else []
        parts += [f"{len(failed)} failed ({', '.join(sorted(set(failed.values())))})"] * bool(
            failed
        )
        example = checked[wrong[0]] if wrong else None
        return (
            f"task {name!r}: of {n} reference solutions scored with its verifier, "
            f"{' and '.join(parts)}"
            + (
                f", e.g. {example.solution!r:.100} against {scorer.reference(example)[0]!r:.40}"
                if example is not None
                else f" ({detail[min(failed)]})"
            )
            + ": SFT teaches what RL then scores as wrong"
        )
    return None
