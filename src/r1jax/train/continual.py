"""Continual learning across reasoning domains: train tasks in sequence, measure forgetting.

``run_method(c, method, seed)`` trains the domains ``c.domains`` one after another with
the trainer's jitted SFT step (the same budget per task: ``c.steps_per_task`` steps,
a fresh AdamW schedule per task) and after each task evaluates the model on every
domain's held-out problems (greedy decoding, each task's own verifier: the trainer's
evaluator), which fills row i of the accuracy matrix ``R`` (row i = after task i,
column j = task j). Methods (``METHODS``):

* ``naive``: plain sequential fine-tuning of one model (the forgetting baseline);
* ``ewc``: offline EWC (Kirkpatrick et al. 2017), one anchor per finished task, the
  Fisher recomputed after each task (``rl.ewc``); the penalty is a loss term of the
  jitted SFT step (``TrainState.ewc``, metric ``ewc_penalty``);
* ``online_ewc``: online EWC (Schwarz et al. 2018), F ← γF + F_k, the last anchor;
* ``progressive``: progressive networks (Rusu et al. 2016, ``models.progressive``): a
  new column per task with lateral connections from the frozen earlier ones; the task
  id selects the column, so earlier tasks' outputs cannot change;
* ``replay``: experience replay, the reference baseline of the field (e.g. Chaudhry et
  al. 2019): after each task ``c.replay_examples`` of its train problems are kept, and
  ``c.replay_fraction`` of every later batch's examples are drawn from that memory
  (uniformly over the finished tasks); the rest of the batch, the steps and the
  optimizer are naive fine-tuning's;
* ``ewc_replay``: offline EWC trained on replay's batches (both at once).

``c.adapter_rank > 0`` gives naive, ewc and online_ewc the task id, as progressive
networks have it (the task-incremental setting, van de Ven & Tolias 2019): each task
trains its own LoRA adapter (``models.lora``, rank ``c.adapter_rank``, every projection)
together with the shared trunk, and the task id selects the adapter at evaluation; the
EWC penalty, Fisher and anchor cover the trunk (a finished task's adapter is never
trained again); the experiment's default (``configs/continual.py``: rank 8). With
``c.adapter_rank = 0`` one shared model must serve every domain without the task id
(the domain-incremental setting; replay's batches mix tasks, so it runs only there).

The Fisher is the true Fisher (``c.fisher_kind="true"``: log-likelihood gradients of
completions the policy samples itself) or the empirical Fisher (``"empirical"``: of the
reference solutions), per example (``rl.ewc.fisher_diagonal``).

``forgetting_metrics(R)`` gives the standard summaries (Lopez-Paz & Ranzato 2017;
Chaudhry et al. 2018): ``acc`` (mean final accuracy), ``bwt`` (backward transfer),
``forgetting`` (mean drop from each task's best earlier accuracy) and ``retention``
(mean of final accuracy / accuracy just after learning the task).

Everything is a pure function of (config, method, seed): the same arguments give the
same ``R`` on the same machine.
"""

from __future__ import annotations

import functools
import logging
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from r1jax.checkpoint import Checkpointer
from r1jax.config import model_config
from r1jax.configs.continual import (  # the config's checks (light: the experiment's CLI)
    EWC_METHODS,
    FISHER_KINDS,
    METHODS,
    REPLAY_METHODS,
    check_adapters,
    check_config,
    check_lengths,
)
from r1jax.evaluate import evaluate, make_decoder
from r1jax.models import progressive as prog
from r1jax.models.lora import LoraConfig, apply_lora, init_lora, lora_param_count
from r1jax.models.transformer import CausalLM, padded_causal
from r1jax.rewards.scoring import TaskScorer
from r1jax.rl import ewc as ewc_lib
from r1jax.tasks import get_task, heldout_set, sample_mixture
from r1jax.tokenizer import CharTokenizer
from r1jax.train.sft_step import pack_examples, sft_loss, sft_step
from r1jax.train.state import (
    Graphs,
    add_ewc_penalty,
    create_state,
    guarded_update,
    init_params,
    make_optimizer,
)

