"""GSM8K grade-school math word problems in the R1 format (registered as "gsm8k").

Data: JSONL files with one ``{"question": ..., "answer": ...}`` object per line, the
answer being the worked solution with ``<<expr=value>>`` calculator annotations and a
last line ``#### N`` (the layout of the GSM8K release). ``path`` is a directory holding
``train.jsonl`` (split "train") and ``test.jsonl`` (split "test", the held-out set);
``train_file``/``test_file`` rename them. No path is assumed: configs pass it as
``task_kwargs.path`` (``--config.task_kwargs.path=DIR``); ``DEFAULT_DIR`` is the
conventional location in this workspace, for configs and flags to default to.

Levels (``level_of``): the number of computation steps, i.e. of ``<<...>>`` annotations
(or, for the few solutions without any, of solution lines before ``#### N``):
1-2 steps is level 1, 3-4 is level 2, 5 or more is level 3. ``sample(rng, level, split)``
draws uniformly among the split's problems of that level (or of the nearest level
that has problems, when a small file has none of ``level``; the problem keeps its true
level). The default ``level_weights`` are the train file's level shares, so
``sample_mixture`` draws uniformly over the train problems.

Prompt (``format_prompt``): ``R1_TEMPLATE`` with the question, the DeepSeek-R1-Zero
instruction: think inside ``<think>...</think>``, then put the final number inside
``<answer>...</answer>``. The prompt ends with ``Assistant:``, so the completion itself
carries both blocks, which is what the format reward (``rewards.format``) checks.
``r1_messages`` gives the same instruction as chat messages, for instruction-tuned
models whose chat template the tokenizer renders.

Scoring (``verifier``, ``rewards.free_form.FreeFormVerifier``): the completion's marked
final answer (``<answer>``, ``\\boxed{}``, ``####``, "The answer is") against the
reference, and every equation in its prose checked as a step, so all reward parts and
dense rewards apply (``rewards.score_completions``).

Reference answer: the text after ``####`` with thousands separators removed
(``"1,000"`` -> ``"1000"``). Reference solution (SFT target, ``solution_style="r1"``)::

    <think>
    Janet sells 16 - 3 - 4 = 9 duck eggs a day.
    She makes 9 * 2 = $18 every day at the farmer's market.
    </think>
    <answer>18</answer>

(calculator annotations dropped, unless ``keep_annotations``); ``solution_style="gsm8k"``
keeps the original layout, ending with ``#### N`` (the step verifier's format), which
the R1 format reward scores 0. A missing file is a ``ValueError`` naming the path and
the flag to set.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from r1jax.rewards.free_form import FreeFormVerifier
from r1jax.tasks.base import Problem, check_split, register_task

__all__ = [
    "DEFAULT_DIR",
    "R1_SYSTEM_PROMPT",
    "R1_TEMPLATE",
    "Gsm8kTask",
    "level_of",
    "load_jsonl",
    "r1_messages",
    "reference_of",
]

DEFAULT_DIR = "../shared/data/gsm8k"

R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the "
    "Assistant solves it. The Assistant first thinks about the reasoning process and "
    "then gives the User the answer. The reasoning process is enclosed within "
    "<think> </think> tags and the final answer, a single number, within "
    "<answer> </answer> tags, i.e., <think> reasoning process here </think> "
    "<answer> number here </answer>."
)
# The exact prompt: the instruction, the question on a "User:" line, then "Assistant:".
R1_TEMPLATE = R1_SYSTEM_PROMPT + "\nUser: {question}\nAssistant:"

SOLUTION_STYLES = ("r1", "gsm8k")
_ANNOTATION_RE = re.compile(r"<<[^<>]*>>")
_THOUSANDS_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3})")


def r1_messages(question: str) -> list[dict[str, str]]:
    """The R1 instruction as chat messages (system + user), for a chat template."""
    return [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def _split_answer(answer: str) -> tuple[str, str | None]:
    """(worked solution before the ``####`` line, final answer text or None)."""
    head, sep, tail = answer.rpartition("####")
    if not sep:
        return answer.strip(), None
    final = tail.strip().splitlines()[0].strip() if tail.strip() else ""
    return head.rstrip(), final or None


def reference_of(answer: str) -> str | None:
    """The final answer of a GSM8K solution: the text after ``####``, thousands
    separators removed (``"#### 1,000"`` -> ``"1000"``); None without a ``####`` line."""
    final = _split_answer(answer)[1]
    return None if final is None else _THOUSANDS_RE.sub("", final)


def level_of(answer: str) -> tuple[int, int]:
    """(level, steps) of a GSM8K solution (module doc)."""
    body = _split_answer(answer)[0]
    steps = len(_ANNOTATION_RE.findall(body))
    if steps == 0:
        steps = sum(1 for line in body.splitlines() if line.strip())
    steps = max(steps, 1)
    return (1 if steps <= 2 else 2 if steps <= 4 else 3), steps


def load_jsonl(path: str) -> list[dict]:
    """Rows of a JSONL file (blank lines skipped); errors name the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not a JSON object: {e}") from e
            if not isinstance(row, dict) or not all(
                isinstance(row.get(k), str) for k in ("question", "answer")
            ):
                raise ValueError(f"{path}:{n}: need string fields 'question' and 'answer'")
            rows.append(row)
    return rows


class Gsm8kTask:
    """GSM8K from JSONL files, prompts in the R1 format (module doc)."""

    name = "gsm8k"
    # Scored by its answers and prose equations (``rewards.free_form``): every part works.
    reward_parts = ("correctness", "efficiency", "novelty", "format", "subgoal")
    verifier = FreeFormVerifier()

    def __init__(
        self,
        path: str | None = None,
        train_file: str = "train.jsonl",
        test_file: str = "test.jsonl",
        level_weights: tuple[float, ...] | None = None,
        solution_style: str = "r1",
        keep_annotations: bool = False,
    ):
        if not path:
            raise ValueError(
                "gsm8k: no data directory; set --config.task_kwargs.path=DIR (a directory "
                f"with {train_file} and {test_file}, e.g. {DEFAULT_DIR})"
            )
        if solution_style not in SOLUTION_STYLES:
            raise ValueError(
                f"solution_style must be one of {SOLUTION_STYLES}, got {solution_style!r}"
            )
        self.path = os.fspath(path)
        self.solution_style = solution_style
        self.keep_annotations = bool(keep_annotations)
        self.files = {
            "train": os.path.join(self.path, train_file),
            "test": os.path.join(self.path, test_file),
        }
        self._problems: dict[str, list[Problem]] = {}
        for split, file in self.files.items():
            if not os.path.isfile(file):
                raise ValueError(
                    f"gsm8k: {split} file {file!r} not found; set "
                    "--config.task_kwargs.path=DIR to a directory with "
                    f"{train_file} and {test_file} (e.g. {DEFAULT_DIR})"
                )
            self._problems[split] = [self._problem(row, file) for row in load_jsonl(file)]
            if not self._problems[split]:
                raise ValueError(f"gsm8k: {split} file {file!r} has no problems")
        self._by_level = {
            split: {lvl: [p for p in probs if p.level == lvl] for lvl in (1, 2, 3)}
            for split, probs in self._problems.items()
        }
        if level_weights is None:
            counts = [len(self._by_level["train"][lvl]) for lvl in (1, 2, 3)]
            level_weights = tuple(c / sum(counts) for c in counts)
        if len(level_weights) != 3 or min(level_weights) < 0 or sum(level_weights) <= 0:
            raise ValueError(f"level_weights must be 3 non-negative weights, got {level_weights}")
        self.level_weights = tuple(float(w) for w in level_weights)

    def __repr__(self) -> str:
        return (
            f"Gsm8kTask(path={self.path!r}, train={len(self._problems['train'])}, "
            f"test={len(self._problems['test'])}, level_weights={self.level_weights}, "
            f"solution_style={self.solution_style!r})"
        )

    def _problem(self, row: dict, file: str) -> Problem:
        answer = reference_of(row["answer"])
        if answer is None:
            raise ValueError(f"{file}: answer without a '#### N' line: {row['answer'][-60:]!r}")
        level, steps = level_of(row["answer"])
        body = _split_answer(row["answer"])[0]
        if not self.keep_annotations:
            body = _ANNOTATION_RE.sub("", body)
        if self.solution_style == "r1":
            solution = f"<think>\n{body.strip()}\n</think>\n<answer>{answer}</answer>"
        else:
            solution = f"{body.strip()}\n#### {answer}"
        # Subgoals (the subgoal reward part): the calculator annotations' results before
        # the final answer, in order, without repeats.
        subgoals = []
        for ann in _ANNOTATION_RE.findall(body if self.keep_annotations else row["answer"]):
            value = _THOUSANDS_RE.sub("", ann[2:-2].rpartition("=")[2].strip())
            if value and value not in subgoals and "|" not in value and "," not in value:
                subgoals.append(value)
        if subgoals and subgoals[-1] == answer:
            subgoals.pop()
        return Problem(row["question"].strip(), answer, solution, level, steps, tuple(subgoals))

    # -- Task protocol -----------------------------------------------------

    def problems(self, split: str) -> list[Problem]:
        """All problems of ``split``, in file order (e.g. a full test-set evaluation)."""
        return list(self._problems[check_split(split)])

    def sample(self, rng: np.random.Generator, level: int, split: str) -> Problem:
        check_split(split)
        if level not in (1, 2, 3):
            raise ValueError(f"level must be 1, 2 or 3, got {level!r}")
        buckets = self._by_level[split]
        # The nearest level with problems (ties go to the easier one).
        for lvl in sorted((1, 2, 3), key=lambda x: (abs(x - level), x)):
            if buckets[lvl]:
                return buckets[lvl][int(rng.integers(len(buckets[lvl])))]
        raise AssertionError("unreachable: splits are never empty")

    def format_prompt(self, problem: Problem) -> str:
        return R1_TEMPLATE.format(question=problem.question)

    def chat_messages(self, problem: Problem) -> list[dict[str, str]]:
        """The prompt as chat messages (the R1 instruction as system, the question as
        user), for instruction-tuned models: the trainer renders them with the
        tokenizer's chat template when `config.chat` is set."""
        return r1_messages(problem.question)

    def reference_answer(self, problem: Problem) -> str:
        return problem.answer


register_task("gsm8k", Gsm8kTask)
