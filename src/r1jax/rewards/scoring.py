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
the five parts, ``answer_correct``, ``num_steps``, ``valid_steps``) as floats, under
``RewardConfig()`` unless a config is passed. Novelty needs the history of earlier
solutions (``novelty.NoveltyTracker``, kept by the trainer's host reward), so it is 0
here. ``TaskScorer`` is the reusable form: one verifier, one config and one
``host.RewardPool`` (worker processes with a hard per-item deadline, or inline).
"""

from __future__ import annotations

import dataclasses
import functools
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
    ``valid_steps``. ``cfg`` defaults to ``RewardConfig()``; ``num_workers > 0`` scores
    in worker processes under ``deadline_s`` per completion.
    """
    with TaskScorer(task, cfg, num_workers=num_workers, deadline_s=deadline_s) as scorer:
        return rows_as_dicts(scorer.score(list(problems), list(completions)))
