"""Static RL hyper-parameters of one RL iteration (built from `config.rl`, bound with
`functools.partial` into the jitted step; field names are the config's)."""

from __future__ import annotations

import dataclasses

__all__ = ["RLHyper"]


@dataclasses.dataclass(frozen=True)
class RLHyper:
    """Static RL hyper-parameters (`config.rl_hyper` builds them from a config; no field
    has a default here: the defaults are the config's, `configs/arith_tiny.py`)."""

    algo: str  # a key of rl.ALGORITHMS: "ppo" (GAE + critic), "grpo", "dr_grpo"
    group_size: int  # G, samples per prompt
    max_new_tokens: int  # T
    temperature: float  # sampling temperature τ (learner uses the same τ)
    epochs: int  # K, policy epochs per iteration
    num_minibatches: int  # M, minibatches per epoch
    value_epochs: int  # critic epochs per iteration (two time scales)
    gamma: float  # γ
    lam: float  # λ (GAE)
    vf_clip: float  # value clip range
    kl_coef: float  # β, weight of the KL(π‖π_ref) loss term (initial β with adaptive_kl)
    kl_estimator: str  # "k1" | "k2" | "k3"
    loss_agg: str  # token aggregation mode, see rl.aggregate
    grpo_scale_by_std: bool  # GRPO: divide by the group's std (False = Dr. GRPO's advantages)
    adaptive_clip: bool  # adapt ε toward clip_target
    clip_signal: str  # "kl" or "clip_frac": the measured quantity
    clip_target: float  # target of that quantity
    clip_rate: float  # multiplicative step of ε
    eps_min: float  # clamp of ε
    eps_max: float
    adaptive_entropy: bool  # adapt the entropy coefficient toward entropy_target
    entropy_target: float  # target mean token entropy (nats)
    entropy_lr: float  # step size on log β_H
    top_entropy_q: float  # policy gradient only on the top-q highest-entropy tokens
    prioritized: bool  # sample minibatches by |advantage| with IS weights
    priority_alpha: float  # α of prioritized sampling
    eos_id: int
    pad_id: int
    grad_accum: int  # microbatches per minibatch: gradients summed, one optimizer update
    entropy_bonus: bool  # False: rl.entropy_coef = 0, no entropy term at all
    length_buckets: int  # completion-axis buckets of the learner (`_bucket_sizes`): it
    # runs on the smallest that holds the longest completion; 1 = always all T positions
    logp_chunk: int  # rows per pass of the reference log-probs, rounded down to whole
    # groups (at least one); 0 = the learner's microbatch shape, so that the two passes
    # compute the same numbers (`rl_step._ref_logp`)
    logit_chunk: int  # positions per pass of the output projection, log-probs and
    # entropy (reference and learner; 0 = all T at once): the logits are never whole
    adaptive_kl: bool  # adapt β toward kl_target (Ziegler et al. 2019)
    kl_target: float  # KL_target: mean per-token KL(π‖π_ref) the controller aims at
    kl_horizon: float  # H of the controller (iterations): β moves ≤ 20%·1/H a step
