"""`r1jax-eval`'s library side: evaluate a run's checkpoint or a Hugging Face checkpoint.

Both go through the one evaluator (`r1jax.evaluate.evaluate`): greedy accuracy (pass@1)
per level, mean steps, format and answer rates, and with `k > 0` maj@k, pass@k and the
sample accuracy, every completion scored by the task's own verifier.

* `evaluate_workdir(workdir, step)`: a checkpoint of an `r1jax-train` run, with the run's
  config (`<workdir>/config.json`: task, its module, tokenizer, prompts, model), on the
  run's evaluation set (`evaluate.evaluation_set`: the task's test file, else its fixed
  held-out set) or the first `num_problems` of it. Any registered task.
* `evaluate_hf(checkpoint_dir, task="gsm8k")`: a Qwen2/Llama checkpoint directory
  (`models.hf.load_pretrained`, its `tokenizer.json`) on a task's evaluation set.

Both return a dict that is identical for identical arguments (no timings), so the JSON
`r1jax-eval` prints is reproducible. Errors a user can fix raise `ConfigError` or
`FileNotFoundError` naming the problem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os

import ml_collections
from flax import nnx

from r1jax import config as config_lib
from r1jax.checkpoint import Checkpointer, restore_readable
from r1jax.errors import ConfigError
from r1jax.evaluate import evaluate, evaluation_set, make_decoder
from r1jax.hf_tokenizer import HFTokenizer
from r1jax.models.hf import load_pretrained, positions_warning
from r1jax.rewards.scoring import TaskScorer
from r1jax.tasks import TooFewProblems, check_task, get_task, import_task_module, is_module_file
from r1jax.train.experiment import Experiment

log = logging.getLogger("r1jax")

__all__ = ["PROMPT_ROUND", "evaluate_checkpoint", "evaluate_hf", "evaluate_workdir", "restored_run"]

PROMPT_ROUND = 64  # an automatic prompt length is a multiple of this


def _check_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}", field=name)


def _check_sampling(k, temperature, top_p):
    _check_int("k", k, 0)
    if k and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ConfigError(f"temperature must be > 0 (the k samples), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def _settings(k, temperature, top_p, max_new_tokens, max_prompt_len, batch_size, seed) -> dict:
    """The decoding settings recorded under the result's "config"."""
    return {
        "k": k,
        "temperature": float(temperature),
        "top_p": float(top_p),
        "max_new_tokens": max_new_tokens,
        "max_prompt_len": max_prompt_len,
        "batch_size": batch_size,
        "seed": seed,
    }


def _check_task_module_file(spec: str, cfg_path: str) -> None:
    """FileNotFoundError, saying where it looked and the fix, when the run's task module
    is a file (`tasks.import_task_module`: a `.py` path or one with a path separator)
    that is not there. A relative path (runs trained before r1jax-train stored it
    absolute) is read from the current directory, not the one the run was trained in."""
    if not is_module_file(spec):
        return
    path = os.path.abspath(spec)
    if os.path.isfile(path):
        return
    if os.path.isabs(spec):
        fix = f"put the file back there, or set task_module in {cfg_path} to where it is now"
    else:
        fix = (
            f"a relative path is read from the current directory: run r1jax-eval from the "
            f"directory the run was trained in, copy the file to {path}, or set task_module "
            f"in {cfg_path} to the file's absolute path"
        )
    raise FileNotFoundError(
        f"the run's task module file {spec!r} was not found (looked for {path}): {fix}"
    )


