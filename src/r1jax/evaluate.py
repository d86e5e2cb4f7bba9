"""Reproducible evaluation: greedy decoding on the fixed held-out set, host verification.

The held-out set is a pure function of (task, eval.num_problems, eval.seed), decoding is
greedy, and padding rows keep one compiled shape, so two evaluations of the same
checkpoint give identical numbers.
"""

from __future__ import annotations

import contextlib
import os
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from r1jax.rewards.composite import SCORE_FIELDS
from r1jax.sampling import generate
from r1jax.tasks import Problem


def make_greedy_fn(graph_def, max_new_tokens: int, eos_id: int, pad_id: int):
    """A jitted `(params, prompt_bp, mask_bp) -> tokens_bt` greedy decoder."""

    def fn(params, prompt, mask):
        model = nnx.merge(graph_def, params)
        return generate(
            model,
            prompt,
            mask,
            jax.random.PRNGKey(0),
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            eos_id=eos_id,
            pad_id=pad_id,
        ).tokens_bt

    return jax.jit(fn)


def evaluate(
    params,
    problems: Sequence[Problem],
    *,
    task,
    tokenizer,
    greedy_fn,
    pool,
    batch_size: int,
    max_prompt_len: int | None = None,
    format_prompt=None,
    encode_prompts=None,
    return_completions: bool = False,
) -> dict:
    """Accuracy (final answer exact) and mean reasoning steps over `problems`.

    Prompts are `format_prompt(problem)` (default `task.format_prompt`), encoded by
    `encode_prompts(texts) -> (tokens, mask)` (default: left-padded to `max_prompt_len`).
    """
    format_prompt = format_prompt or task.format_prompt
    if encode_prompts is None:
        if max_prompt_len is None:
            raise ValueError("evaluate: pass max_prompt_len or encode_prompts")
        encode_prompts = lambda texts: tokenizer.encode_left_padded(texts, max_prompt_len)
    completions: list[str] = []
    for start in range(0, len(problems), batch_size):
        chunk = list(problems[start : start + batch_size])
        prompts = [format_prompt(p) for p in chunk]
        prompts += [prompts[0]] * (batch_size - len(chunk))  # static shape
        tok, mask = encode_prompts(prompts)
        out = np.asarray(greedy_fn(params, tok, mask))
        completions += tokenizer.decode_batch(out[: len(chunk)])
    items = [(c, task.reference_answer(p)) for c, p in zip(completions, problems)]
    scores = pool.score_batch(items)
    col = {k: scores[:, i] for i, k in enumerate(SCORE_FIELDS)}
    result = {
        "accuracy": float(np.mean(col["answer_correct"])),
        "mean_steps": float(np.mean(col["num_steps"])),
        "reward_mean": float(np.mean(col["total"])),
        "num_problems": len(problems),
    }
    levels = np.array([p.level for p in problems])
    for lv in sorted(set(levels.tolist())):
        result[f"accuracy_level{lv}"] = float(np.mean(col["answer_correct"][levels == lv]))
    if return_completions:
        result["completions"] = completions
    return result


@contextlib.contextmanager
def restored_run(workdir: str, step: int | None = None, edit_config=None):
    """Context manager: the `Experiment` of a run's `config.json` and its checkpoint at
    `step` (default: newest), as `(exp, state, phase, step)`; closes both on exit.
    `edit_config(c)` may change the config first (e.g. the data path)."""
    import json

    import ml_collections

    from r1jax.checkpoint import Checkpointer
    from r1jax.train.loop import Experiment

    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(
            f"{cfg_path} not found: --workdir must be a directory written by r1jax-train"
        )
    with open(cfg_path) as f:
        c = ml_collections.ConfigDict(json.load(f))
    if edit_config is not None:
        edit_config(c)
    # LoRA checkpoints hold only adapters: the base weights are read from c.pretrained.
    lora = bool(c.get("lora") and c.lora.get("rank", 0))
    exp = Experiment(c, workdir, load_weights=lora)
    ckpt = Checkpointer(workdir, keep=c.keep_checkpoints)
    try:
        phase, step = ckpt.find(step)
        state, _ = exp.restore(ckpt, phase, step)
        yield exp, state, phase, step
    finally:
        ckpt.close()
        exp.close()


def evaluate_checkpoint(workdir: str, step: int | None = None) -> dict:
    """Evaluates the checkpoint at `step` (default: newest) of a run on its held-out set."""
    with restored_run(workdir, step) as (exp, state, phase, at):
        result = exp.evaluate(exp.eval_params(state))
    return {
        "accuracy": result["accuracy"],
        "mean_steps": result["mean_steps"],
        "num_problems": result["num_problems"],
        "step": at,
        "phase": phase,
        **{k: v for k, v in result.items() if k.startswith("accuracy_level")},
    }
