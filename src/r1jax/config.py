"""Experiment configs: their defaults, validation and conversion into typed objects.

One source of defaults: `complete(c)` fills every field a config leaves out from the
embedded default (`r1jax/configs/arith_tiny.py`, where each field has its comment), so
configs written by older versions (a run's `config.json`) and short user configs work,
and the trainer reads every field directly. One place for validation: `validate(c)`;
every check raises `ConfigError` naming the field, the bad value and the fix, which the
command-line entry points turn into exit code 2.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections
import numpy as np

from r1jax import parallel
from r1jax.configs import arith_tiny
from r1jax.errors import ConfigError
from r1jax.models.lora import LoraConfig
from r1jax.models.transformer import ATTENTION, ModelConfig
from r1jax.rewards.bridge import Placement
from r1jax.rewards.composite import EFFICIENCY_MODES, RewardConfig
from r1jax.rewards.noise import RewardNoise
from r1jax.rl import ALGORITHMS, RLHyper
from r1jax.rl.losses import AGGREGATION_MODES
from r1jax.tasks import check_task, get_task, import_task_module, sample_levels


def _merge(defaults: dict, given: dict) -> dict:
    out = dict(defaults)
    for k, v in given.items():
        if v is None and isinstance(out.get(k), dict):
            continue  # a section given as None: the default section (e.g. lora = None)
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "task_kwargs":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def complete(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`c` with every missing field taken from the embedded default (module doc); a new
    ConfigDict (locked like `c`), `c` itself untouched. `task_kwargs` belong to the task:
    they are the given ones, or the default's only for the default's task."""
    defaults = arith_tiny.get_config().to_dict()
    given = c.to_dict()
    if "task_kwargs" not in given and given.get("task", defaults["task"]) != defaults["task"]:
        given["task_kwargs"] = {}
    full = ml_collections.ConfigDict(_merge(defaults, given))
    if c.is_locked:
        full.lock()
    return full


def drop_unknown(given: dict) -> tuple[dict, list[str]]:
    """`given` (a config as a dict, e.g. an older run's `config.json`) without the fields
    the embedded default does not have, and their dotted names (`task_kwargs` belong to
    the task and are kept)."""
    defaults = arith_tiny.get_config().to_dict()
    dropped = []

    def keep(d, ref, prefix):
        out = {}
        for k, v in d.items():
            if k not in ref:
                dropped.append(prefix + k)
            elif isinstance(v, dict) and isinstance(ref[k], dict) and k != "task_kwargs":
                out[k] = keep(v, ref[k], f"{prefix}{k}.")
            else:
                out[k] = v
        return out

    return keep(given, defaults, ""), dropped


def _require(ok: bool, field: str, value, fix: str):
    if not ok:
        raise ConfigError(f"config.{field}={value!r} is invalid: {fix}", field=field)


def _choice(c, field, options):
    v = _get(c, field)
    _require(v in options, field, v, f"must be one of {list(options)}")
    return v


def _get(c, dotted):
    for part in dotted.split("."):
        if part not in c:
            raise ConfigError(
                f"config.{dotted} is missing: add it to the experiment config", field=dotted
            )
        c = c[part]
    return c