__all__ = [
    "EWC_METHODS",
    "FISHER_KINDS",
    "METHODS",
    "REPLAY_METHODS",
    "fisher_rows",
    "forgetting_metrics",
    "run_method",
    "sequence_logp",
]

log = logging.getLogger("r1jax")


# ------------------------------------------------------------------------------ metrics


def forgetting_metrics(R) -> dict:
    """Summaries of a T×T accuracy matrix ``R`` (row i = after task i, column j = task j).

    * ``acc`` = mean_j R[T-1, j] (final average accuracy);
    * ``diag`` = mean_j R[j, j] (accuracy just after learning each task: plasticity);
    * ``bwt`` = mean_{j<T-1} (R[T-1, j] − R[j, j]) (backward transfer; < 0 = forgetting);
    * ``forgetting`` = mean_{j<T-1} (max_{i<T-1} R[i, j] − R[T-1, j]) (Chaudhry et al.
      2018: the drop from the best accuracy the task ever had);
    * ``retention`` = mean_j min(1, R[T-1, j] / R[j, j]): the share of each task's
      just-learned accuracy still there at the end, capped at 1 so that neither backward
      transfer nor a barely learned task (a small R[j, j]) can make up for forgetting
      elsewhere; the last task counts as 1. Tasks never learned (R[j, j] = 0) have no
      share and are listed in ``unlearned``; read ``retention`` with ``diag``: a method
      that learns nothing new forgets nothing.
    """
    R = np.asarray(R, np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square matrix, got shape {R.shape}")
    t = R.shape[0]
    final, diag = R[-1], np.diag(R)
    learned = diag > 0
    shares = np.minimum(1.0, final[learned] / diag[learned])
    return {
        "acc": float(final.mean()),
        "diag": float(diag.mean()),
        "bwt": float((final[:-1] - diag[:-1]).mean()) if t > 1 else 0.0,
        "forgetting": (
            float(np.mean([R[: t - 1, j].max() - final[j] for j in range(t - 1)])) if t > 1 else 0.0
        ),
        "retention": float(shares.mean()) if shares.size else 0.0,
        "unlearned": [int(j) for j in np.flatnonzero(~learned)],
    }


# ------------------------------------------------------------------------------ data


def _encode_rows(tok: CharTokenizer, prompts, completions, length: int):
    """Unpacked rows (one example each, left-aligned) for per-example log-likelihoods:
    ``tokens``, ``targets``, ``loss_mask`` (the completion tokens and EOS) ``[N, length]``."""
    n = len(prompts)
    tokens = np.full((n, length), tok.pad_id, np.int32)
    targets = np.zeros((n, length), np.int32)
    mask = np.zeros((n, length), bool)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        seq = (list(p) + list(c))[:length]
        tokens[i, : len(seq)] = seq
        targets[i, : len(seq) - 1] = seq[1:]
        mask[i, len(p) - 1 : len(seq) - 1] = True
    return {"tokens": tokens, "targets": targets, "loss_mask": mask}


def sequence_logp(graphs: Graphs, params, row) -> jax.Array:
    """log p(completion | prompt) of ONE unpacked row (``_encode_rows``): the sum of the
    completion tokens' log-probabilities (the per-example log-likelihood of the Fisher)."""
    model = nnx.merge(graphs.policy, params)
    tokens = row["tokens"][None]
    length = tokens.shape[1]
    mask = padded_causal(jnp.ones((1, length), bool))
    logits, _ = model(tokens, jnp.arange(length)[None], mask)
    logp = jax.nn.log_softmax(logits[0], axis=-1)
    picked = jnp.take_along_axis(logp, row["targets"][:, None], axis=-1)[:, 0]
    return jnp.sum(picked * row["loss_mask"])


def fisher_rows(c, task, tok: CharTokenizer, seed: int, *, sampler=None, params=None):
    """The Fisher's examples of ``task``: ``c.fisher_examples`` train problems with their
    reference solutions (empirical) or with completions ``sampler(params, ...)`` draws
    from the policy at temperature 1 (true Fisher)."""
    rng = np.random.default_rng([seed, 7, c.domains.index(task.name)])
    problems = sample_mixture(task, rng, c.fisher_examples, "train")
    prompts = [tok.encode(task.format_prompt(p)) for p in problems]
    if c.fisher_kind == "empirical":
        completions = [tok.encode(p.solution) + [tok.eos_id] for p in problems]
    else:
        ptok, pmask = tok.encode_left_padded(
            [task.format_prompt(p) for p in problems], c.max_prompt_len
        )
        key = jax.random.PRNGKey(seed * 1000 + c.domains.index(task.name))
        out = np.asarray(sampler(params, ptok, pmask, key, jnp.int32(0)))
        completions = []
        for row in out:
            ids = [int(x) for x in row if x != tok.pad_id]
            completions.append(ids)  # EOS kept when the policy wrote it
    return _encode_rows(tok, prompts, completions, c.max_prompt_len + c.max_new_tokens)


# ------------------------------------------------------------------------------ training


def _texts(task, problems) -> list:
    """``(prompt, solution)`` texts of ``task``'s problems, as an SFT example holds them."""
    return [(task.format_prompt(p), p.solution) for p in problems]


def _pack(c, tok: CharTokenizer, texts):
    """The packed SFT batch of ``(prompt, solution)`` texts (solutions end with EOS)."""
    examples = [(tok.encode(q), tok.encode(a) + [tok.eos_id]) for q, a in texts]
    return pack_examples(examples, c.rows, c.max_prompt_len + c.max_new_tokens, tok.pad_id)


def _sft_batch(c, task, tok: CharTokenizer, seed: int, task_index: int, step: int):
    rng = np.random.default_rng([seed, 1, task_index, step])
    return _pack(c, tok, _texts(task, sample_mixture(task, rng, c.max_examples, "train")))


@functools.lru_cache(maxsize=64)
def _memory(task, seed: int, task_index: int, n: int) -> tuple:
    """The replay memory of a finished task: ``n`` of its train problems, a pure function
    of (seed, task), as ``(prompt, solution)`` texts."""
    rng = np.random.default_rng([seed, 11, task_index])
    return tuple(_texts(task, sample_mixture(task, rng, n, "train")))


def _replay_batch(c, tasks, tok: CharTokenizer, seed: int, task_index: int, step: int):
    """Task ``task_index``'s SFT batch with ``round(c.replay_fraction * c.max_examples)``
    of its examples drawn from the earlier tasks' memories (``_memory``), the new and the
    replayed examples in a random order (packing drops what does not fit, so neither
    kind always loses). The first task's batch is ``_sft_batch``'s."""
    if task_index == 0:
        return _sft_batch(c, tasks[0], tok, seed, 0, step)
    rng = np.random.default_rng([seed, 12, task_index, step])
    n_old = round(c.replay_fraction * c.max_examples)
    task = tasks[task_index]
    texts = _texts(task, sample_mixture(task, rng, c.max_examples - n_old, "train"))
    for k in rng.integers(task_index * c.replay_examples, size=n_old):
        j, m = divmod(int(k), c.replay_examples)
        texts.append(_memory(tasks[j], seed, j, c.replay_examples)[m])
    return _pack(c, tok, [texts[int(k)] for k in rng.permutation(len(texts))])


def _optimizer(c):
    return make_optimizer(
        c.lr,
        warmup=c.warmup,
        total=c.steps_per_task,
        weight_decay=c.weight_decay,
        grad_clip=c.grad_clip,
    )


BASE_PROMPT = "Steps:\n"  # the prompt of the base model's pretraining text


def _base_batch(c, tasks, tok: CharTokenizer, seed: int, step: int):
    """Pretraining text: reference solutions (step equations and the answer line) of
    train problems of every domain, without their questions."""
    rng = np.random.default_rng([seed, 3, step])
    texts = []
    for k in rng.integers(len(tasks), size=c.max_examples):
        (p,) = sample_mixture(tasks[int(k)], rng, 1, "train")
        texts.append((BASE_PROMPT, p.solution))
    return _pack(c, tok, texts)


def pretrain_base(c: ml_collections.ConfigDict, seed: int):
    """The base model every method starts from (the params of a ``CausalLM``):
    ``c.base_steps`` SFT steps on math text, the reference solutions of all domains
    without their questions, so the model can compute before it learns any domain's
    questions, as a pretrained language model can (``c.base_steps=0``: the random init).
    """
    tok = CharTokenizer()
    cfg = model_config(c, tok.vocab_size)
    policy, _ = init_params(cfg, None, seed)
    if c.base_steps <= 0:
        return policy
    tasks = [get_task(name) for name in c.domains]
    graphs = Graphs(
        nnx.graphdef(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))), None, cfg
    )
    tx = make_optimizer(
        c.lr, warmup=c.warmup, total=c.base_steps, weight_decay=0.0, grad_clip=c.grad_clip
    )
    state = create_state(
        policy, {}, tx, tx, seed=seed, eps_low=0.2, eps_high=0.2, entropy_coef=1e-3, kl_coef=0.0
    )
    step = jax.jit(functools.partial(sft_step, graphs=graphs, tx=tx), donate_argnums=0)
    for s in range(c.base_steps):
        state, _ = step(state, _base_batch(c, tasks, tok, seed, s))
    return jax.device_get(state.policy)


