"""Tasks: problem generators with verifiable answers (see ``base`` for the API)."""

from r1jax.tasks.base import (
    SPLITS,
    Problem,
    Task,
    TooFewProblems,
    check_split,
    check_task,
    get_task,
    heldout_set,
    import_task_module,
    is_module_file,
    list_tasks,
    parse_task_kwargs,
    register_task,
    sample_in_split,
    sample_levels,
    sample_mixture,
    split_of,
    task_parameters,
)
from r1jax.tasks.arithmetic import ArithmeticTask, Step, render_solution
from r1jax.tasks.domains import DOMAINS, DomainTask
from r1jax.tasks.gsm8k import R1_TEMPLATE, Gsm8kTask

__all__ = [
    "SPLITS",
    "Problem",
    "Task",
    "TooFewProblems",
    "check_split",
    "check_task",
    "get_task",
    "heldout_set",
    "import_task_module",
    "is_module_file",
    "list_tasks",
    "parse_task_kwargs",
    "register_task",
    "sample_in_split",
    "sample_levels",
    "sample_mixture",
    "split_of",
    "task_parameters",
    "ArithmeticTask",
    "Step",
    "render_solution",
    "Gsm8kTask",
    "R1_TEMPLATE",
    "DOMAINS",
    "DomainTask",
]