_INF = math.inf
# Every numeric field of the default config and its range: (low, high, low_open, note).
# Integers are the fields whose default is an int; `note` ends the message.
_RANGES = {
    "seed": (0, _INF, False, ""),
    "max_prompt_len": (1, _INF, False, ""),
    "max_new_tokens": (1, _INF, False, ""),
    "model.d_model": (1, _INF, False, ""),
    "model.n_layers": (1, _INF, False, ""),
    "model.n_heads": (1, _INF, False, ""),
    "model.n_kv_heads": (1, _INF, False, ""),
    "model.head_dim": (1, _INF, False, ""),
    "model.mlp_dim": (1, _INF, False, ""),
    "model.rope_theta": (0, _INF, True, ""),
    "lora.rank": (0, _INF, False, " (0 = full-parameter training)"),
    "lora.alpha": (0, _INF, True, ""),
    "value_model.n_layers": (1, _INF, False, ""),
    "sft.steps": (0, _INF, False, " (0 skips SFT)"),
    "sft.rows": (1, _INF, False, ""),
    "sft.max_examples": (1, _INF, False, ""),
    "sft.lr": (0, _INF, True, ""),
    "sft.warmup": (0, _INF, False, " (0 = no warmup)"),
    "sft.weight_decay": (0, _INF, False, " (0 = none)"),
    "sft.grad_clip": (0, _INF, False, ""),
    "sft.grad_accum": (1, _INF, False, " (1 = no accumulation)"),
    "sft.logit_chunk": (0, _INF, False, " (0 = whole logits)"),
    "rl.iterations": (1, _INF, False, ""),
    "rl.prompts_per_iter": (1, _INF, False, ""),
    "rl.group_size": (1, _INF, False, ""),
    "rl.temperature": (0, _INF, True, " (greedy decoding is only used for evaluation)"),
    "rl.epochs": (1, _INF, False, ""),
    "rl.num_minibatches": (1, _INF, False, ""),
    "rl.grad_accum": (1, _INF, False, " (1 = no accumulation)"),
    "rl.length_buckets": (1, _INF, False, " (1 = always all completion positions)"),
    "rl.logp_chunk": (0, _INF, False, " (0 = the learner's microbatch shape)"),
    "rl.logit_chunk": (0, _INF, False, " (0 = all positions in one pass)"),
    "rl.policy_lr": (0, _INF, True, ""),
    "rl.value_lr": (0, _INF, False, " (0 freezes the critic)"),
    "rl.value_epochs": (1, _INF, False, ""),
    "rl.warmup": (0, _INF, False, " (0 = no warmup)"),
    "rl.weight_decay": (0, _INF, False, " (0 = none)"),
    "rl.grad_clip": (0, _INF, False, ""),
    "rl.gamma": (0, 1, False, ""),
    "rl.lam": (0, 1, False, ""),
    "rl.vf_clip": (0, _INF, False, ""),
    "rl.eps_low": (0, 1, False, ""),
    "rl.eps_high": (0, _INF, False, ""),
    "rl.clip_target": (0, _INF, True, ""),
    "rl.clip_rate": (0, 1, True, ""),
    "rl.eps_min": (0, 1, False, ""),
    "rl.eps_max": (0, _INF, True, ""),
    "rl.kl_coef": (0, _INF, False, " (0 = no KL penalty)"),
    "rl.kl_target": (0, _INF, True, ""),
    "rl.kl_horizon": (0, _INF, True, ""),
    "rl.entropy_coef": (0, _INF, False, " (0 = no entropy bonus)"),
    "rl.entropy_target": (0, _INF, False, " (nats)"),
    "rl.entropy_lr": (0, _INF, True, ""),
    "rl.top_entropy_q": (0, 1, True, " (1 uses every token)"),
    "rl.priority_alpha": (0, _INF, False, ""),
    "reward.w_correctness": (0, _INF, False, ""),
    "reward.w_efficiency": (0, _INF, False, ""),
    "reward.w_novelty": (0, _INF, False, ""),
    "reward.w_format": (0, _INF, False, ""),
    "reward.w_subgoal": (0, _INF, False, ""),
    "reward.step_weight": (0, 1, False, ""),
    "reward.efficiency_decay": (0, 1, True, ""),
    "reward.dense_mix": (0, 1, False, " (0 = all reward on the last token)"),
    "reward.step_shaping": (0, _INF, False, " (0 = off)"),
    "reward.noise_std": (0, _INF, False, " (0 = off)"),
    "reward.perturb_prob": (0, 1, False, " (0 = off)"),
    "reward.num_workers": (0, _INF, False, " (0 = verify inline)"),
    "reward.deadline_s": (0, _INF, True, " (seconds per item)"),
    "eval.num_problems": (1, _INF, False, ""),
    "eval.batch_size": (1, _INF, False, ""),
    "eval.seed": (0, _INF, False, ""),
    "eval.every": (0, _INF, False, " (0 = only at the ends)"),
    "eval.curve_every": (0, _INF, False, " (0 = no learning curve)"),
    "eval.curve_problems": (1, _INF, False, ""),
    "mesh.fsdp": (1, _INF, False, ""),
    "mesh.tensor": (1, _INF, False, ""),
    "log_every": (1, _INF, False, ""),
    "checkpoint_every": (1, _INF, False, ""),
    "keep_checkpoints": (1, _INF, False, ""),
}