class _Evaluator:
    """Held-out accuracy of every domain, through the trainer's evaluator."""

    def __init__(self, c, tasks, tok: CharTokenizer):
        self.c, self.tasks, self.tok = c, tasks, tok
        self.sets = [heldout_set(t, c.eval_problems, seed=c.eval_seed) for t in tasks]
        self.scorers = [TaskScorer(t) for t in tasks]

    def accuracy(self, params, greedy, j: int) -> float:
        task = self.tasks[j]
        res = evaluate(
            params,
            self.sets[j],
            scorer=self.scorers[j],
            tokenizer=self.tok,
            prompt_text=task.format_prompt,
            encode_prompts=lambda texts: self.tok.encode_left_padded(texts, self.c.max_prompt_len),
            greedy=greedy,
            batch_size=min(self.c.eval_batch, len(self.sets[j])),
        )
        return float(res["accuracy"])

    def close(self):
        for s in self.scorers:
            s.close()


class _Progress:
    """One run's accuracy rows, EWC penalties and per-task checkpoints: after each task
    the state (params, and the EWC Fisher and anchor) and the rows so far are saved, so
    a stopped run resumes after its last finished task exactly as if never stopped (the
    batches are pure functions of (seed, task, step) and each task starts a fresh
    optimizer)."""

    def __init__(self, n: int, ckpt_dir, on_task):
        self.R = np.zeros((n, n))
        self.penalties: list[float] = []
        self.seconds = 0.0  # spent by earlier processes on this run
        self.on_task = on_task
        self.ckpt = Checkpointer(ckpt_dir, keep=1) if ckpt_dir else None

    def resume(self, target):
        """``(tasks done, restored state or None)``."""
        done = None if self.ckpt is None else self.ckpt.latest("rl")
        if not done:
            return 0, None
        state, meta = self.ckpt.restore("rl", done, target)
        self.R[:done] = np.asarray(meta["R"])
        self.penalties = list(meta["penalties"])
        self.seconds = float(meta["seconds"])
        log.info("resuming after task %d from %s", done - 1, self.ckpt.root)
        return done, state

    def task_done(self, i: int, state, elapsed: float) -> None:
        if self.ckpt is not None:
            meta = {
                "R": self.R[: i + 1].tolist(),
                "penalties": self.penalties,
                "seconds": self.seconds + elapsed,
            }
            self.ckpt.save("rl", i + 1, state, meta)
        if self.on_task is not None:
            self.on_task(i, self.R[i])

    def close(self):
        if self.ckpt is not None:
            self.ckpt.close()


