"""Continual learning over the ten reasoning domains (`experiments/continual.py`).

Each domain (`r1jax.tasks.DOMAINS`, in that order) is trained for the same number of
SFT steps with a fresh AdamW schedule, then every domain is evaluated (greedy, the
task's own verifier) to fill one row of the accuracy matrix R. Variants: "" (the
measured setting, BENCHMARKS.md) and "smoke" (seconds per method; the tests).
"""

import ml_collections

from r1jax.tasks import list_tasks
from r1jax.tasks.domains import DOMAINS

# The methods of `r1jax.train.continual` (defined here with the config's checks, so a
# command line is checked without importing JAX).
METHODS = ("naive", "ewc", "online_ewc", "progressive", "replay", "ewc_replay")
EWC_METHODS = ("ewc", "online_ewc", "ewc_replay")  # the methods with a penalty (and λ)
REPLAY_METHODS = ("replay", "ewc_replay")  # the methods with a replay memory
FISHER_KINDS = ("true", "empirical")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.domains = tuple(DOMAINS)  # trained in this order
    c.model = ml_collections.ConfigDict(
        dict(d_model=64, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=32, mlp_dim=192)
    )  # progressive networks: each column has these sizes
    c.max_prompt_len = 144  # P, prompt tokens (left-padded; questions are <= 140 chars)
    c.max_new_tokens = 80  # T, completion tokens (references + EOS are <= 80)
    c.base_steps = 1000  # pretraining of the shared base model on math text (the domains'
    # reference solutions without questions): every method starts from it
    c.steps_per_task = 300  # SFT steps on each task (the same budget for every method)
    c.rows = 16  # packed rows per step, each P + T tokens
    c.max_examples = 40  # problems drawn per step (those that do not fit are dropped)
    c.lr = 3e-3  # peak AdamW learning rate (warmup then cosine to lr/10, per task)
    c.warmup = 15  # warmup steps per task
    c.weight_decay = 0.0  # AdamW decay (it would pull every weight to 0, EWC anchors too)
    c.grad_clip = 1.0  # global-norm gradient clip
    c.eval_problems = 128  # held-out problems per domain (hash-disjoint from training)
    c.eval_seed = 4321  # seed of the held-out sets
    c.eval_batch = 128  # greedy-decoding batch
    c.ewc_lambda = 0.3  # λ of the EWC penalty λ/2 Σ F (θ − θ*)² (the experiment sweeps it;
    # at λ = 1 a naive task's drift costs ~3 nats against a cross-entropy of ~0.2)
    c.online_gamma = 1.0  # γ of online EWC: F ← γ F + F_k
    c.fisher_kind = "true"  # "true": the policy's own samples; "empirical": references
    c.fisher_examples = 256  # examples per Fisher estimate
    c.fisher_chunk = 16  # per-example gradients held at once
    c.replay_examples = 256  # replay: train problems kept per finished task
    c.replay_fraction = 0.25  # replay: share of each batch's examples from that memory
    c.adapter_rank = 8  # > 0: naive / ewc / online_ewc get the task id, as progressive
    # networks do: a LoRA adapter of this rank per task beside the shared trunk (the
    # task-incremental setting); 0: one shared model, no task id (replay needs it)
    if arg == "smoke":
        c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64)
        c.steps_per_task = 2
        c.base_steps = 2
        c.rows = 4
        c.max_examples = 8
        c.warmup = 1
        c.eval_problems = 8
        c.eval_batch = 8
        c.fisher_examples = 8
        c.fisher_chunk = 4
        c.replay_examples = 8
        c.adapter_rank = 2
        c.max_new_tokens = 40  # half the decode: the smoke model learns nothing to finish
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of continual; use '' or 'smoke'")
    return c


