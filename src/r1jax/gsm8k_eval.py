"""GSM8K test-set evaluation of a Hugging Face checkpoint: pass@1 (greedy) and maj@k.

``evaluate_hf(checkpoint_dir, data_dir)`` loads a Qwen2/Llama checkpoint
(``models.hf.load_pretrained``) and its ``tokenizer.json`` (``HFTokenizer``), takes the
first ``num_problems`` problems of ``data_dir/test.jsonl`` in file order, and decodes:

* greedily, once per problem: **pass@1** is the share whose final answer is right;
* ``k`` samples per problem (``temperature``, ``top_p``): **maj@k** is the share whose
  majority answer is right (``majority_vote``), **sample_accuracy** the share of right
  samples.

Prompts are ``R1_TEMPLATE`` (the question after the R1 instruction, ending with
``Assistant:``), or with ``chat=True`` the tokenizer's chat template applied to
``r1_messages(question)`` with the generation prompt. **format_reward** is the mean R1
format reward (``rewards.format``) of the greedy completions.

Model text is hostile: it goes only through ``extract_answer`` / ``parse_value`` /
``verify_answer`` (``rewards.answers``) and ``format_reward``, never through ``eval``.

Reproducible: the problem order is the file's, prompts are left-padded to one length
(``max_prompt_len``, default the longest prompt rounded up to 64 tokens), every batch has
the same shape (the last one is padded with copies of its first prompt), so each of the
two decoders (greedy, sampling) is compiled once; sample ``j`` of problem ``i`` is the
global row ``r = i * k + j`` and draws its tokens with ``PRNGKey(seed)`` and
``row_offset=r`` (``sampling.generate``): a problem's samples do not depend on
``batch_size`` or ``num_problems``. Two runs with the same arguments on the same
machine give the same dict (no timings in it), hence the same JSON.
"""

from __future__ import annotations

import collections
import logging
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.errors import ConfigError
from r1jax.rewards.answers import extract_answer, parse_value, verify_answers
from r1jax.rewards.format import format_reward
from r1jax.rewards.latex import Equation, Num

__all__ = [
    "PROMPT_ROUND",
    "answer_key",
    "evaluate_hf",
    "evaluate_params",
    "evaluate_workdir",
    "majority_vote",
    "score_completions",
]

_log = logging.getLogger("r1jax")
PROMPT_ROUND = 64  # the automatic max_prompt_len is a multiple of this


# ------------------------------------------------------------------------------ voting