def run_method(
    c: ml_collections.ConfigDict,
    method: str,
    seed: int,
    *,
    base=None,
    ckpt_dir: str | None = None,
    on_task=None,
    keep_state: bool = False,
) -> dict:
    """Trains ``c.domains`` in sequence with ``method``; returns ``{"R", "params",
    "seconds", "ewc_penalty" (per task, at its last step), **forgetting_metrics(R)}``.

    Every method starts from the same base model, ``base`` (default
    ``pretrain_base(c, seed)``; pass it to share one across methods); progressive
    networks start each new column from it. ``params`` is the number of parameters the
    method holds at the end (progressive: every column and lateral used);
    ``stored_floats`` adds what it keeps besides (EWC: the Fisher and the anchor).
    ``ckpt_dir``: checkpoints after each task there, and resumes from the last one.
    ``on_task(i, row)`` is called after each task (after its checkpoint).
    ``keep_state``: the final params (and EWC state) under ``"state"`` (host arrays).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    check_config(c)
    check_adapters(c, [method])
    # A prompt too long fails here, not at the first evaluation or Fisher.
    check_lengths(c, fisher_seeds=[seed] if method in EWC_METHODS else [])
    t0 = time.perf_counter()
    tok = CharTokenizer()
    tasks = [get_task(name) for name in c.domains]
    run = _Run(c, method, seed, tok, tasks, _Evaluator(c, tasks, tok), t0)
    progress = _Progress(len(tasks), ckpt_dir, on_task)
    try:
        if base is None:
            base = pretrain_base(c, seed)
        if method == "progressive":
            params_count, state = _run_progressive(run, progress, base)
        elif c.adapter_rank:
            params_count, state = _run_adapters(run, progress, base)
        else:
            params_count, state = _run_shared(run, progress, base)
    finally:
        run.ev.close()
        progress.close()
    R = progress.R
    trunk = sum(x.size for x in jax.tree.leaves(base))  # EWC's Fisher and anchor cover it
    stored = params_count + (2 * trunk if method in EWC_METHODS else 0)
    out = {
        "R": R.tolist(),
        "params": int(params_count),
        "stored_floats": int(stored),
        "seconds": progress.seconds + time.perf_counter() - t0,
    }
    if progress.penalties:
        out["ewc_penalty"] = progress.penalties
    if method in REPLAY_METHODS:  # problems kept in the memory at the end
        out["memory_examples"] = (len(tasks) - 1) * c.replay_examples
    out.update(forgetting_metrics(R))
    if keep_state:
        out["state"] = jax.device_get(state)
    return out


class _Run:
    """What every method of one run shares."""

    def __init__(self, c, method, seed, tok, tasks, ev, t0):
        self.c, self.method, self.seed, self.tok, self.tasks, self.ev = (
            c,
            method,
            seed,
            tok,
            tasks,
            ev,
        )
        self.t0 = t0
        self.cfg = model_config(c, tok.vocab_size)
        self.decode_kw = dict(max_new_tokens=c.max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


@functools.lru_cache(maxsize=8)
def _shared_programs(cfg, lr, warmup, steps, weight_decay, grad_clip, fisher_chunk):
    """`(graphdef, tx, jitted SFT step, jitted Fisher)` of the shared-model methods, built
    once per setting so the methods and λ values of an experiment (one process) reuse
    the compiled programs instead of compiling them again per run."""
    pgraph = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    graphs = Graphs(pgraph, None, cfg)
    tx = make_optimizer(
        lr, warmup=warmup, total=steps, weight_decay=weight_decay, grad_clip=grad_clip
    )
    step = jax.jit(functools.partial(sft_step, graphs=graphs, tx=tx), donate_argnums=0)
    logp = functools.partial(sequence_logp, graphs)
    fisher_fn = jax.jit(lambda p, rows: ewc_lib.fisher_diagonal(logp, p, rows, chunk=fisher_chunk))
    return pgraph, tx, step, fisher_fn


def _run_shared(run: _Run, progress: _Progress, base):
    """naive / ewc / online_ewc / replay / ewc_replay: one model trained on every task in
    turn."""
    c, cfg, tok, tasks, seed, method = run.c, run.cfg, run.tok, run.tasks, run.seed, run.method
    pgraph, tx, step, fisher_fn = _shared_programs(
        cfg, c.lr, c.warmup, c.steps_per_task, c.weight_decay, c.grad_clip, c.fisher_chunk
    )
    policy = jax.tree.map(jnp.array, base)  # a copy: the steps donate their state
    state = create_state(
        policy, {}, tx, tx, seed=seed, eps_low=0.2, eps_high=0.2, entropy_coef=1e-3, kl_coef=0.0
    )
    uses_ewc = method in EWC_METHODS
    if uses_ewc:
        state = state.replace(ewc=ewc_lib.init_ewc(policy, c.ewc_lambda))

    def saved(st):  # what a checkpoint holds: the params, and the EWC Fisher and anchor
        return {"policy": st.policy, "ewc": st.ewc} if uses_ewc else {"policy": st.policy}

    start, restored = progress.resume(saved(state))
    if restored is not None:
        state = state.replace(**restored)
    greedy = make_decoder(pgraph, **run.decode_kw)
    sampler = make_decoder(pgraph, temperature=1.0, **run.decode_kw)
    for i in range(start, len(tasks)):
        task = tasks[i]
        state = state.replace(policy_opt=tx.init(state.policy))
        metrics = None
        for s in range(c.steps_per_task):
            if method in REPLAY_METHODS:
                batch = _replay_batch(c, tasks, tok, seed, i, s)
            else:
                batch = _sft_batch(c, task, tok, seed, i, s)
            state, metrics = step(state, batch)
        if metrics is not None and "ewc_penalty" in metrics:
            progress.penalties.append(float(metrics["ewc_penalty"]))
        progress.R[i] = [run.ev.accuracy(state.policy, greedy, j) for j in range(len(tasks))]
        log.info(
            "%s seed %d after task %d (%s): %s", method, seed, i, task.name, _fmt(progress.R[i])
        )
        if uses_ewc and i < len(tasks) - 1:
            rows = fisher_rows(c, task, tok, seed, sampler=sampler, params=state.policy)
            fisher = fisher_fn(state.policy, jax.tree.map(jnp.asarray, rows))
            state = state.replace(ewc=_consolidate(run, state.ewc, fisher, state.policy))
        progress.task_done(i, saved(state), run.elapsed())
    return sum(x.size for x in jax.tree.leaves(state.policy)), saved(state)


def _consolidate(run: _Run, ewc, fisher, params):
    """The EWC state after a task: its Fisher added (offline, or online with γ)."""
    mode = "online" if run.method == "online_ewc" else "offline"
    return ewc_lib.consolidate(ewc, fisher, params, mode=mode, gamma=run.c.online_gamma)


def _adapter_config(rank: int) -> LoraConfig:
    """A task adapter: LoRA on every projection, alpha = 2 · rank."""
    return LoraConfig(rank=rank, alpha=2.0 * rank, targets=("all",))


@functools.lru_cache(maxsize=8)
def _adapter_programs(cfg, lr, warmup, steps, weight_decay, grad_clip, fisher_chunk, rank):
    """`(graphdef, tx, step, Fisher, merge)`, jitted, of the task-adapter methods: the step
    trains ``{"trunk", "adapter"}`` on the SFT loss of trunk + adapter plus the EWC
    penalty of the trunk (metric ``ewc_penalty``); the Fisher is the trunk's, through the
    task's adapter; ``merge(trunk, adapter)`` the full params a decoder runs."""
    pgraph = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    graphs = Graphs(pgraph, None, cfg)
    lcfg = _adapter_config(rank)
    tx = make_optimizer(
        lr, warmup=warmup, total=steps, weight_decay=weight_decay, grad_clip=grad_clip
    )

    def one_step(train, opt, ewc, batch):
        def loss_fn(tp):
            return sft_loss(apply_lora(tp["trunk"], tp["adapter"], lcfg), batch, graphs)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(train)
        loss, trunk_grads, aux = add_ewc_penalty(ewc, train["trunk"], loss, grads["trunk"], aux)
        grads = {"trunk": trunk_grads, "adapter": grads["adapter"]}
        train, opt, _ = guarded_update(tx, grads, opt, train, loss)
        return train, opt, dict(aux, loss=loss)

    def fisher(trunk, adapter, rows):
        def logp(p, row):
            return sequence_logp(graphs, apply_lora(p, adapter, lcfg), row)

        return ewc_lib.fisher_diagonal(logp, trunk, rows, chunk=fisher_chunk)

    step = jax.jit(one_step, donate_argnums=(0, 1))
    return pgraph, tx, step, jax.jit(fisher), jax.jit(functools.partial(apply_lora, cfg=lcfg))


