"""GRPO on GSM8K from a pretrained Hugging Face checkpoint (Qwen2.5 / Llama 3.2), R1-Zero style.

The policy starts from `--config.pretrained=DIR` (a Qwen2 or Llama directory with
config.json, *.safetensors and tokenizer.json; its config.json sizes the model). There
is no SFT phase: RL starts from the checkpoint, GRPO with 8 samples per prompt and the
composite reward (0.6 correctness, 0.3 efficiency, 0.1 novelty, plus 0.1 for R1's
<think>…</think><answer>…</answer> format). Prompts are `tasks.gsm8k.R1_TEMPLATE`
(base and instruct models); `--config.chat=True` renders the R1 instruction through the
checkpoint's chat template instead (instruct models).

One GPU (H100/H200, bf16 matmuls over float32 master weights):

  r1jax-train --config=experiments/gsm8k_qwen.py --workdir=runs/gsm8k_qwen \\
      --config.pretrained=/path/to/Qwen2.5-0.5B-Instruct \\
      --config.task_kwargs.path=/path/to/gsm8k      # train.jsonl + test.jsonl
  r1jax-eval --workdir=runs/gsm8k_qwen --k=8        # pass@1 and maj@8 on GSM8K test

LoRA instead of full-parameter RL: `--config.lora.rank=16` (checkpoints then hold only
the adapters). A TPU slice or several GPUs: `--config.mesh.fsdp=N` (and/or
`mesh.tensor`), see README "Flags that matter" and "Multi-host: TPU pods and GPU
clusters".

Variant `:tiny` is the same pipeline at CPU size (short prompts and completions, a
handful of prompts): the tests run it on a tiny random checkpoint.
"""

import ml_collections

from r1jax.configs import arith_tiny


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = arith_tiny.get_config()
    c.task = "gsm8k"
    c.task_kwargs = ml_collections.ConfigDict(
        dict(
            path="../shared/data/gsm8k",  # directory with train.jsonl and test.jsonl
            solution_style="r1",  # SFT targets (if sft.steps > 0) in the R1 format
        )
    )
    c.pretrained = ""  # required: --config.pretrained=DIR (Hugging Face Qwen2/Llama)
    c.pretrained_required = True  # this config has no model of its own
    c.chat = False  # True: the R1 instruction through the checkpoint's chat template
    c.max_prompt_len = 384  # instruction + the longest GSM8K question, with margin
    c.max_new_tokens = 512  # reasoning + answer
    # The architecture comes from the checkpoint's config.json; model.dtype, remat,
    # attention and layer_loop still apply (layer_loop "auto": one lax.scan over its blocks).
    c.model.update(dtype="bfloat16", remat="dots")
    # Full-parameter RL; LoRA: --config.lora.rank=16 --config.lora.alpha=32 (and
    # --config.rl.policy_lr=1e-5).
    c.sft.update(steps=0, logit_chunk=64, grad_accum=4)  # R1-Zero: RL straight from the
    # checkpoint. An SFT cold start (sft.steps > 0) forms [rows, 64, V] logits at a time,
    # not [rows, S, V], in 4 microbatches of 8 packed rows (0.5B: 19 GB of temporaries in
    # XLA:CPU's estimate, against 49 GB in one batch of 32)
    c.rl.update(
        algo="grpo",
        iterations=200,
        prompts_per_iter=32,  # B (x 8 samples = 256 completions per iteration)
        group_size=8,  # G
        temperature=1.0,
        epochs=1,
        num_minibatches=8,  # 32 completions per optimizer update
        grad_accum=4,  # ... in microbatches of 8 (activation memory)
        policy_lr=1e-6,  # full-parameter RL; use ~1e-5 with LoRA
        warmup=10,
        kl_coef=0.001,
        eps_low=0.2,
        eps_high=0.28,
        adaptive_clip=False,
        loss_agg="token_mean",
        level_weights=(),  # uniform over the train problems
        logp_chunk=0,  # reference log-probs in the learner's microbatches (8 rows)
        logit_chunk=32,  # ... and 32 positions at a time, in the learner too ([rows, 32, V])
        length_buckets=1,  # e.g. 4 (128, 256, 384, 512) when completions are mostly short:
        # less learner work, 4 learner copies to compile (not yet measured on a GPU)
        entropy_coef=0.0,
    )
    c.reward.update(
        w_correctness=0.6,
        w_efficiency=0.3,
        w_novelty=0.1,
        w_format=0.1,
        num_workers=4,
        deadline_s=2.0,
    )
    c.eval.update(
        num_problems=256, batch_size=64, seed=1234, every=50, curve_every=20, curve_problems=64
    )  # the learning curve: 64 test problems every 20 iterations
    c.log_every = 1
    c.checkpoint_every = 20

    if arg == "tiny":
        c.max_prompt_len = 256
        c.max_new_tokens = 16
        c.model.update(dtype="float32", remat="none")
        c.rl.update(
            iterations=3,
            prompts_per_iter=4,
            group_size=2,
            num_minibatches=2,
            grad_accum=1,
            policy_lr=1e-3,
            warmup=1,
        )
        c.reward.num_workers = 1
        c.eval.update(num_problems=4, batch_size=4, every=0)
        c.checkpoint_every = 2
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of gsm8k_qwen; use '' or 'tiny'")
    return c
