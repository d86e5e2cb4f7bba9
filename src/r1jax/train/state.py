"""The train state: one pytree holding everything a resumed run needs.

Parameters are plain nested dicts (`nnx.to_pure_dict`), so optax, Orbax and sharding
see ordinary arrays; the NNX graph definitions are static and bound with
`functools.partial` before `jax.jit`. The same state type serves SFT and RL, so one
checkpoint format covers both phases.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from r1jax.models.lora import LoraConfig, apply_lora
from r1jax.models.transformer import CausalLM, ModelConfig, ValueModel
from r1jax.rl.controllers import (
    ClipState,
    EntropyCoefState,
    KLCoefState,
    init_clip,
    init_entropy_coef,
    init_kl_coef,
)
from r1jax.rl.ewc import penalty as ewc_penalty


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # global step: SFT steps, then RL iterations (int32 scalar)
    rng: jax.Array  # base PRNG key (uint32[2]); per-step keys use fold_in(rng, step)
    policy: Any  # policy params (pure dict)
    policy_opt: Any  # optax state of the policy optimizer
    value: Any  # critic params (pure dict); {} under GRPO (no critic), unused by SFT
    value_opt: Any  # optax state of the critic optimizer (its own time scale)
    ref: Any  # frozen reference policy (the SFT checkpoint) for the KL term
    clip: ClipState  # adaptive-clipping controller (ε_low, ε_high)
    ent: EntropyCoefState  # adaptive entropy-coefficient controller
    kl: KLCoefState  # KL coefficient β of the KL(π‖π_ref) term (adaptive with rl.adaptive_kl)
    skipped: jax.Array  # number of updates skipped because of NaN/Inf (int32 scalar)
    # With LoRA: the frozen base weights; `policy`, `ref` and `policy_opt` then hold only
    # adapters (`models.lora`). {} without LoRA. Checkpoints leave the base out.
    base: Any = dataclasses.field(default_factory=dict)
    # Continual learning: the EWC state of earlier tasks (`rl.ewc.EWCState`: Fisher,
    # anchor, λ over the trainable `policy` params), whose penalty the SFT and RL steps
    # add to the loss (metric `ewc_penalty`). {} = no EWC. Saved in checkpoints.
    ewc: Any = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Graphs:
    """Static NNX graph definitions, bound into the jitted steps."""

    policy: Any
    value: Any  # None without a critic (GRPO)
    model_cfg: ModelConfig
    lora: LoraConfig | None = None  # policy params are LoRA adapters over a frozen base


def policy_params(graphs: Graphs, params, base):
    """The policy's full parameters: `params` as they are, or with LoRA the frozen `base`
    with the adapters `params` applied (`models.lora.apply_lora`)."""
    if graphs.lora is None:
        return params
    return apply_lora(base, params, graphs.lora)


def policy_model(graphs: Graphs, params, base):
    """The policy module for `params` (adapters over `base` with LoRA)."""
    return nnx.merge(graphs.policy, policy_params(graphs, params, base))


def make_optimizer(
    lr: float, *, warmup: int, total: int, weight_decay: float, grad_clip: float, b2: float = 0.99
) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay; the same chain structure for every phase."""
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(total, warmup + 1), end_value=lr * 0.1
    )
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(sched, b1=0.9, b2=b2, weight_decay=weight_decay),
    )


def init_params(model_cfg: ModelConfig, value_cfg: ModelConfig | None, seed: int):
    """(policy_params, value_params) as pure dicts: a pure function of the seed, meant to
    run under `jax.jit(..., out_shardings=...)` so each device creates only its shards
    (a large model is never whole on one device). Bitwise equal to the eager init.
    `value_cfg=None` (GRPO: no critic) gives empty value params `{}`."""
    _, ps = nnx.split(CausalLM(model_cfg, rngs=nnx.Rngs(seed)))
    if value_cfg is None:
        return nnx.to_pure_dict(ps), {}
    _, vs = nnx.split(ValueModel(value_cfg, rngs=nnx.Rngs(seed + 1)))
    return nnx.to_pure_dict(ps), nnx.to_pure_dict(vs)


