"""The evaluator: one decoder, one scorer, every task (in the loop and in `r1jax-eval`).

`evaluate(params, problems, ...)` decodes each problem greedily (**accuracy**, i.e.
pass@1, per level too, **mean_steps**, **reward_mean**, **format_rate**, **answer_rate**,
**truncated**) and, with `k > 0`, draws `k` samples per problem (**maj@k**: the majority
answer is right, `majority_vote`; **pass@k**: some sample is right; **sample_accuracy**).
Every completion is scored by the task's own verifier (`rewards.TaskScorer`): the
numbers are those the RL reward sees. The trainer's in-loop evaluation, `r1jax-eval
--workdir` (any registered task) and `r1jax-eval --hf_checkpoint` all call it
(`r1jax.checkpoint_eval`).

Answers (**answer_rate**, the votes of maj@k, the records' answers) are read through the
verifier's `parse(completion).answer`, which is optional (`rewards.Verifier`: `verify()`
is all a verifier must have). Without `parse`, **answer_rate** is the share of greedy
completions whose `Verdict.has_answer` is set (the scores' `has_answer` column; a
verification that fails or hangs counts as no answer), the records' answers are None,
and **maj@k** is None, with
a `maj_note` saying why: a vote needs the answers themselves, which such a verifier does
not expose (a `Verdict` only says whether there is one and whether it is right), so the
metric is left out rather than reported as 0. (Reading them with the default
`####`/`<answer>` parser instead would count votes in a format the verifier may not use.)

Reproducible: prompts are left-padded to one length, every batch has the same shape (the
last is padded with copies of its first prompt), so each decoder compiles once; greedy
decoding is deterministic, and sample `j` of problem `i` is the global row `r = i·k + j`
drawn with `PRNGKey(seed)` and `row_offset=r` (`sampling.generate`), so a problem's
samples do not depend on the batch size or the number of problems. The same arguments
give the same dict (no timings in it).

Model text is hostile: it is only read by the task's verifier (`rewards`) and
`rewards.format.format_reward`, never evaluated.
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax import parallel
from r1jax.rewards.answers import parse_value
from r1jax.rewards.composite import SCORE_FIELDS
from r1jax.rewards.format import format_reward
from r1jax.rewards.latex import Equation, Num
from r1jax.sampling import generate
from r1jax.tasks import heldout_set

__all__ = [
    "answer_key",
    "evaluate",
    "evaluation_set",
    "majority_vote",
    "make_decoder",
    "make_mesh_decoder",
    "score_decoded",
]

_log = logging.getLogger("r1jax")
_COL = {k: i for i, k in enumerate(SCORE_FIELDS)}


def evaluation_set(task, num_problems: int | None, seed: int) -> list:
    """The fixed problems a task is evaluated on: the first `num_problems` of its test
    file when it has one (`task.problems("test")`, e.g. GSM8K; None = all), else the
    deterministic held-out set `heldout_set(task, num_problems, seed)`."""
    listed = getattr(task, "problems", None)
    if callable(listed):
        problems = list(listed("test"))
        return problems if num_problems is None else problems[:num_problems]
    if num_problems is None:
        raise ValueError(
            f"task {getattr(task, 'name', task)!r} has no fixed test file: give a number "
            "of held-out problems (eval.num_problems, --num_problems)"
        )
    return heldout_set(task, num_problems, seed=seed)


def make_decoder(
    graphdef, *, max_new_tokens: int, eos_id: int, pad_id: int, temperature=0.0, top_p=1.0
):
    """A jitted `(params, prompt_bp, mask_bp, key, row_offset) -> tokens_bt` (greedy at
    `temperature` 0). One per setting in a process (cached, whatever the order of the
    keywords): evaluations of equal models, e.g. the runs of a continual experiment,
    reuse its compiled programs."""
    settings = (max_new_tokens, eos_id, pad_id, temperature, top_p)
    return _cached_decoder(graphdef, None, None, (), settings)


def make_mesh_decoder(
    graphdef,
    mesh,
    *,
    param_shardings=None,
    cfgs=(),
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature=0.0,
    top_p=1.0,
):
    """`make_decoder` for a model laid out on the trainer's `mesh` (several devices, or
    splash attention): the program is traced under the mesh
    (`parallel.traced_under_mesh`), so the model splits its rows over the data-parallel
    axes as the rollout does (each device decodes its share of a batch, not all of it);
    `param_shardings` (the sampler rules on FSDP meshes) gathers the weights once per
    call rather than once per decode step. The tokens come back whole on every device
    and process (the host reads them). On one device without splash: `make_decoder`.
    Cached like it, per setting, mesh and layout."""
    settings = (max_new_tokens, eos_id, pad_id, temperature, top_p)
    if mesh.size == 1 and not parallel.may_splash(*cfgs):
        return _cached_decoder(graphdef, None, None, (), settings)
    layout = None  # hashable for the cache: (treedef, leaves)
    if param_shardings is not None:
        leaves, treedef = jax.tree.flatten(param_shardings)
        layout = (treedef, tuple(leaves))
    return _cached_decoder(graphdef, mesh, layout, tuple(cfgs), settings)


@functools.lru_cache(maxsize=64)
def _cached_decoder(graphdef, mesh, layout, cfgs, settings):
    """The jitted decoder: plain where `mesh` is None, else traced under it."""
    max_new_tokens, eos_id, pad_id, temperature, top_p = settings
    param_shardings = None if layout is None else layout[0].unflatten(layout[1])

    def fn(params, prompt, mask, key, row_offset):
        if param_shardings is not None:
            params = jax.lax.with_sharding_constraint(params, param_shardings)
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

    if mesh is None:
        return jax.jit(fn)
    return jax.jit(
        parallel.traced_under_mesh(fn, mesh, cfgs), out_shardings=parallel.replicated(mesh)
    )


def _decode_rows(decoder, params, encode, prompts, rows, batch_size, key) -> np.ndarray:
    """Tokens `[R, T]` of `prompts[rows[r]]` for each global row r, in batches of one
    shape; row r is decoded with `row_offset=r`. `encode(texts) -> (tokens, mask)`."""
    b = min(batch_size, len(rows))
    out = []
    for start in range(0, len(rows), b):
        chunk = [prompts[i] for i in rows[start : start + b]]
        n = len(chunk)
        chunk += [chunk[0]] * (b - n)  # one static shape
        tok, mask = encode(chunk)
        out.append(np.asarray(decoder(params, tok, mask, key, jnp.int32(start)))[:n])
    return np.concatenate(out, axis=0)


# ------------------------------------------------------------------------------ voting


def answer_key(answer: str | None) -> str | None:
    """The class of an extracted answer for voting: equal numbers share one key
    (`"18"`, `"$18.00"`, `"18 eggs"`, `"x = 18"` are all `"18"`; `"50%"` is `"50%"`);
    other answers are compared as whitespace-normalised text."""
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
    (`answer_key`); a tie goes to the class whose first sample comes first. `None`
    answers do not vote; `None` when no sample has an answer."""
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


