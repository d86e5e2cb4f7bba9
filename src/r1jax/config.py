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
from r1jax.errors import ConfigError
from r1jax.models.lora import LoraConfig
from r1jax.models.transformer import ModelConfig
from r1jax.rewards.bridge import Placement
from r1jax.rewards.composite import EFFICIENCY_MODES, RewardConfig
from r1jax.rewards.noise import RewardNoise
from r1jax.configs import arith_tiny
from r1jax.rl import ALGORITHMS, RLHyper
from r1jax.rl.losses import AGGREGATION_MODES
from r1jax.tasks import get_task, import_task_module, sample_levels


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


def _require(ok: bool, field: str, value, fix: str):
    if not ok:
        raise ConfigError(f"config.{field}={value!r} is invalid: {fix}")


def _pos_int(c, field):
    v = _get(c, field)
    _require(
        isinstance(v, int) and not isinstance(v, bool) and v > 0,
        field,
        v,
        "must be a positive integer",
    )
    return v


def _nonneg(c, field):
    v = _get(c, field)
    _require(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
        field,
        v,
        "must be a finite number >= 0",
    )
    return float(v)


def _choice(c, field, options):
    v = _get(c, field)
    _require(v in options, field, v, f"must be one of {list(options)}")
    return v


def _get(c, dotted):
    for part in dotted.split("."):
        if part not in c:
            raise ConfigError(f"config.{dotted} is missing: add it to the experiment config")
        c = c[part]
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks every field the trainer reads; raises ConfigError on the first bad one.
    Missing fields take the defaults (`complete`)."""
    c = complete(c)
    for f in (
        "max_prompt_len",
        "max_new_tokens",
        "sft.rows",
        "sft.max_examples",
        "rl.iterations",
        "rl.prompts_per_iter",
        "rl.group_size",
        "rl.epochs",
        "rl.num_minibatches",
        "rl.value_epochs",
        "eval.num_problems",
        "eval.batch_size",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "model.d_model",
        "model.n_layers",
        "model.n_heads",
        "model.n_kv_heads",
        "model.head_dim",
        "model.mlp_dim",
    ):
        _pos_int(c, f)
    _require(
        isinstance(c.sft.steps, int) and c.sft.steps >= 0,
        "sft.steps",
        c.sft.steps,
        "must be an integer >= 0 (0 skips SFT)",
    )
    for f in (
        "sft.lr",
        "rl.policy_lr",
        "rl.value_lr",
        "rl.temperature",
        "rl.eps_low",
        "rl.eps_high",
        "rl.kl_coef",
        "rl.entropy_coef",
        "rl.vf_clip",
        "rl.clip_target",
        "rl.clip_rate",
        "rl.eps_min",
        "rl.eps_max",
        "rl.priority_alpha",
        "reward.deadline_s",
        "sft.grad_clip",
        "rl.grad_clip",
    ):
        _nonneg(c, f)
    _require(c.sft.lr > 0, "sft.lr", c.sft.lr, "must be > 0")
    _require(
        c.rl.temperature > 0,
        "rl.temperature",
        c.rl.temperature,
        "must be > 0 for RL sampling (greedy decoding is only used for evaluation)",
    )
    _require(0.0 <= c.rl.gamma <= 1.0, "rl.gamma", c.rl.gamma, "must lie in [0, 1]")
    _require(0.0 <= c.rl.lam <= 1.0, "rl.lam", c.rl.lam, "must lie in [0, 1]")
    _require(
        0.0 < c.rl.top_entropy_q <= 1.0,
        "rl.top_entropy_q",
        c.rl.top_entropy_q,
        "must lie in (0, 1]; 1 uses every token",
    )
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
    for f in ("noise_std", "perturb_prob"):
        v = c.reward[f]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        _require(
            ok and 0.0 <= v and (f == "noise_std" or v <= 1.0),
            f"reward.{f}",
            v,
            "must be a number >= 0 (a probability in [0, 1] for perturb_prob); 0 switches it off",
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
    if "parallelism" in c:
        _choice(c, "parallelism", ("jit", "pmap"))
    if c.parallelism == "pmap":
        m = c.mesh
        _require(
            m.fsdp == 1 and m.tensor == 1,
            "parallelism",
            "pmap",
            "the pmap path is data parallel only: set mesh.fsdp=1 and mesh.tensor=1, or use "
            "parallelism='jit' for FSDP / tensor parallelism",
        )
    _choice(c, "rl.algo", tuple(ALGORITHMS))
    _choice(c, "rl.kl_estimator", ("k1", "k2", "k3"))
    _choice(c, "rl.loss_agg", AGGREGATION_MODES)
    _choice(c, "rl.clip_signal", ("kl", "clip_frac"))
    _choice(c, "reward.efficiency_mode", EFFICIENCY_MODES)
    _require(
        isinstance(c.reward.num_workers, int) and c.reward.num_workers >= 0,
        "reward.num_workers",
        c.reward.num_workers,
        "must be an integer >= 0 (0 = inline)",
    )
    n = c.rl.prompts_per_iter * c.rl.group_size
    _require(
        n % c.rl.num_minibatches == 0,
        "rl.num_minibatches",
        c.rl.num_minibatches,
        f"must divide prompts_per_iter * group_size = {n}",
    )
    buckets = c.rl.length_buckets
    _require(
        isinstance(buckets, int) and not isinstance(buckets, bool) and buckets >= 1,
        "rl.length_buckets",
        buckets,
        "must be a positive integer: the learner is compiled for that many completion "
        "lengths up to max_new_tokens (1 = always all of them)",
    )
    chunk = c.rl.logp_chunk
    if isinstance(chunk, int) and chunk > 0:
        per = max(chunk // c.rl.group_size, 1)  # whole groups of the shared prompt per pass
        _require(
            c.rl.prompts_per_iter % per == 0,
            "rl.logp_chunk",
            chunk,
            f"= {per} prompt group(s) of group_size={c.rl.group_size} per pass must divide "
            f"prompts_per_iter={c.rl.prompts_per_iter}: use a multiple of group_size "
            "(0 = all rows in one pass)",
        )
    for part, rows, what in (
        ("rl", n // c.rl.num_minibatches, "completions per minibatch"),
        ("sft", c.sft.rows, "sft.rows"),
    ):
        acc = c[part].grad_accum
        _require(
            isinstance(acc, int) and not isinstance(acc, bool) and acc > 0 and rows % acc == 0,
            f"{part}.grad_accum",
            acc,
            f"must be a positive integer dividing the {rows} {what} (1 = no accumulation)",
        )
    pretrained = c.pretrained
    _require(
        isinstance(pretrained, str),
        "pretrained",
        pretrained,
        "must be a Hugging Face checkpoint directory (config.json, *.safetensors, "
        "tokenizer.json) or '' for the config's own char-level model",
    )
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
    for f in ("rl.kl_target", "rl.kl_horizon"):
        v = _get(c, f)
        _require(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
            f,
            v,
            "must be a finite number > 0 (the adaptive KL controller's target / horizon)",
        )
    try:
        import_task_module(c.task_module)  # a user's task registers itself on import
        task = get_task(c.task, **dict(c.task_kwargs))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.task={c.task!r} / config.task_kwargs: {e}") from e
    if c.rl.level_weights:
        try:
            sample_levels(task, np.random.default_rng(0), 1, tuple(c.rl.level_weights))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config.rl.level_weights={tuple(c.rl.level_weights)!r}: {e}") from e
    lora_config(c)
    try:
        reward_config(c)
        reward_placement(c)
        reward_noise(c)
        model_config(c, 128)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


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