def answer_key(answer: str | None) -> str | None:
    """The class of an extracted answer for voting: equal numbers share one key
    (``"18"``, ``"$18.00"``, ``"18 eggs"``, ``"x = 18"`` are all ``"18"``; ``"50%"`` is
    ``"50%"``); other answers are compared as whitespace-normalised text."""
    if answer is None:
        return None
    try:
        value = parse_value(answer)
    except Exception:  # noqa: BLE001  (never raise on model text)
        value = None
    if isinstance(value, Equation) and value.named:
        value = value.rhs
    if isinstance(value, Num):
        return f"{value.value}{'%' if value.percent else ''}"
    return " ".join(answer.split())


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the winning sample: the first sample of the most frequent answer class
    (``answer_key``); a tie goes to the class whose first sample comes first. ``None``
    answers do not vote; ``None`` when no sample has an answer."""
    counts: collections.Counter = collections.Counter()
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        key = answer_key(a)
        if key is None:
            continue
        counts[key] += 1
        first.setdefault(key, i)
    if not counts:
        return None
    best = min(counts, key=lambda key: (-counts[key], first[key]))
    return first[best]


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def score_completions(
    greedy: Sequence[str],
    samples: Sequence[Sequence[str]],
    references: Sequence[str],
    *,
    greedy_truncated: Sequence[bool] | None = None,
    records: bool = False,
) -> dict:
    """Metrics of decoded completions: ``greedy[i]`` and ``samples[i]`` (k texts) answer
    problem ``i`` whose reference answer is ``references[i]`` (module doc)."""
    n = len(references)
    if len(greedy) != n or len(samples) != n:
        raise ValueError("score_completions: greedy, samples and references differ in length")
    k = len(samples[0]) if n else 0
    if any(len(s) != k for s in samples):
        raise ValueError("score_completions: every problem needs the same number of samples")
    flat = [c for s in samples for c in s]
    verdicts = verify_answers(
        [(c, r) for c, r in zip(greedy, references)]
        + [(c, references[i // k]) for i, c in enumerate(flat)]
    )
    greedy_ok, sample_ok = verdicts[:n], verdicts[n:]
    greedy_answers = [extract_answer(c, fallback=True) for c in greedy]
    sample_answers = [extract_answer(c, fallback=True) for c in flat]
    greedy_format = [format_reward(c) for c in greedy]
    sample_format = [format_reward(c) for c in flat]
    maj_ok, recs = [], []
    for i in range(n):
        answers = sample_answers[i * k : (i + 1) * k]
        win = majority_vote(answers)
        # The winner's correctness is its own verdict (verify_answer on its completion).
        maj_ok.append(win is not None and sample_ok[i * k + win])
        if records:
            recs.append(
                {
                    "index": i,
                    "reference": references[i],
                    "greedy_completion": greedy[i],
                    "greedy_answer": greedy_answers[i],
                    "greedy_correct": bool(greedy_ok[i]),
                    "greedy_format": greedy_format[i],
                    "sample_answers": answers,
                    "sample_correct": [bool(v) for v in sample_ok[i * k : (i + 1) * k]],
                    "majority_answer": None if win is None else answers[win],
                    "majority_correct": bool(maj_ok[-1]),
                }
            )
    out = {
        "num_problems": n,
        "k": k,
        "pass@1": _mean(greedy_ok),
        f"maj@{k}": _mean(maj_ok),
        "sample_accuracy": _mean(sample_ok),
        "format_reward": _mean(greedy_format),
        "format_reward_samples": _mean(sample_format),
        "greedy_answer_rate": _mean([a is not None for a in greedy_answers]),
    }
    if greedy_truncated is not None:
        out["greedy_truncated"] = _mean(list(greedy_truncated))
    if records:
        out["records"] = recs
    return out


# ---------------------------------------------------------------------------- decoding


def _decoder(graphdef, *, max_new_tokens, temperature, top_p, eos_id, pad_id):
    """A jitted ``(params, prompt_bp, mask_bp, key, row_offset) -> tokens_bt``."""
    from r1jax.sampling import generate

    def fn(params, prompt, mask, key, row_offset):
        model = nnx.merge(graphdef, params)
        return generate(
            model,
            prompt,
            mask,
            key,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            eos_id=eos_id,
            pad_id=pad_id,
            row_offset=row_offset,
            top_p=top_p,
        ).tokens_bt

    return jax.jit(fn)


def _decode_rows(decoder, params, encode, prompts, rows, batch_size, max_prompt_len, key):
    """Completions (tokens ``[R, T]``) of ``prompts[rows[r]]`` for each global row r, in
    batches of one shape; row r is decoded with ``row_offset=r``. ``encode(texts,
    length)`` left-pads prompts."""
    b = min(batch_size, len(rows))
    out = []
    for start in range(0, len(rows), b):
        chunk = [prompts[i] for i in rows[start : start + b]]
        n = len(chunk)
        chunk += [chunk[0]] * (b - n)  # one static shape
        tok, mask = encode(chunk, max_prompt_len)
        got = decoder(params, tok, mask, key, jnp.int32(start))
        out.append(np.asarray(got)[:n])
        _log.info("gsm8k eval: decoded %d/%d rows", start + n, len(rows))
    return np.concatenate(out, axis=0)


def _check_positive(name, value, minimum=1):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


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


def _prompt_length(tokenizer, prompts, max_prompt_len, encode_kw) -> int:
    """`max_prompt_len`, checked against the longest prompt; None: the longest prompt
    rounded up to `PROMPT_ROUND` tokens."""
    longest = max(len(tokenizer.encode(p, **encode_kw)) for p in prompts)
    if max_prompt_len is None:
        return PROMPT_ROUND * math.ceil(longest / PROMPT_ROUND)
    if longest > max_prompt_len:
        raise ConfigError(
            f"max_prompt_len={max_prompt_len} is too short: the longest prompt has {longest} tokens"
        )
    return max_prompt_len


def evaluate_params(
    graphdef,
    params,
    tokenizer,
    problems,
    prompts: Sequence[str],
    *,
    references: Sequence[str],
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    max_prompt_len: int,
    batch_size: int,
    seed: int,
    encode_kw: dict | None = None,
    records: bool = False,
) -> dict:
    """pass@1 / maj@k of the policy `nnx.merge(graphdef, params)` on `prompts` (one per
    problem, answers `references`): greedy once per problem, `k` samples per problem
    (module doc: row keys, static shapes). Returns `score_completions`' dict."""
    _check_positive("k", k)
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ConfigError(f"temperature must be > 0 (the maj@k samples), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
    encode_kw = encode_kw or {}

    def encode(texts, length):
        return tokenizer.encode_left_padded(texts, length, **encode_kw)

    kw = {"max_new_tokens": max_new_tokens, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}
    key = jax.random.PRNGKey(seed)
    n = len(prompts)
    _log.info(
        "gsm8k eval: %d problems, prompt length %d, greedy + %d samples each", n, max_prompt_len, k
    )
    greedy_fn = _decoder(graphdef, temperature=0.0, top_p=1.0, **kw)
    greedy_tok = _decode_rows(
        greedy_fn, params, encode, prompts, list(range(n)), batch_size, max_prompt_len, key
    )
    sample_fn = _decoder(graphdef, temperature=float(temperature), top_p=float(top_p), **kw)
    rows = [i for i in range(n) for _ in range(k)]
    sample_tok = _decode_rows(
        sample_fn, params, encode, prompts, rows, batch_size, max_prompt_len, key
    )

    greedy = tokenizer.decode_batch(greedy_tok)
    flat = tokenizer.decode_batch(sample_tok)
    samples = [flat[i * k : (i + 1) * k] for i in range(n)]
    truncated = [not (row == tokenizer.eos_id).any() for row in greedy_tok]
    result = score_completions(
        greedy, samples, list(references), greedy_truncated=truncated, records=records
    )
    if records:
        for rec, p in zip(result["records"], problems):
            rec["question"] = p.question
    return result


def evaluate_hf(
    checkpoint_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
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
    """pass@1, maj@k and format reward of a Hugging Face checkpoint on GSM8K test (module
    doc). ``num_problems``: the first N test problems (None: all). ``records``: add the
    per-problem completions, answers and verdicts under ``"records"``.

    Raises ``FileNotFoundError`` for a missing checkpoint/data directory or file and
    ``ConfigError`` for bad arguments or an unsupported checkpoint, each naming it.
    """
    from r1jax.hf_tokenizer import HFTokenizer
    from r1jax.models.hf import load_pretrained
    from r1jax.tasks.gsm8k import R1_TEMPLATE, Gsm8kTask, r1_messages

    ckpt, data = os.fspath(checkpoint_dir), os.fspath(data_dir)
    if num_problems is not None:
        _check_positive("num_problems", num_problems)
    _check_positive("k", k)
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    if max_prompt_len is not None:
        _check_positive("max_prompt_len", max_prompt_len)
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ConfigError(f"temperature must be > 0 (the maj@k samples), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if not os.path.isdir(ckpt):
        raise FileNotFoundError(f"checkpoint directory {ckpt!r} does not exist")
    test_file = os.path.join(data, "test.jsonl")
    if not os.path.isfile(test_file):
        raise FileNotFoundError(
            f"GSM8K test file {test_file!r} not found: the data directory must hold "
            "test.jsonl (one {'question', 'answer'} object a line)"
        )

    try:
        tokenizer = HFTokenizer.from_pretrained(ckpt)
        # Only the test split is read; a directory without train.jsonl is fine.
        has_train = os.path.isfile(os.path.join(data, "train.jsonl"))
        task = Gsm8kTask(path=data, train_file="train.jsonl" if has_train else "test.jsonl")
    except ValueError as e:
        raise ConfigError(str(e)) from e
    problems = task.problems("test")
    if num_problems is not None:
        problems = problems[:num_problems]
    if chat:
        prompts = [
            tokenizer.apply_chat_template(r1_messages(p.question), add_generation_prompt=True)
            for p in problems
        ]
    else:
        prompts = [R1_TEMPLATE.format(question=p.question) for p in problems]
    # Plain-text prompts get the tokenizer's own special tokens (Llama's BOS), as
    # transformers' tokenizer(prompt) adds them; a chat template spells them itself.
    encode_kw = {} if chat else {"add_special_tokens": True}
    max_prompt_len = _prompt_length(tokenizer, prompts, max_prompt_len, encode_kw)

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
    result = evaluate_params(
        graphdef,
        params,
        tokenizer,
        problems,
        prompts,
        references=[task.reference_answer(p) for p in problems],
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        max_prompt_len=max_prompt_len,
        batch_size=batch_size,
        seed=seed,
        encode_kw=encode_kw,
        records=records,
    )
    result["config"] = {
        "checkpoint": ckpt,
        "data_dir": data,
        **_settings(k, temperature, top_p, max_new_tokens, max_prompt_len, batch_size, seed),
        "chat": bool(chat),
        "dtype": dtype,
    }
    return result


def evaluate_workdir(
    workdir: str | os.PathLike,
    step: int | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    num_problems: int | None = None,
    k: int = 8,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int | None = None,
    max_prompt_len: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    records: bool = False,
) -> dict:
    """pass@1 and maj@k on the GSM8K test set of a checkpoint of an `r1jax-train` run on
    the "gsm8k" task (`step`: default the newest). The prompts, tokenizer and model are
    the run's (`<workdir>/config.json`, `<workdir>/hf/`); `data_dir` defaults to the
    run's `task_kwargs.path`, `max_new_tokens` to its `max_new_tokens`. The result adds
    `step` and `phase`; the same arguments give the same JSON."""
    from r1jax.evaluate import restored_run

    workdir = os.fspath(workdir)
    if num_problems is not None:
        _check_positive("num_problems", num_problems)
    if max_prompt_len is not None:
        _check_positive("max_prompt_len", max_prompt_len)
    if data_dir is not None and not os.path.isfile(os.path.join(data_dir, "test.jsonl")):
        raise FileNotFoundError(f"GSM8K test file {data_dir}/test.jsonl not found")

    def edit(c):
        if c.task != "gsm8k":
            raise ConfigError(f"{workdir} trained task {c.task!r}, not gsm8k")
        if data_dir is not None:
            c.task_kwargs.path = os.fspath(data_dir)

    with restored_run(workdir, step, edit) as (exp, state, phase, at):
        c, task = exp.c, exp.task
        problems = task.problems("test")
        if num_problems is not None:
            problems = problems[:num_problems]
        prompts = [exp.prompt_text(p) for p in problems]
        max_prompt_len = _prompt_length(exp.tokenizer, prompts, max_prompt_len, exp.prompt_kw)
        max_new_tokens = int(c.max_new_tokens if max_new_tokens is None else max_new_tokens)
        result = evaluate_params(
            exp.graphs.policy,
            exp.eval_params(state),
            exp.tokenizer,
            problems,
            prompts,
            references=[task.reference_answer(p) for p in problems],
            k=k,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            max_prompt_len=max_prompt_len,
            batch_size=batch_size,
            seed=seed,
            encode_kw=exp.prompt_kw,
            records=records,
        )
    result.update(step=at, phase=phase)
    result["config"] = {
        "workdir": workdir,
        "data_dir": c.task_kwargs.path,
        **_settings(k, temperature, top_p, max_new_tokens, max_prompt_len, batch_size, seed),
        "chat": bool(c.get("chat", False)),
        "dtype": c.model.dtype,
    }
    return result