def leaves(d: dict, prefix: str = ""):
    """(dotted field, value) of every leaf of a config dict (`task_kwargs` is one leaf)."""
    for k, v in d.items():
        if isinstance(v, dict) and k != "task_kwargs":
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _typename(v) -> str:
    if isinstance(v, bool):
        return "True or False"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (tuple, list)):
        return "a tuple"
    return type(v).__name__


def _type_ok(default, v) -> bool:
    if isinstance(default, bool):
        return isinstance(v, bool)
    if isinstance(default, int):
        return isinstance(v, int) and not isinstance(v, bool)
    if isinstance(default, float):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if isinstance(default, str):
        return isinstance(v, str)
    if isinstance(default, (tuple, list)):
        return isinstance(v, (tuple, list))
    return True


def _check_fields(c, given: dict) -> None:
    """Unknown fields (with the nearest known name) and each field's type, against the
    embedded default; then each numeric field's range (`_RANGES`)."""
    import difflib

    defaults = dict(leaves(arith_tiny.get_config().to_dict()))
    for name, v in leaves(given):
        if name in defaults:
            continue
        if isinstance(v, dict) or name == "lora" or name == "value_model":
            continue  # a section given as None / a dict field: checked below
        near = difflib.get_close_matches(name, list(defaults), n=1)
        hint = f": did you mean config.{near[0]}?" if near else ""
        raise ConfigError(
            f"config.{name} is not a config field{hint} (the fields and their meaning are "
            f"in {arith_tiny.__file__})",
            field=name,
        )
    full = dict(leaves(c.to_dict()))
    for name, default in defaults.items():
        v = full.get(name)
        if not _type_ok(default, v):
            raise ConfigError(
                f"config.{name}={v!r} is invalid: must be {_typename(default)} "
                f"(the default is {default!r})",
                field=name,
            )
    for name, (lo, hi, lo_open, note) in _RANGES.items():
        v = full[name]
        integer = isinstance(defaults[name], int)
        ok = (v > lo if lo_open else v >= lo) and v <= hi
        if ok:
            continue
        kind = "an integer" if integer else "a number"
        if hi == _INF:
            want = f"{kind} {'>' if lo_open else '>='} {lo}"
        else:
            want = f"{kind} in {'(' if lo_open else '['}{lo}, {hi}]"
        raise ConfigError(f"config.{name}={v!r} is invalid: must be {want}{note}", field=name)
    data = full["mesh.data"]
    _require(
        data == -1 or data >= 1,
        "mesh.data",
        data,
        "must be -1 (the devices left by fsdp x tensor) or a positive integer",
    )