def _run_adapters(run: _Run, progress: _Progress, base):
    """naive / ewc / online_ewc with the task id (``c.adapter_rank > 0``): a shared trunk
    and one LoRA adapter per task (``adapters[str(j)]``, initialised from (seed, j)); task
    i trains the trunk and its adapter, domain j is evaluated with the trunk and adapter
    j (a domain not yet trained: with the newest adapter)."""
    c, cfg, tok, tasks, seed, method = run.c, run.cfg, run.tok, run.tasks, run.seed, run.method
    pgraph, tx, step, fisher_fn, merged = _adapter_programs(
        cfg,
        c.lr,
        c.warmup,
        c.steps_per_task,
        c.weight_decay,
        c.grad_clip,
        c.fisher_chunk,
        c.adapter_rank,
    )
    lcfg = _adapter_config(c.adapter_rank)
    key = jax.random.PRNGKey(seed)
    adapters = {
        str(j): init_lora(base, lcfg, jax.random.fold_in(key, 1000 + j)) for j in range(len(tasks))
    }
    uses_ewc = method in EWC_METHODS
    saved = {"trunk": jax.tree.map(jnp.array, base), "adapters": adapters}
    if uses_ewc:
        saved["ewc"] = ewc_lib.init_ewc(base, c.ewc_lambda)
    start, restored = progress.resume(saved)
    if restored is not None:
        saved = restored
    trunk, adapters, ewc = saved["trunk"], dict(saved["adapters"]), saved.get("ewc", {})
    greedy = make_decoder(pgraph, **run.decode_kw)
    sampler = make_decoder(pgraph, temperature=1.0, **run.decode_kw)
    for i in range(start, len(tasks)):
        task = tasks[i]
        train = jax.tree.map(jnp.array, {"trunk": trunk, "adapter": adapters[str(i)]})
        opt = tx.init(train)
        metrics = None
        for s in range(c.steps_per_task):
            train, opt, metrics = step(train, opt, ewc, _sft_batch(c, task, tok, seed, i, s))
        trunk, adapters[str(i)] = train["trunk"], train["adapter"]
        if metrics is not None and "ewc_penalty" in metrics:
            progress.penalties.append(float(metrics["ewc_penalty"]))
        progress.R[i] = [
            run.ev.accuracy(merged(trunk, adapters[str(min(j, i))]), greedy, j)
            for j in range(len(tasks))
        ]
        log.info(
            "%s+adapters seed %d after task %d (%s): %s",
            method,
            seed,
            i,
            task.name,
            _fmt(progress.R[i]),
        )
        if uses_ewc and i < len(tasks) - 1:
            params = merged(trunk, adapters[str(i)])
            rows = fisher_rows(c, task, tok, seed, sampler=sampler, params=params)
            fisher = fisher_fn(trunk, adapters[str(i)], jax.tree.map(jnp.asarray, rows))
            ewc = _consolidate(run, ewc, fisher, trunk)
        saved = {"trunk": trunk, "adapters": adapters} | ({"ewc": ewc} if uses_ewc else {})
        progress.task_done(i, saved, run.elapsed())
    count = sum(x.size for x in jax.tree.leaves(trunk)) + lora_param_count(adapters)
    return count, saved