@contextlib.contextmanager
def restored_run(workdir: str, step: int | None = None, edit_config=None):
    """Context manager: the `Experiment` of a run's `config.json` and its checkpoint at
    `step` (default: newest), as `(exp, state, phase, step)`; closes both on exit.
    `edit_config(c)` may change the config first (e.g. the data path)."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(
            f"{cfg_path} not found: --workdir must be a directory written by r1jax-train"
        )
    try:
        with open(cfg_path) as f:
            saved, dropped = config_lib.drop_unknown(json.load(f))
        if dropped:  # fields of an older version: nothing reads them now
            log.info("%s: ignoring fields this version does not have: %s", cfg_path, dropped)
        c = config_lib.complete(ml_collections.ConfigDict(saved))
    except (ValueError, AttributeError) as e:
        raise ConfigError(
            f"{cfg_path} is not a readable config ({e}): --workdir must be a directory "
            "written by r1jax-train"
        ) from e
    if edit_config is not None:
        edit_config(c)
    _check_task_module_file(c.task_module, cfg_path)
    # LoRA checkpoints hold only adapters: the base weights are read from c.pretrained.
    lora = bool(c.lora.rank)
    exp = Experiment(c, workdir, load_weights=lora, training=False)
    ckpt = Checkpointer(workdir, keep=c.keep_checkpoints)
    try:
        found = restore_readable(
            ckpt, lambda phase, at: exp.restore(ckpt, phase, at), step, set_aside=False
        )
        if found is None:
            raise FileNotFoundError(
                f"no checkpoint in {workdir}: run r1jax-train with this --workdir first"
            )
        phase, step, (state, _) = found
        log.info("evaluating the %s checkpoint at step %d of %s", phase, step, workdir)
        yield exp, state, phase, step
    finally:
        ckpt.close()
        exp.close()


def _num_problems_error(num_problems, run_num_problems, e: Exception) -> ConfigError:
    """The one-line error for too few distinct held-out problems (`TooFewProblems`),
    naming `num_problems` (the run's `eval.num_problems` when None)."""
    if num_problems is None:
        what = f"num_problems={run_num_problems} (the run's eval.num_problems)"
    else:
        what = f"num_problems={num_problems}"
    fix = "" if "--num_problems" in str(e) else ": pass a smaller --num_problems"
    return ConfigError(f"{what}: {e}{fix}", field="num_problems")


def evaluate_workdir(
    workdir: str | os.PathLike,
    step: int | None = None,
    *,
    num_problems: int | None = None,
    k: int = 0,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    records: bool = False,
    task_kwargs: dict | None = None,
) -> dict:
    """A checkpoint (`step`, default the newest) of an `r1jax-train` run on its task
    (module doc). `num_problems`: the first N of the evaluation set (default: the run's
    own, `eval.num_problems`); `max_new_tokens` / `batch_size` default to the run's;
    `task_kwargs` override the run's (e.g. `{"path": DIR}` for moved data). The result
    adds `step`, `phase` and the decoding `config`."""
    workdir = os.fspath(workdir)
    for name, v in (
        ("num_problems", num_problems),
        ("max_new_tokens", max_new_tokens),
        ("batch_size", batch_size),
    ):
        if v is not None:
            _check_int(name, v)
    _check_sampling(k, temperature, top_p)

    def edit(c):
        for key, value in (task_kwargs or {}).items():
            c.task_kwargs[key] = value

    with restored_run(workdir, step, edit) as (exp, state, phase, at):
        c = exp.c
        try:
            problems = (
                exp.heldout()
                if num_problems is None
                else evaluation_set(exp.task, num_problems, c.eval.seed)
            )
        except TooFewProblems as e:
            raise _num_problems_error(num_problems, c.eval.num_problems, e) from e
        t = int(c.max_new_tokens if max_new_tokens is None else max_new_tokens)
        b = int(c.eval.batch_size if batch_size is None else batch_size)
        greedy = exp.decoder(t)  # the run's own `greedy_fn` at its length (cached)
        sampler = exp.decoder(t, temperature=temperature, top_p=top_p) if k else None
        try:
            result = evaluate(
                exp.eval_params(state),
                problems,
                scorer=exp.scorer,
                tokenizer=exp.tokenizer,
                prompt_text=exp.prompt_text,
                encode_prompts=exp.encode_prompts,
                greedy=greedy,
                batch_size=b,
                k=k,
                sampler=sampler,
                seed=seed,
                records=records,
            )
        except ValueError as e:  # e.g. a prompt longer than the run's max_prompt_len
            raise ConfigError(str(e)) from e
    result.update(step=at, phase=phase)
    result["config"] = {
        "workdir": workdir,
        "task": c.task,
        **_settings(k, temperature, top_p, t, c.max_prompt_len, b, seed),
    }
    return result


def evaluate_checkpoint(workdir: str, step: int | None = None) -> dict:
    """The run's own greedy evaluation of a checkpoint (as in its summary)."""
    return evaluate_workdir(workdir, step)


def _prompt_length(tokenizer, prompts, max_prompt_len, encode_kw) -> tuple[int, int]:
    """`(max_prompt_len, longest prompt)`: `max_prompt_len` checked against the longest
    prompt; None: the longest prompt rounded up to `PROMPT_ROUND` tokens."""
    longest = max(len(tokenizer.encode(p, **encode_kw)) for p in prompts)
    if max_prompt_len is None:
        return PROMPT_ROUND * math.ceil(longest / PROMPT_ROUND), longest
    if longest > max_prompt_len:
        raise ConfigError(
            f"max_prompt_len={max_prompt_len} is too short: the longest prompt has {longest} tokens"
        )
    return max_prompt_len, longest


def evaluate_hf(
    checkpoint_dir: str | os.PathLike,
    task: str = "gsm8k",
    task_kwargs: dict | None = None,
    *,
    task_module: str = "",
    num_problems: int | None = None,
    k: int = 8,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 512,
    max_prompt_len: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    chat: bool = False,
    dtype: str = "float32",
    records: bool = False,
) -> dict:
    """A Hugging Face checkpoint on a registered task's evaluation set (module doc):
    the first `num_problems` (None: all) of its test file, prompts `task.format_prompt`
    or, with `chat`, the tokenizer's chat template over `task.chat_messages`."""
    ckpt = os.fspath(checkpoint_dir)
    for name, v in (("num_problems", num_problems), ("max_prompt_len", max_prompt_len)):
        if v is not None:
            _check_int(name, v)
    _check_int("max_new_tokens", max_new_tokens)
    _check_int("batch_size", batch_size)
    _check_sampling(k, temperature, top_p)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if not os.path.isdir(ckpt):
        raise FileNotFoundError(f"checkpoint directory {ckpt!r} does not exist")
    try:
        import_task_module(task_module)
        the_task = get_task(task, **(task_kwargs or {}))
        try:
            check_task(the_task, need_solution=False)
        except ValueError as e:  # the task's own code: no --data_dir hint
            raise ConfigError(str(e)) from e
        tokenizer = HFTokenizer.from_pretrained(ckpt)
        try:
            problems = evaluation_set(the_task, num_problems, seed=1234)
        except TooFewProblems as e:
            raise _num_problems_error(num_problems, None, e) from e
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"task {task!r}: {e} (r1jax-eval: pass the task's arguments as --data_dir=DIR "
            "or --task_kwargs='{...}')"
        ) from e

    def prompt_text(p):
        if not chat:
            return the_task.format_prompt(p)
        make = getattr(the_task, "chat_messages", None)
        messages = make(p) if make else [{"role": "user", "content": the_task.format_prompt(p)}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    # Plain-text prompts get the tokenizer's own special tokens (Llama's BOS), as
    # transformers' tokenizer(prompt) adds them; a chat template spells them itself.
    encode_kw = {} if chat else {"add_special_tokens": True}
    max_prompt_len, longest = _prompt_length(
        tokenizer, [prompt_text(p) for p in problems], max_prompt_len, encode_kw
    )
    if warning := positions_warning(ckpt, longest, max_new_tokens):
        log.warning(warning)
    try:
        model = load_pretrained(ckpt, dtype=dtype, param_dtype=dtype)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise ConfigError(
            f"{ckpt}: the tokenizer has {tokenizer.vocab_size} tokens, the model's "
            f"vocabulary only {model.cfg.vocab_size}"
        )
    graphdef, params = nnx.split(model)
    del model
    kw = {"max_new_tokens": max_new_tokens, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}
    with TaskScorer(the_task) as scorer:
        result = evaluate(
            params,
            problems,
            scorer=scorer,
            tokenizer=tokenizer,
            prompt_text=prompt_text,
            encode_prompts=lambda texts: tokenizer.encode_left_padded(
                texts, max_prompt_len, **encode_kw
            ),
            greedy=make_decoder(graphdef, **kw),
            batch_size=batch_size,
            k=k,
            sampler=make_decoder(graphdef, temperature=temperature, top_p=top_p, **kw),
            seed=seed,
            records=records,
        )
    result["config"] = {
        "checkpoint": ckpt,
        "task": task,
        "task_kwargs": dict(task_kwargs or {}),
        **_settings(k, temperature, top_p, max_new_tokens, max_prompt_len, batch_size, seed),
        "chat": bool(chat),
        "dtype": dtype,
    }
    return result