def init_graphs(model_cfg: ModelConfig, value_cfg: ModelConfig | None) -> Graphs:
    """The models' static structure, built abstractly (no parameter is allocated);
    `value_cfg=None`: no critic (`Graphs.value` is None)."""
    pg = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(model_cfg, rngs=nnx.Rngs(0))))
    vg = None
    if value_cfg is not None:
        vg = nnx.graphdef(nnx.eval_shape(lambda: ValueModel(value_cfg, rngs=nnx.Rngs(0))))
    return Graphs(pg, vg, model_cfg)


def init_models(model_cfg: ModelConfig, value_cfg: ModelConfig, seed: int):
    """Builds the policy and critic eagerly; returns (Graphs, policy_params, value_params)."""
    policy, value = init_params(model_cfg, value_cfg, seed)
    return init_graphs(model_cfg, value_cfg), policy, value


def create_state(
    policy,
    value,
    policy_tx,
    value_tx,
    *,
    seed: int,
    eps_low: float,
    eps_high: float,
    entropy_coef: float,
    kl_coef: float,
    base=None,
) -> TrainState:
    """The initial state. With LoRA, `policy` is the adapters and `base` the frozen
    weights they adapt (the reference copy is then adapters too)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.PRNGKey(seed),
        policy=policy,
        policy_opt=policy_tx.init(policy),
        value=value,
        value_opt=value_tx.init(value),
        ref=jax.tree.map(jnp.copy, policy),
        clip=init_clip(eps_low, eps_high),
        ent=init_entropy_coef(entropy_coef),
        kl=init_kl_coef(kl_coef),
        skipped=jnp.zeros((), jnp.int32),
        base={} if base is None else base,
    )


def start_rl(state: TrainState, policy_tx, value_tx) -> TrainState:
    """Turns an SFT-finished state into the RL start: fresh optimizers, ref = current policy."""
    return state.replace(
        policy_opt=policy_tx.init(state.policy),
        value_opt=value_tx.init(state.value),
        ref=jax.tree.map(jnp.copy, state.policy),
    )


def add_ewc_penalty(ewc, params, loss, grads, aux: dict):
    """`loss` and `grads` (global, after any `psum`) with the EWC penalty of `ewc`
    (`TrainState.ewc`) at the trainable `params` added, and `aux["ewc_penalty"]`;
    unchanged without EWC (`{}`). The penalty depends on the params only, which every
    shard holds whole or sharded alike, so it is added once, not per shard."""
    if not jax.tree.leaves(ewc):
        return loss, grads, aux
    pen, pen_grads = jax.value_and_grad(ewc_penalty)(params, ewc)
    grads = jax.tree.map(jnp.add, grads, pen_grads)
    return loss + pen, grads, dict(aux, ewc_penalty=pen)


def guarded_update(tx, grads, opt_state, params, loss):
    """One optax step that is skipped when the loss or a gradient is NaN/Inf.

    Returns (params, opt_state, skipped) with `skipped` an int32 0/1 to add to the
    state's skip counter (convention: non-finite updates are skipped, counted, logged).
    """
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = jax.tree.map(jnp.add, params, updates)
    leaves = jax.tree.leaves(loss) + jax.tree.leaves(grads)
    # The number of non-finite values, through a square root: XLA duplicates cheap scalar
    # ops into every consumer, so a flag built from N leaves by `and`s (or adds) was
    # recomputed inside each of the 3N selects below (params and both Adam moments), N^2
    # ops: 250k for Qwen2.5-0.5B's 290 leaves, most of the RL step's compile time on CPU.
    # A square root is not duplicated: the count is computed once.
    bad = sum(jnp.sum(~jnp.isfinite(x), dtype=jnp.float32) for x in leaves)
    ok = jnp.sqrt(bad) == 0
    params, opt_state = jax.tree.map(
        lambda n, o: jnp.where(ok, n, o), (new_params, new_opt), (params, opt_state)
    )
    return params, opt_state, (~ok).astype(jnp.int32)