def check_config(c) -> None:
    """Raises ``ValueError`` naming the first field of a continual config that is out of
    range (``r1jax/configs/continual.py``)."""
    if c.fisher_kind not in FISHER_KINDS:
        raise ValueError(f"fisher_kind must be one of {FISHER_KINDS}, got {c.fisher_kind!r}")
    if not 0.0 <= c.online_gamma <= 1.0:
        raise ValueError(f"online_gamma must be in [0, 1], got {c.online_gamma}")
    if c.ewc_lambda < 0:
        raise ValueError(f"ewc_lambda must be >= 0, got {c.ewc_lambda}")
    if not isinstance(c.adapter_rank, int) or c.adapter_rank < 0:
        raise ValueError(
            f"adapter_rank must be an int >= 0 (0: no task adapters), got {c.adapter_rank}"
        )
    if not 0.0 <= c.replay_fraction < 1.0:
        raise ValueError(f"replay_fraction must be in [0, 1), got {c.replay_fraction}")
    positive = ("steps_per_task", "rows", "max_examples", "eval_problems", "eval_batch")
    positive += ("fisher_examples", "fisher_chunk", "max_prompt_len", "max_new_tokens")
    positive += ("replay_examples",)
    for name in positive:
        if c[name] <= 0:
            raise ValueError(f"{name} must be positive, got {c[name]}")
    if c.base_steps < 0 or c.warmup < 0 or c.lr <= 0:
        raise ValueError("base_steps and warmup must be >= 0 and lr > 0")
    unknown = [d for d in c.domains if d not in list_tasks()]
    if unknown or not c.domains:
        raise ValueError(f"domains {unknown or '()'} are not registered tasks")


def check_lengths(c, fisher_seeds=()) -> str | None:
    """Raises ``ValueError`` when a held-out prompt of a domain is longer than
    ``c.max_prompt_len`` (the evaluation after the first task would fail), or with
    ``fisher_kind="true"`` a prompt of the Fisher examples an EWC run of one of
    ``fisher_seeds`` samples from (``train.continual.fisher_rows``). Other training rows
    are ``max_prompt_len + max_new_tokens`` long and a packed example needs only to fit
    one, so those prompts are not held to ``max_prompt_len``. Returns a warning when
    held-out reference solutions (+ EOS) of some domain do not fit ``c.max_new_tokens``
    (None when all do): evaluation cuts such answers off, which caps those domains'
    accuracy (the smoke setting does this on purpose)."""
    import numpy as np

    from r1jax.tasks import get_task, heldout_set, sample_mixture
    from r1jax.tokenizer import CharTokenizer

    tok, cut = CharTokenizer(), []
    for index, name in enumerate(c.domains):
        task = get_task(name)
        problems = heldout_set(task, c.eval_problems, seed=c.eval_seed)
        prompted = [("held-out", problems)]
        for seed in fisher_seeds if c.fisher_kind == "true" else ():
            rng = np.random.default_rng([seed, 7, index])  # as fisher_rows draws them
            fisher = sample_mixture(task, rng, c.fisher_examples, "train")
            prompted.append((f"Fisher (seed {seed})", fisher))
        for kind, group in prompted:
            prompt = max((task.format_prompt(p) for p in group), key=lambda t: len(tok.encode(t)))
            n = len(tok.encode(prompt))
            if n > c.max_prompt_len:
                raise ValueError(
                    f"max_prompt_len={c.max_prompt_len} is too short: domain {name!r} has a "
                    f"{kind} prompt of {n} tokens ({prompt[:40]!r}...); raise it to at "
                    f"least {n}"
                )
        lengths = [len(tok.encode(p.solution)) + 1 for p in problems]
        if (k := sum(n > c.max_new_tokens for n in lengths)) > 0:
            cut.append(f"{name} {k}/{len(lengths)} (up to {max(lengths)} tokens)")
    if not cut:
        return None
    return (
        f"max_new_tokens={c.max_new_tokens} is shorter than some held-out reference "
        f"solutions (+ EOS) of {len(cut)} domains ({', '.join(cut)}): evaluation cuts such "
        "answers off, which caps those domains' accuracy"
    )


def check_adapters(c, methods) -> None:
    """Raises ``ValueError`` when ``c.adapter_rank`` is set for a method it cannot serve:
    replay's batches mix tasks, which one adapter per step cannot route."""
    bad = [m for m in methods if m in REPLAY_METHODS]
    if c.adapter_rank and bad:
        raise ValueError(
            f"adapter_rank={c.adapter_rank} (task adapters) does not apply to {bad}: their "
            "batches mix tasks; run them with adapter_rank=0 (--override=adapter_rank=0: "
            "one shared model, no task id)"
        )
