"""The experiment: everything a config builds, before any step runs.

`Experiment(c, workdir)` validates the config and assembles the task (its scorer: the
task's verifier and reward parts in the verifier pool), the tokenizer (the char
tokenizer, or a Hugging Face one with `c.pretrained`), the models and their shardings on
the mesh, the optimizers (the policy's and the critic's, two time scales), the initial
state (built inside jit where it lives), the host reward and the jitted SFT step and RL
iteration (jit over the mesh, or pmap). It also makes the data: SFT and RL batches are
pure functions of (seed, phase, step), and the fixed evaluation set. `compile_report`
lowers and compiles the steps from shapes alone. The run loop is `train.loop`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import time

import jax
import numpy as np

from r1jax import config as config_lib
from r1jax import parallel
from r1jax.checkpoint import Checkpointer
from r1jax.errors import RunError
from r1jax.evaluate import evaluate, evaluation_set, make_mesh_decoder
from r1jax.hf_tokenizer import HFTokenizer
from r1jax.models.hf import load_config, load_pretrained_params, positions_warning
from r1jax.models.lora import init_lora
from r1jax.rewards.bridge import HostReward
from r1jax.rewards.composite import SCORE_FIELDS
from r1jax.rewards.scoring import TaskScorer, check_references, unused_parts
from r1jax.rl import get_algorithm
from r1jax.tasks import get_task, sample_mixture
from r1jax.tokenizer import CharTokenizer
from r1jax.train import split_rl
from r1jax.train.pmap import make_pmap_steps, shard_batch
from r1jax.train.rl_step import PromptBatch, rl_iteration
from r1jax.train.sft_step import SFTBatch, pack_examples, sft_step
from r1jax.train.state import (
    TrainState,
    create_state,
    init_graphs,
    init_params,
    make_optimizer,
    policy_params,
    start_rl,
)

log = logging.getLogger("r1jax")
LATER_FIELDS = ("kl", "ewc")  # TrainState fields newer than some checkpoints (adaptive KL β, EWC)
LORA_STREAM = 7  # fold_in of the seed's key for the LoRA adapters' init
HF_DIR = "hf"  # <workdir>/hf/: copy of the pretrained checkpoint's config and tokenizer
HF_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


class Experiment:
    """Everything built from a config: task, tokenizer, models, optimizers, jitted steps."""

    def __init__(
        self,
        c,
        workdir: str,
        mesh=None,
        load_weights: bool = True,
        shapes_only: bool = False,
        training: bool = True,
    ):
        """`load_weights=False` (evaluation): with `c.pretrained`, build the model and
        tokenizer from the run's copy `<workdir>/hf/` (else from `c.pretrained`) but do
        not read the weights; a checkpoint is restored over the initial state anyway.
        `shapes_only` (`compile_report`): no state is allocated and no weights are read:
        `init_state` is None and `state_shapes` (always set) describes the state.
        `training=False` (evaluation): no warnings meant for a training run."""
        c = config_lib.complete(c)  # missing fields: the defaults (one source)
        config_lib.validate(c)
        self.c, self.workdir = c, workdir
        self.task = get_task(c.task, **dict(c.task_kwargs))
        self.pretrained = c.pretrained
        self.chat = bool(c.chat)
        if self.pretrained:
            pcfg = self._load_hf(load_weights)
            vcfg = dataclasses.replace(pcfg, n_layers=c.value_model.n_layers)
        else:
            self.tokenizer = CharTokenizer()
            v = self.tokenizer.vocab_size
            pcfg, vcfg = config_lib.model_config(c, v), config_lib.model_config(c, v, value=True)
        self.eos_id, self.pad_id = self.tokenizer.eos_id, self.tokenizer.pad_id
        # Prompts written as text get the tokenizer's own special tokens (Llama's BOS);
        # a rendered chat template already spells them.
        self.prompt_kw = {"add_special_tokens": True} if self.pretrained and not self.chat else {}
        if not get_algorithm(c.rl.algo).critic:
            vcfg = None  # e.g. GRPO: no critic, no value params, no value optimizer state
        self.lora = config_lib.lora_config(c)
        self.graphs = dataclasses.replace(init_graphs(pcfg, vcfg), lora=self.lora)
        init = functools.partial(init_params, pcfg, vcfg, c.seed)
        pmap_path = c.parallelism == "pmap"
        if pmap_path and mesh is None:
            # pmap: the canonical state (init, checkpoints, evaluation) lives on one device;
            # the steps replicate it over the local devices themselves.
            mesh = parallel.make_mesh(1, 1, 1)
        try:
            self.mesh = mesh if mesh is not None else config_lib.make_mesh(c)
            parallel.check_divisible(c.sft.rows, self.mesh, "sft.rows")
            parallel.check_divisible(c.rl.prompts_per_iter, self.mesh, "rl.prompts_per_iter")
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from e
        self.repl = parallel.replicated(self.mesh)
        self.data_sh = parallel.batch_sharding(self.mesh)
        r = c.rl
        self.sft_tx = make_optimizer(
            c.sft.lr,
            warmup=c.sft.warmup,
            total=max(c.sft.steps, 1),
            weight_decay=c.sft.weight_decay,
            grad_clip=c.sft.grad_clip,
        )
        self.policy_tx = make_optimizer(
            r.policy_lr,
            warmup=r.warmup,
            total=r.iterations * r.epochs * r.num_minibatches,
            weight_decay=r.weight_decay,
            grad_clip=r.grad_clip,
        )
        self.value_tx = make_optimizer(
            r.value_lr,
            warmup=r.warmup,
            total=r.iterations * r.value_epochs * r.num_minibatches,
            weight_decay=r.weight_decay,
            grad_clip=r.grad_clip,
        )
        # Shapes first, then shardings, then the state built where it lives (params,
        # optimizer moments and the reference copy split by the learner rules).
        make = functools.partial(
            create_state,
            policy_tx=self.sft_tx,
            value_tx=self.value_tx,
            seed=c.seed,
            eps_low=r.eps_low,
            eps_high=r.eps_high,
            entropy_coef=r.entropy_coef if r.entropy_coef > 0 else 1.0,  # 1.0: unused
            kl_coef=r.kl_coef,
        )

        def build(policy, value):
            """The initial state; with LoRA, adapters over the frozen `policy`."""
            if self.lora is None:
                return make(policy, value)
            key = jax.random.fold_in(jax.random.PRNGKey(c.seed), LORA_STREAM)
            return make(init_lora(policy, self.lora, key), value, base=policy)

        self.state_shapes = jax.eval_shape(lambda: build(*init()))
        self.state_sh = parallel.state_shardings(
            self.state_shapes,
            self.mesh,
            parallel.learner_rules(),
            policy_cfg=pcfg,
            value_cfg=vcfg,
        )
        # Parameters are initialised inside the jitted program: each device creates only
        # its shards (bitwise the eager values). A pretrained policy is read straight onto
        # its shards, then donated into the state (policy, and the reference copy).
        if shapes_only:
            self.init_state = None
        elif self.pretrained and load_weights:
            _, weights = load_pretrained_params(
                self.pretrained, mesh=self.mesh, rules=parallel.learner_rules()
            )
            self.init_state = jax.jit(
                lambda p: build(p, init()[1]), out_shardings=self.state_sh, donate_argnums=0
            )(weights)
            del weights
        else:
            self.init_state = jax.jit(lambda: build(*init()), out_shardings=self.state_sh)()
        self.start_rl = jax.jit(  # donated, as pmap's: the SFT-finished state is consumed
            functools.partial(start_rl, policy_tx=self.policy_tx, value_tx=self.value_tx),
            out_shardings=self.state_sh,
            donate_argnums=0,
        )
        # The task scores its own completions (its verifier and reward parts), in the
        # verifier pool: the RL reward, in-loop evaluation and r1jax-eval alike.
        reward_cfg = config_lib.reward_config(c)
        off = unused_parts(self.task, reward_cfg)
        if off:
            log.info("task %r does not use reward parts %s: their weights count as 0", c.task, off)
        try:
            self.scorer = TaskScorer(
                self.task,
                reward_cfg,
                num_workers=c.reward.num_workers,
                deadline_s=c.reward.deadline_s,
            )
        except ValueError as e:  # a verifier the workers cannot receive
            raise config_lib.ConfigError(str(e), field="task") from e
        self.pool = self.scorer.pool
        self.host_reward = HostReward(
            self.scorer,
            self.tokenizer,
            group_size=c.rl.group_size,
            placement=config_lib.reward_placement(c),
            noise=config_lib.reward_noise(c),
        )
        # On several devices (or where splash may run) the step functions trace under the
        # mesh: the model lays its activations out by it and runs splash per shard.
        under_mesh = functools.partial(
            parallel.traced_under_mesh, mesh=self.mesh, cfgs=(pcfg, vcfg)
        )
        self.sft_fn = jax.jit(
            under_mesh(
                functools.partial(
                    sft_step,
                    graphs=self.graphs,
                    tx=self.sft_tx,
                    grad_accum=c.sft.grad_accum,
                    logit_chunk=c.sft.logit_chunk,
                )
            ),
            in_shardings=(self.state_sh, self.data_sh),
            out_shardings=(self.state_sh, self.repl),
            donate_argnums=0,
        )
        # Rollouts use the sampler rules where they differ (FSDP meshes: gather the
        # weights once per rollout, not once per decode step).
        sampler_sh = None
        if parallel.axis_size(self.mesh, "fsdp") > 1:
            sampler_sh = parallel.param_shardings(
                jax.eval_shape(init)[0], self.mesh, parallel.sampler_rules(), cfg=pcfg
            )
        self.sampler_sh = sampler_sh
        # Each host verifies the samples it holds (multi-process), or one global call.
        where = c.reward.verify_where
        per_shard = where == "per_shard" or (where == "auto" and jax.process_count() > 1)
        self.reward_mesh = self.mesh if per_shard else None
        self.split = c.reward.host_call == "split"
        if self.split:  # rollout and learner programs, the host reward between them
            self.rl_fn = split_rl.jit_split(
                self.rl_step(data_sharding=self.data_sh, sampler_shardings=sampler_sh).keywords,
                reward_fn=self.host_reward,
                num_fields=len(SCORE_FIELDS),
                state_sh=self.state_sh,
                data_sh=self.data_sh,
                repl=self.repl,
                per_shard=per_shard,
                under_mesh=under_mesh,
            )
        else:
            self.rl_fn = jax.jit(
                under_mesh(
                    self.rl_step(
                        data_sharding=self.data_sh,
                        sampler_shardings=sampler_sh,
                        reward_mesh=self.reward_mesh,
                    )
                ),
                in_shardings=(self.state_sh, self.data_sh),
                out_shardings=(self.state_sh, self.repl),
                donate_argnums=0,
            )
        # State placement for the step functions: identity on the jit path; on the pmap
        # path a replicated copy per local device (`put_state`) and back (`host_state`).
        self.put_state = self.host_state = lambda state: state
        self.pmap = None
        if pmap_path:
            try:
                self.pmap = make_pmap_steps(self)
            except ValueError as e:
                raise config_lib.ConfigError(str(e)) from e
            self.sft_fn, self.rl_fn = self.pmap.sft_fn, self.pmap.rl_fn
            self.start_rl = self.pmap.start_rl
            self.put_state, self.host_state = self.pmap.replicate, self.pmap.unreplicate
        self._cfgs = (pcfg, vcfg)
        self.greedy_fn = self.decoder()
        self._heldout = None
        probs = self._check_lengths(warn_positions=training and load_weights and not shapes_only)
        if not shapes_only:  # the task's verifier on its own reference solutions
            try:
                warning = check_references(self.scorer, probs, strict=c.sft.steps > 0)
            except ValueError as e:
                self.close()
                raise config_lib.ConfigError(str(e), field="task") from e
            if warning:
                log.warning("%s", warning)

    def _load_hf(self, load_weights: bool):
        """Tokenizer and model config of `c.pretrained` (or of the run's copy in
        `<workdir>/hf/` when the weights are not needed); returns the policy's config."""
        c = self.c
        copy = os.path.join(self.workdir, HF_DIR)
        src = (
            copy
            if not load_weights and os.path.isfile(os.path.join(copy, "config.json"))
            else (self.pretrained)
        )
        if not os.path.isdir(src):
            raise config_lib.ConfigError(
                f"config.pretrained={self.pretrained!r}: directory not found; set it to a "
                "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)"
            )
        try:
            self.tokenizer = HFTokenizer.from_pretrained(src)
            pcfg = load_config(src, dtype=c.model.dtype)
        except (FileNotFoundError, ValueError) as e:
            raise config_lib.ConfigError(f"config.pretrained={self.pretrained!r}: {e}") from e
        pcfg = dataclasses.replace(
            pcfg, remat=c.model.remat, attention=c.model.attention, layer_loop=c.model.layer_loop
        )
        if self.tokenizer.vocab_size > pcfg.vocab_size:
            raise config_lib.ConfigError(
                f"config.pretrained={self.pretrained!r}: the tokenizer has "
                f"{self.tokenizer.vocab_size} tokens, the model's vocabulary only {pcfg.vocab_size}"
            )
        self.hf_source = src
        return pcfg

    def prompt_text(self, problem) -> str:
        """The prompt of `problem` as text: the task's, or with `c.chat` the tokenizer's
        chat template over the task's `chat_messages(problem)` (or one user message
        holding the task's prompt) with the assistant's generation prompt."""
        if not self.chat:
            return self.task.format_prompt(problem)
        make = getattr(self.task, "chat_messages", None)
        messages = (
            make(problem)
            if make is not None
            else [{"role": "user", "content": self.task.format_prompt(problem)}]
        )
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def encode_prompts(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Prompts left-padded to `max_prompt_len`: (tokens, mask)."""
        return self.tokenizer.encode_left_padded(texts, self.c.max_prompt_len, **self.prompt_kw)

    def _check_lengths(self, warn_positions: bool):
        """Fails fast, before any compute, if the task's texts do not fit the static shapes:
        512 training problems and the whole held-out set. With `warn_positions` (a training
        run) a Hugging Face checkpoint's run is warned when its longest checked prompt plus
        `max_new_tokens` passes the checkpoint's positions."""
        c = self.c
        probs = sample_mixture(self.task, np.random.default_rng([c.seed, 0]), 512, "train")
        try:
            heldout = self.heldout()
            texts = [self.prompt_text(p) for p in list(probs) + list(heldout)]
            _, mask = self.encode_prompts(texts)  # one call: the error names the longest
            train_mask, eval_mask = mask[: len(probs)], mask[len(probs) :]
            if c.sft.steps > 0:
                self.tokenizer.encode_right_padded([p.solution for p in probs], c.max_new_tokens)
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from e
        self._check_characters(probs)
        if self.pretrained and warn_positions:
            longest = int(max(train_mask.sum(1).max(), eval_mask.sum(1).max()))
            flag = "--config.max_new_tokens"
            if warning := positions_warning(self.hf_source, longest, c.max_new_tokens, flag):
                log.warning("config.pretrained=%s: %s", self.pretrained, warning)
        return probs

    def _check_characters(self, probs) -> None:
        """The character tokenizer writes printable ASCII and newlines only: a reference
        answer with any other character can never be written (ConfigError); a question or
        solution with one reads as UNK tokens (a warning)."""
        if not isinstance(self.tokenizer, CharTokenizer):
            return  # a Hugging Face tokenizer writes any text
        known = set(self.tokenizer.chars)
        heldout = self.heldout()
        answers = [str(self.task.reference_answer(p)).strip() for p in [*probs, *heldout]]
        if bad := sorted({ch for a in answers for ch in a} - known):
            example = next(a for a in answers if set(a) - known)
            raise config_lib.ConfigError(
                f"task {self.c.task!r}: the reference answer {example!r:.60} has characters "
                f"the character tokenizer cannot write ({''.join(bad)!r:.40}): the model "
                "could never answer it; write answers in printable ASCII, or train a "
                "Hugging Face model (--config.pretrained=DIR)",
                field="task",
            )
        texts = [t for p in probs for t in (p.question, p.solution)]
        texts += [p.question for p in heldout]
        if bad := sorted({ch for t in texts for ch in t} - known):
            log.warning(
                "task %r: questions or solutions have characters the character tokenizer "
                "cannot write (%r): the model reads them as one unknown token (UNK)",
                self.c.task,
                "".join(bad)[:40],
            )

    # -- checkpoints: with LoRA only the adapters (the base is the pretrained model) --------
    @staticmethod
    def checkpoint_view(state) -> dict:
        """What a checkpoint holds: the state's fields as a dict, less `base` (the frozen
        LoRA base is the pretrained model; without LoRA it is empty)."""
        return {
            f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "base"
        }

    def restore(self, ckpt: Checkpointer, phase: str, step: int):
        """(state, meta) of a checkpoint, with the LoRA base put back from `init_state`.
        State fields added after a checkpoint was written (`LATER_FIELDS`) start from the
        config, so older runs still resume and evaluate."""
        if self.init_state is None:
            raise RuntimeError(
                "Experiment.restore needs the initial state (the restore target and the "
                "LoRA base): restore before the training loop takes the state (it lets the "
                "initial one go), or build the Experiment without shapes_only"
            )
        view = self.checkpoint_view(self.init_state)
        saved = ckpt.saved_fields(phase, step)
        fresh = {k: view.pop(k) for k in LATER_FIELDS if saved is not None and k not in saved}
        fields, meta = ckpt.restore(phase, step, view)
        return TrainState(**fields, **fresh, base=self.init_state.base), meta

    def decoder(self, max_new_tokens: int | None = None, temperature=0.0, top_p=1.0):
        """The evaluation decoder (`evaluate.make_decoder`) for this run's layout: on a
        mesh of several devices traced under it, so each data-parallel device decodes its
        share of the rows, with the rollout's weight layout (`evaluate.make_mesh_decoder`);
        on the pmap path likewise over the pmap devices (a data mesh); on one device the
        plain cached decoder. `max_new_tokens` defaults to the run's."""
        kw = {
            "max_new_tokens": self.c.max_new_tokens if max_new_tokens is None else max_new_tokens,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "temperature": temperature,
            "top_p": top_p,
        }
        mesh, shardings = self.mesh, self.sampler_sh
        if self.pmap is not None:
            # The host copy (`host_state`) is replicated over the pmap devices: rows split
            # over them as on a data-parallel mesh (a plain decoder there would run on
            # every device over every row).
            mesh = parallel.make_mesh(self.pmap.n_devices, 1, 1, devices=self.pmap.devices)
            shardings = None
        return make_mesh_decoder(
            self.graphs.policy, mesh, param_shardings=shardings, cfgs=self._cfgs, **kw
        )

    def eval_params(self, state):
        """The policy's full parameters (adapters applied with LoRA) for evaluation."""
        return policy_params(self.graphs, state.policy, state.base)

    def save_hf_files(self):
        """Copies the checkpoint's config and tokenizer files (not the weights) into
        `<workdir>/hf/`, so the run evaluates without the original directory."""
        if not self.pretrained:
            return
        dst = os.path.join(self.workdir, HF_DIR)
        if os.path.abspath(self.hf_source) == os.path.abspath(dst):
            return
        os.makedirs(dst, exist_ok=True)
        for name in HF_FILES:
            f = os.path.join(self.hf_source, name)
            if os.path.isfile(f):
                tmp = os.path.join(dst, name + ".tmp")
                shutil.copyfile(f, tmp)
                os.replace(tmp, os.path.join(dst, name))

    def rl_step(self, **kw):
        """`rl_iteration` bound to this experiment (graphs, hyper-parameters, optimizers,
        host reward); `kw` adds the parallel layout (`data_sharding` or `axis_name`)."""
        return functools.partial(
            rl_iteration,
            graphs=self.graphs,
            hp=config_lib.rl_hyper(self.c, self.eos_id, self.pad_id),
            policy_tx=self.policy_tx,
            value_tx=self.value_tx,
            reward_fn=self.host_reward,
            num_score_fields=len(SCORE_FIELDS),
            **kw,
        )

    # -- data: pure functions of (seed, phase, step) ---------------------------------------
    def device_batch(self, batch):
        """Host batch -> global arrays laid out by `data_sh`. Every process builds the same
        whole batch (a pure function of seed and step) and fills only its own shards, which
        is what jit needs when the mesh spans several processes. The pmap steps take the
        host batch as it is and split it themselves."""
        if self.pmap is not None:
            return batch
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(
                np.shape(x), self.data_sh, lambda idx: np.asarray(x)[idx]
            ),
            batch,
        )

    def sft_batch(self, step: int) -> SFTBatch:
        c = self.c
        length = c.max_prompt_len + c.max_new_tokens
        rng = np.random.default_rng([c.seed, 1, step])
        examples = [
            (
                self.tokenizer.encode(self.prompt_text(p), **self.prompt_kw),
                self.tokenizer.encode(p.solution) + [self.eos_id],
            )
            for p in sample_mixture(self.task, rng, c.sft.max_examples, "train")
        ]
        return pack_examples(examples, c.sft.rows, length, self.pad_id)

    def rl_problems(self, iteration: int) -> list:
        """The prompts' problems of RL iteration `iteration` (a pure function of it)."""
        c = self.c
        weights = tuple(c.rl.level_weights) if c.rl.level_weights else None
        return sample_mixture(
            self.task,
            np.random.default_rng([c.seed, 2, iteration]),
            c.rl.prompts_per_iter,
            "train",
            weights,
        )

    def rl_batch(self, iteration: int) -> PromptBatch:
        probs = self.rl_problems(iteration)
        texts = [self.prompt_text(p) for p in probs]
        try:
            prompt, pmask = self.encode_prompts(texts)
        except ValueError as e:  # a rare long prompt the start's 512 did not meet
            raise RunError(
                f"RL iteration {iteration}: {e}. The start checks 512 training prompts; this "
                f"one is rarer. max_prompt_len shapes the compiled programs, so a resume keeps "
                f"it: start a new --workdir with a larger --config.max_prompt_len, or make "
                f"the task's long prompts shorter (the checkpoints so far are intact)"
            ) from e
        # The references stay on the host (any length); the batch carries their ids.
        ref = self.host_reward.register(iteration, probs, texts)
        return PromptBatch(prompt, pmask, ref)

    def heldout(self):
        if self._heldout is None:
            self._heldout = evaluation_set(self.task, self.c.eval.num_problems, self.c.eval.seed)
        return self._heldout

    def evaluate(self, params, **kw) -> dict:
        c = self.c
        return evaluate(
            params,
            self.heldout(),
            scorer=self.scorer,
            tokenizer=self.tokenizer,
            prompt_text=self.prompt_text,
            encode_prompts=self.encode_prompts,
            greedy=self.greedy_fn,
            batch_size=c.eval.batch_size,
            **kw,
        )

    def evaluate_curve(self, params) -> dict:
        """The learning curve's point: the first `eval.curve_problems` of the held-out set
        (a fixed subset, cheap enough to evaluate every `eval.curve_every` iterations)."""
        c = self.c
        return evaluate(
            params,
            self.heldout()[: c.eval.curve_problems],
            scorer=self.scorer,
            tokenizer=self.tokenizer,
            prompt_text=self.prompt_text,
            encode_prompts=self.encode_prompts,
            greedy=self.greedy_fn,
            batch_size=min(c.eval.batch_size, c.eval.curve_problems),
        )

    def close(self):
        self.scorer.close()


