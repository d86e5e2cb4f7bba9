"""A user's own reasoning task in one file: sums of small numbers (README, "Your own task").

A task makes problems by level, formats prompts and says how its completions are scored:
here the default step-equation verifier (`7+5=12` lines, then `#### 12`), with the
correctness, efficiency and novelty parts. `experiments/sum.py` trains on it; the
config names this file (`task_module`), so `r1jax-train` and `r1jax-eval` import it.
"""

from r1jax.rewards import EquationVerifier
from r1jax.tasks import Problem, register_task, sample_in_split


class SumTask:
    name = "sum"
    level_weights = (0.5, 0.3, 0.2)  # level L adds L + 1 numbers
    reward_parts = ("correctness", "efficiency", "novelty")
    verifier = EquationVerifier()  # how completions are scored (the default, spelled out)

    def _make(self, rng, level):
        xs = [int(x) for x in rng.integers(2, 10, size=level + 1)]
        steps, acc = [], xs[0]
        for x in xs[1:]:
            steps.append(f"{acc}+{x}={acc + x}")
            acc += x
        question = "What is the sum of " + ", ".join(map(str, xs)) + "?"
        solution = "\n".join(steps + [f"#### {acc}"])
        return Problem(question, str(acc), solution, level, len(steps),
                       subgoals=tuple(s.split("=")[1] for s in steps[:-1]))

    def sample(self, rng, level, split):
        return sample_in_split(lambda: self._make(rng, level), split, 0.1)

    def format_prompt(self, problem):
        return problem.question + "\n"

    def reference_answer(self, problem):
        return problem.answer


register_task("sum", SumTask)