# Options that do nothing in some settings: (field, inert(c), why). Setting one away from
# its default there is an error, so nothing a user asks for is silently ignored.
_CRITIC_FREE = lambda c: not ALGORITHMS[c.rl.algo].critic
_INERT = (
    ("reward.dense_mix", _CRITIC_FREE, "token-level rewards need a critic (rl.algo='ppo')"),
    ("reward.step_shaping", _CRITIC_FREE, "token-level rewards need a critic (rl.algo='ppo')"),
    ("rl.value_lr", _CRITIC_FREE, "there is no critic to train"),
    ("rl.value_epochs", _CRITIC_FREE, "there is no critic to train"),
    ("rl.vf_clip", _CRITIC_FREE, "there is no critic to train"),
    ("rl.gamma", _CRITIC_FREE, "group-relative advantages use no discount (GAE is PPO's)"),
    ("rl.lam", _CRITIC_FREE, "group-relative advantages use no GAE"),
    ("value_model.n_layers", _CRITIC_FREE, "there is no critic"),
    ("rl.grpo_scale_by_std", lambda c: c.rl.algo != "grpo", "only rl.algo='grpo' reads it"),
    ("rl.clip_signal", lambda c: not c.rl.adaptive_clip, "it needs rl.adaptive_clip=True"),
    ("rl.clip_target", lambda c: not c.rl.adaptive_clip, "it needs rl.adaptive_clip=True"),
    ("rl.clip_rate", lambda c: not c.rl.adaptive_clip, "it needs rl.adaptive_clip=True"),
    ("rl.eps_min", lambda c: not c.rl.adaptive_clip, "it needs rl.adaptive_clip=True"),
    ("rl.eps_max", lambda c: not c.rl.adaptive_clip, "it needs rl.adaptive_clip=True"),
    ("rl.kl_target", lambda c: not c.rl.adaptive_kl, "it needs rl.adaptive_kl=True"),
    ("rl.kl_horizon", lambda c: not c.rl.adaptive_kl, "it needs rl.adaptive_kl=True"),
    ("rl.entropy_target", lambda c: not c.rl.adaptive_entropy, "it needs rl.adaptive_entropy=True"),
    ("rl.entropy_lr", lambda c: not c.rl.adaptive_entropy, "it needs rl.adaptive_entropy=True"),
    ("rl.priority_alpha", lambda c: not c.rl.prioritized, "it needs rl.prioritized=True"),
    (
        "reward.efficiency_decay",
        lambda c: c.reward.efficiency_mode != "time_decay",
        "it needs reward.efficiency_mode='time_decay'",
    ),
    ("lora.alpha", lambda c: not c.lora.rank, "it needs lora.rank > 0"),
    ("lora.targets", lambda c: not c.lora.rank, "it needs lora.rank > 0"),
    (
        "reward.deadline_s",
        lambda c: c.reward.num_workers == 0,
        "inline verification (reward.num_workers=0) has no deadline",
    ),
    ("eval.curve_problems", lambda c: not c.eval.curve_every, "it needs eval.curve_every > 0"),
) + tuple(
    (
        f"model.{f}",
        lambda c: bool(c.pretrained),
        "the model's shape comes from config.pretrained's config.json",
    )
    for f in ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_dim", "rope_theta")
)


def inert_fields(c) -> list[tuple[str, object, object, str]]:
    """``(field, value, default, why)`` of each option of the complete config ``c`` that
    differs from the embedded default yet does nothing under ``c``'s other settings
    (``_INERT``), in ``_INERT``'s order."""
    defaults = dict(leaves(arith_tiny.get_config().to_dict()))
    out = []
    for field, inert, why in _INERT:
        v = _get(c, field)
        if v != defaults[field] and inert(c):
            out.append((field, v, defaults[field], why))
    return out