def compile_report(c, mesh=None) -> dict:
    """Ahead-of-time check: lowers and compiles the SFT step and the RL iteration for the
    configured mesh from shapes alone (no state allocated, no weights read, no reward
    worker started), and reports memory per device (bytes, from XLA's memory analysis;
    None where the backend does not report it). Writes nothing. With
    `reward.host_call="split"` the RL iteration's entry holds its two programs
    (`rollout`, `learn`) and, at the top, the larger of their figures (the rollout's
    outputs are the learner's inputs: the iteration's peak is the larger program's).
    `sft_step` is None when `sft.steps` is 0: the run has no SFT phase to compile."""
    exp = Experiment(c, "/nonexistent-compile-only", mesh, load_weights=False, shapes_only=True)
    try:
        shape = lambda tree: jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), tree
        )
        state = exp.state_shapes  # shapes only: nothing allocated, no weights read
        out = {
            "devices": int(exp.mesh.size),
            "mesh": {k: int(v) for k, v in exp.mesh.shape.items()},
            "backend": jax.default_backend(),
        }
        rl_batch = shape(exp.rl_batch(0))
        sft = c.sft.steps > 0
        steps = [("sft_step", exp.sft_fn, (state, shape(exp.sft_batch(0))))] if sft else []
        rl_fn = exp.rl_fn
        if exp.pmap is not None:  # the raw pmapped steps: a leading device axis everywhere
            d = exp.pmap.n_devices
            state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((d, *x.shape), x.dtype), state)
            out["devices"] = d
            rl_batch = shape(shard_batch(exp.rl_batch(0), d))
            sft_batch = shape(shard_batch(exp.sft_batch(0), d))
            steps = [("sft_step", exp.pmap.sft_pmapped, (state, sft_batch))] if sft else []
            rl_fn = exp.pmap.rl_pmapped
        if isinstance(rl_fn, split_rl.SplitIteration):
            steps += [(f"rl_{k}", f, a) for k, f, a in rl_fn.programs(state, rl_batch)]
        else:
            steps.append(("rl_iteration", rl_fn, (state, rl_batch)))
        if not sft:
            out["sft_step"] = None
        for name, fn, args in steps:
            t = time.time()
            compiled = fn.lower(*args).compile()
            mem = compiled.memory_analysis()
            get = lambda k, mem=mem: None if mem is None else int(getattr(mem, k, 0) or 0)
            out[name] = {
                "compile_seconds": round(time.time() - t, 2),
                "argument_bytes": get("argument_size_in_bytes"),
                "output_bytes": get("output_size_in_bytes"),
                "temp_bytes": get("temp_size_in_bytes"),
                "generated_code_bytes": get("generated_code_size_in_bytes"),
            }
            if mem is not None:
                out[name]["peak_bytes_estimate"] = sum(
                    out[name][k] for k in ("argument_bytes", "output_bytes", "temp_bytes")
                )
        if "rl_rollout" in out:  # the split iteration: its two programs, and the largest
            parts = {k: out.pop(f"rl_{k}") for k in ("rollout", "learn")}
            rl = {"compile_seconds": round(sum(p["compile_seconds"] for p in parts.values()), 2)}
            for k in parts["learn"]:
                if k != "compile_seconds":
                    vals = [p[k] for p in parts.values() if p.get(k) is not None]
                    rl[k] = max(vals) if vals else None
            out["rl_iteration"] = {**rl, **parts}
        return out
    finally:
        exp.close()
