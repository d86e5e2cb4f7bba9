"""RL on a user's own task, defined in one file (`experiments/sum_task.py`).

  r1jax-train --config=experiments/sum.py --workdir=runs/sum
  r1jax-eval --workdir=runs/sum
  r1jax-train --config=experiments/sum.py:smoke --workdir=/tmp/sum   # seconds (the tests)

The config names the task's module (`task_module`: a .py path or a dotted module name),
so the trainer and `r1jax-eval` import it and the task registers itself; everything else
(tiny char-level model, SFT then PPO, the composite reward) is the embedded default's.
"""

import os

import ml_collections

from r1jax.configs import arith_tiny


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = arith_tiny.get_config("smoke" if arg == "smoke" else "")
    c.task = "sum"
    c.task_module = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sum_task.py")
    c.task_kwargs = ml_collections.ConfigDict()  # SumTask takes no arguments
    c.max_prompt_len = 48  # "What is the sum of 2, 3, 4, 5?" and a newline
    c.max_new_tokens = 48  # three steps and the answer
    c.rl.level_weights = ()  # the task's own mix
    if arg == "":
        c.sft.steps = 300
        c.rl.iterations = 40
    elif arg != "smoke":
        raise ValueError(f"unknown variant {arg!r} of sum; use '' or 'smoke'")
    return c