def _check_inert(c) -> None:
    unused = inert_fields(c)
    if unused:
        field, v, default, why = unused[0]
        raise ConfigError(
            f"config.{field}={v!r} does nothing here: {why}; drop it or set it back to {default!r}",
            field=field,
        )


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks every field the trainer reads; raises ConfigError on the first bad one.
    Missing fields take the defaults (`complete`); unknown fields, wrong types, values out
    of range and options that do nothing under the chosen settings are errors."""
    given = c.to_dict()
    c = complete(c)
    _check_fields(c, given)
    _choice(c, "rl.algo", tuple(ALGORITHMS))
    _choice(c, "rl.kl_estimator", ("k1", "k2", "k3"))
    _choice(c, "rl.loss_agg", AGGREGATION_MODES)
    _choice(c, "rl.clip_signal", ("kl", "clip_frac"))
    _choice(c, "reward.efficiency_mode", EFFICIENCY_MODES)
    _choice(c, "model.dtype", ("float32", "bfloat16", "float16"))
    _choice(c, "model.remat", ("none", "full", "dots", "dots_saveable"))
    _choice(c, "model.attention", ATTENTION)
    _choice(c, "model.layer_loop", ("auto", "unroll", "scan"))
    _choice(c, "parallelism", ("jit", "pmap"))
    _check_inert(c)
    _require(
        c.rl.entropy_coef > 0 or not c.rl.adaptive_entropy,
        "rl.entropy_coef",
        c.rl.entropy_coef,
        "must be > 0 with rl.adaptive_entropy=True (the controller works on log β_H); "
        "0 switches the entropy bonus off only with adaptive_entropy=False",
    )
    _require(
        c.rl.eps_min <= c.rl.eps_max,
        "rl.eps_min",
        c.rl.eps_min,
        f"must not exceed rl.eps_max={c.rl.eps_max}",
    )
    shaping = c.reward.step_shaping
    _require(
        not shaping or c.rl.gamma == 1.0,
        "reward.step_shaping",
        shaping,
        "potential-based step shaping assumes rl.gamma=1 (the shaped returns then differ "
        "by a constant); set rl.gamma=1.0 or reward.step_shaping=0",
    )
    _require(
        c.reward.verify_where in ("auto", "per_shard", "global"),
        "reward.verify_where",
        c.reward.verify_where,
        "must be 'auto' (per shard when there are several processes), 'per_shard' or 'global'",
    )
    _require(
        c.reward.host_call in ("split", "io_callback"),
        "reward.host_call",
        c.reward.host_call,
        "must be 'split' (rollout and learner as two cached programs, the host reward "
        "between them) or 'io_callback' (one program calling the host reward)",
    )
    if c.parallelism == "pmap":
        m = c.mesh
        _require(
            m.fsdp == 1 and m.tensor == 1,
            "parallelism",
            "pmap",
            "the pmap path is data parallel only: set mesh.fsdp=1 and mesh.tensor=1, or use "
            "parallelism='jit' for FSDP / tensor parallelism",
        )
    n = c.rl.prompts_per_iter * c.rl.group_size
    _require(
        n % c.rl.num_minibatches == 0,
        "rl.num_minibatches",
        c.rl.num_minibatches,
        f"must divide prompts_per_iter * group_size = {n}",
    )
    chunk = c.rl.logp_chunk
    if chunk > 0:
        per = max(chunk // c.rl.group_size, 1)  # whole groups of the shared prompt per pass
        _require(
            c.rl.prompts_per_iter % per == 0,
            "rl.logp_chunk",
            chunk,
            f"= {per} prompt group(s) of group_size={c.rl.group_size} per pass must divide "
            f"prompts_per_iter={c.rl.prompts_per_iter}: use a multiple of group_size "
            "(0 = the learner's microbatch shape)",
        )
    for part, rows, what in (
        ("rl", n // c.rl.num_minibatches, "completions per minibatch"),
        ("sft", c.sft.rows, "sft.rows"),
    ):
        acc = c[part].grad_accum
        _require(
            rows % acc == 0,
            f"{part}.grad_accum",
            acc,
            f"must be a positive integer dividing the {rows} {what} (1 = no accumulation)",
        )
    pretrained = c.pretrained
    _require(
        bool(pretrained) or not c.pretrained_required,
        "pretrained",
        pretrained,
        "this config trains a pretrained model: pass --config.pretrained=DIR, a Hugging Face "
        "Qwen2/Llama directory (config.json, *.safetensors, tokenizer.json)",
    )
    _require(
        not c.chat or bool(pretrained),
        "chat",
        c.chat,
        "chat templates come with a Hugging Face tokenizer: set config.pretrained=DIR, or chat=False",
    )
    if not ALGORITHMS[c.rl.algo].critic:
        _require(
            c.rl.group_size >= 2,
            "rl.group_size",
            c.rl.group_size,
            f"{c.rl.algo} (group-relative advantages) needs at least 2 samples per prompt",
        )
    try:
        import_task_module(c.task_module)  # a user's task registers itself on import
    except ValueError as e:  # names the module and what went wrong
        raise ConfigError(f"config.task_module: {e}", field="task_module") from e
    try:
        task = get_task(c.task, **dict(c.task_kwargs))
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"config.task={c.task!r} / config.task_kwargs: {e}: set config.task to a "
            "registered task (config.task_module registers your own) and config.task_kwargs "
            "to its arguments",
            field="task",
        ) from e
    try:
        check_task(task, need_solution=c.sft.steps > 0)
    except ValueError as e:
        raise ConfigError(str(e), field="task") from e
    if c.rl.level_weights:
        try:
            sample_levels(task, np.random.default_rng(0), 1, tuple(c.rl.level_weights))
        except (ValueError, TypeError) as e:
            raise ConfigError(
                f"config.rl.level_weights={tuple(c.rl.level_weights)!r} is invalid ({e}): give "
                f"one weight >= 0 per level of the task, e.g. {_even_weights(task)}, or () "
                "for the task's own mix",
                field="rl.level_weights",
            ) from e
    lora_config(c)
    try:
        reward_config(c)
        reward_placement(c)
        reward_noise(c)
        model_config(c, 128)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def _even_weights(task) -> str:
    """An example of level weights for ``task``: one equal weight per level."""
    n = len(task.level_weights)
    return "(" + ", ".join([f"{1 / n:.2g}"] * n) + ("," if n == 1 else "") + ")"


def model_config(c, vocab_size: int, value: bool = False) -> ModelConfig:
    fields = dict(c.model)
    if value:
        fields.update(dict(c.value_model))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(fields) - known
    if unknown:
        raise ConfigError(
            f"config.model has unknown fields {sorted(unknown)}; known: {sorted(known)}"
        )
    return ModelConfig(vocab_size=vocab_size, **fields)


def reward_config(c) -> RewardConfig:
    r = c.reward
    return RewardConfig(
        w_correctness=r.w_correctness,
        w_efficiency=r.w_efficiency,
        w_novelty=r.w_novelty,
        w_format=r.w_format,
        w_subgoal=r.w_subgoal,
        step_weight=r.step_weight,
        efficiency_mode=r.efficiency_mode,
        decay=r.efficiency_decay,
        efficiency_requires_correct=r.efficiency_requires_correct,
        step_credit_requires_correct=r.step_credit_requires_correct,
    )


def make_mesh(c):
    """The ('data', 'fsdp', 'tensor') mesh of ``c.mesh`` (fsdp/tensor default to 1)."""
    m = c.mesh
    return parallel.make_mesh(m.data, m.fsdp, m.tensor)


def reward_placement(c) -> Placement:
    """Where PPO's rewards land on the tokens (``rewards.bridge.Placement``)."""
    r = c.reward
    return Placement(dense_mix=r.dense_mix, step_shaping=r.step_shaping)