# --------------------------------------------------------------------------- evaluation


def evaluate(
    params,
    problems: Sequence,
    *,
    scorer,
    tokenizer,
    prompt_text: Callable,
    encode_prompts: Callable,
    greedy,
    batch_size: int,
    k: int = 0,
    sampler=None,
    seed: int = 0,
    records: bool = False,
    return_completions: bool = False,
) -> dict:
    """Metrics of the policy `params` on `problems` (module doc).

    `scorer` (`rewards.TaskScorer`) scores with the task's verifier; prompts are
    `prompt_text(problem)`, encoded by `encode_prompts(texts) -> (tokens, mask)`;
    `greedy` and `sampler` are `make_decoder` functions (the sampler only for `k > 0`).
    `records`: per-problem completions, answers and verdicts under "records".
    """
    problems = list(problems)
    n = len(problems)
    if n == 0:
        raise ValueError("evaluate: no problems")
    if k > 0 and sampler is None:
        raise ValueError("evaluate: k > 0 needs a sampler (make_decoder with temperature > 0)")
    prompts = [prompt_text(p) for p in problems]
    key = jax.random.PRNGKey(seed)
    greedy_tok = _decode_rows(greedy, params, encode_prompts, prompts, range(n), batch_size, key)
    completions = tokenizer.decode_batch(greedy_tok)
    samples = None
    if k > 0:
        rows = [i for i in range(n) for _ in range(k)]
        flat = tokenizer.decode_batch(
            _decode_rows(sampler, params, encode_prompts, prompts, rows, batch_size, key)
        )
        samples = [flat[i * k : (i + 1) * k] for i in range(n)]
    truncated = [not (row == tokenizer.eos_id).any() for row in greedy_tok]
    result = score_decoded(problems, completions, samples, scorer, truncated, records)
    _log.debug("evaluated %d problems%s", n, f" (+{k} samples each)" if k else "")
    if return_completions:
        result["completions"] = completions
    return result