def _run_progressive(run: _Run, progress: _Progress, base):
    """A column per task (``models.progressive``), each starting from the base model
    (laterals from zero); only the new column trains. R's entries above the diagonal
    (tasks whose column is not trained yet) are the base model's accuracy.

    Evaluated: the diagonal (column i after task i), the base model once per task, and
    every column again after the last task (the row the final metrics read). Between,
    a frozen column's entry R[i][j] (j < i) is R[j][j]: columns 0..j are bit-identical
    after task j (``split_trainable``) and the same greedy decoder gives the same
    answers; the last row measures it (``retention`` 1 only if it held)."""
    c, cfg, tok, tasks, seed = run.c, run.cfg, run.tok, run.tasks, run.seed
    n = len(tasks)
    params = prog.init_progressive_params(cfg, n, seed)
    for col in params["model"]["columns"].values():
        col.update(jax.tree.map(jnp.array, base["model"]))
    start, restored = progress.resume({"params": params})
    if restored is not None:
        params = restored["params"]
    tx = _optimizer(c)
    greedy = {}
    # A column not trained yet computes the base model (its weights are the base's, its
    # laterals zero), so the tasks ahead are evaluated once, with the base model, not
    # through every earlier column at every row.
    untrained, base_greedy = {}, None
    for i in range(start, n):
        task = tasks[i]
        gdef = prog.progressive_graphdef(cfg, n, i)
        graphs = Graphs(gdef, None, cfg)
        train, frozen = prog.split_trainable(params, i)

        # `frozen` is an argument, not a closure: closed-over arrays would be baked into
        # the program as constants (every earlier column's weights, slower to compile).
        def one_step(train, opt, frozen, batch, graphs=graphs):
            def loss_fn(tp):
                return sft_loss(prog.merge_trainable(tp, frozen), batch, graphs)

            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(train)
            train, opt, _ = guarded_update(tx, grads, opt, train, loss)
            return train, opt

        step = jax.jit(one_step, donate_argnums=(0, 1))
        opt = tx.init(train)
        for s in range(c.steps_per_task):
            train, opt = step(train, opt, frozen, _sft_batch(c, task, tok, seed, i, s))
        params = prog.merge_trainable(train, frozen)
        row = []
        for j in range(n):
            if j > i:  # column j untrained: the base model, whatever task i did
                if j not in untrained:
                    if base_greedy is None:
                        base_greedy = make_decoder(
                            nnx.graphdef(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))),
                            **run.decode_kw,
                        )
                    untrained[j] = run.ev.accuracy(base, base_greedy, j)
                row.append(untrained[j])
                continue
            if j < i < n - 1:  # a frozen column: its accuracy after task j (docstring)
                row.append(progress.R[j][j])
                continue
            if j not in greedy:
                greedy[j] = make_decoder(prog.progressive_graphdef(cfg, n, j), **run.decode_kw)
            row.append(run.ev.accuracy(params, greedy[j], j))
        progress.R[i] = row
        log.info("progressive seed %d after task %d (%s): %s", seed, i, task.name, _fmt(row))
        progress.task_done(i, {"params": params}, run.elapsed())
    return prog.param_count(params, n - 1), {"params": params}


def _fmt(row) -> str:
    return " ".join(f"{x:.2f}" for x in row)