def reward_noise(c) -> RewardNoise:
    """Reward-hacking defence by noise (``rewards.noise.RewardNoise``), seeded by c.seed."""
    r = c.reward
    return RewardNoise(reward_std=r.noise_std, perturb_prob=r.perturb_prob, seed=c.seed)


def lora_config(c):
    """`models.lora.LoraConfig` of `c.lora`, or None when LoRA is off (rank 0 / absent)."""
    lo = c.lora
    if not lo.rank:
        return None
    targets = lo.targets
    if isinstance(targets, str):  # "all" or "q_proj,v_proj" (one flag value)
        targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    targets = tuple(targets)
    try:
        return LoraConfig(rank=lo.rank, alpha=float(lo.alpha), targets=targets)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.lora: {e}") from e


def rl_hyper(c, eos_id: int, pad_id: int) -> RLHyper:
    """RLHyper from `c.rl` (same field names) plus the shared sequence/token settings
    (`eos_id`/`pad_id`: the tokenizer's)."""
    shared = dict(
        max_new_tokens=c.max_new_tokens,
        eos_id=eos_id,
        pad_id=pad_id,
        entropy_bonus=c.rl.entropy_coef > 0,
    )
    fields = [f.name for f in dataclasses.fields(RLHyper) if f.name not in shared]
    return RLHyper(**{name: c.rl[name] for name in fields}, **shared)