def score_decoded(
    problems: Sequence,
    completions: Sequence[str],
    samples: Sequence[Sequence[str]] | None,
    scorer,
    truncated: Sequence[bool] | None = None,
    records: bool = False,
) -> dict:
    """The metrics of decoded text (module doc): `completions[i]` is the greedy answer to
    `problems[i]`, `samples[i]` its k sampled ones (None: greedy only), `truncated[i]`
    whether the greedy completion ran out of tokens."""
    n = len(problems)
    scores = np.asarray(scorer.score(problems, completions))
    col = {k_: scores[:, i] for k_, i in _COL.items()}
    parse = getattr(scorer.verifier, "parse", None)
    parse = parse if callable(parse) else None
    answer_of = lambda c: parse(c).answer if parse else None
    answers = [answer_of(c) for c in completions]
    if parse:
        has_answer = [a is not None for a in answers]
    else:  # the verifier exposes no answers, only whether there is one (module doc)
        has_answer = list(col["has_answer"] > 0)
    formats = [format_reward(c) for c in completions]
    result = {
        "accuracy": _mean(col["answer_correct"]),
        "mean_steps": _mean(col["num_steps"]),
        "reward_mean": _mean(col["total"]),
        "format_rate": _mean(formats),
        "answer_rate": _mean(has_answer),
        "num_problems": n,
    }
    if truncated is not None:
        result["truncated"] = _mean(list(truncated))
    levels = np.array([p.level for p in problems])
    for lv in sorted(set(levels.tolist())):
        result[f"accuracy_level{lv}"] = _mean(col["answer_correct"][levels == lv])
    recs = [
        {
            "index": i,
            "question": p.question,
            "reference": scorer.reference(p)[0],
            "greedy_completion": completions[i],
            "greedy_answer": answers[i],
            "greedy_correct": bool(col["answer_correct"][i]),
            "greedy_format": formats[i],
        }
        for i, p in enumerate(problems)
    ]
    if samples is not None:
        k = len(samples[0]) if n else 0
        if any(len(s) != k for s in samples) or len(samples) != n:
            raise ValueError("score_decoded: every problem needs the same number of samples")
        flat = [c for s in samples for c in s]
        ok = np.asarray(scorer.score([p for p in problems for _ in range(k)], flat))
        ok = ok[:, _COL["answer_correct"]].reshape(n, k) > 0
        sample_answers = [answer_of(c) for c in flat]
        maj = []
        for i in range(n):
            group = sample_answers[i * k : (i + 1) * k]
            win = majority_vote(group) if parse else None
            # The winner's correctness is its own verdict (the verifier on its completion).
            maj.append(win is not None and bool(ok[i, win]))
            recs[i].update(
                sample_answers=group,
                sample_correct=ok[i].tolist(),
                majority_answer=None if win is None else group[win],
                majority_correct=maj[-1] if parse else None,
            )
        result.update(
            {
                "k": k,
                f"maj@{k}": _mean(maj) if parse else None,
                f"pass@{k}": _mean(ok.any(1)),
                "sample_accuracy": _mean(ok.reshape(-1)),
                "format_rate_samples": _mean([format_reward(c) for c in flat]),
            }
        )
        if not parse:
            result["maj_note"] = (
                f"maj@{k} left out: {type(scorer.verifier).__name__} has no "
                "parse(completion) giving the answers to vote on (only verify())"
            )
            _log.warning("%s", result["maj_note"])
    if records:
        result["records"] = recs
    return result
