"""The embedded default: a tiny char-level transformer learns layered arithmetic.

It ships inside the package so an installed r1jax runs with no other files;
`experiments/arith_tiny.py` exposes it under the experiments folder.

Run (the default of `r1jax-train`, so no flag is needed):

  r1jax-train --workdir=runs/arith_tiny
  r1jax-train --config=experiments/arith_tiny.py:smoke --workdir=/tmp/smoke   # seconds
  r1jax-train --config.rl.algo=grpo --workdir=runs/arith_grpo                # GRPO

  r1jax-train --config=experiments/arith_tiny.py:r1 --workdir=runs/arith_r1     # R1 format

Variants are chosen with the `:arg` suffix: "" (default), "smoke" (a seconds-long
run used by the tests) or "r1" (the default in DeepSeek-R1's <think>/<answer> layout,
with the format reward on).
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds the model init, data streams and sampling
    c.task = "arithmetic"  # a name registered with r1jax.tasks.register_task
    c.task_module = ""  # module that registers c.task: a dotted name or a .py file path,
    # imported by r1jax-train and r1jax-eval before the task is built ("" = built-in tasks)
    c.task_kwargs = ml_collections.ConfigDict(
        dict(
            verbose_prob=0.6,  # share of SFT references with redundant steps
            verbose_style="long_route",  # multiplications as repeated addition (else a final
            # check); also "final_check", "restate" givens, "check" every step
            test_fraction=0.1,  # share of question space held out (hash split)
            max_operand=12,  # largest number written in a question
            max_factor=5,  # largest multiplier / divisor
            max_number=60,  # largest intermediate result
            solution_style="plain",  # "plain": step lines then "#### N"; "r1": <think> steps
            # </think><answer>N</answer> (the ":r1" variant)
        )
    )
    c.pretrained = ""  # Hugging Face checkpoint dir (Qwen2/Llama): its config.json sizes the
    # model (model.dtype / model.remat still apply), its tokenizer.json replaces the char
    # tokenizer and its weights start the policy; "" = the char-level model below
    c.pretrained_required = False  # True: the config has no model of its own (gsm8k_qwen)
    c.chat = False  # prompts through the tokenizer's chat template (needs `pretrained`)
    c.max_prompt_len = 160  # P, prompt tokens (left-padded)
    c.max_new_tokens = 96  # T, completion tokens (reference + EOS must fit)

    c.model = ml_collections.ConfigDict(
        dict(
            d_model=64,  # D
            n_layers=2,  # decoder blocks
            n_heads=2,  # H query heads
            n_kv_heads=1,  # K key/value heads (GQA: H/K queries share one)
            head_dim=32,  # Dh (few wide heads are fastest on CPU)
            mlp_dim=192,  # SwiGLU hidden width
            rope_theta=10000.0,  # RoPE base
            dtype="float32",  # compute dtype: "bfloat16" = bf16 matmuls, fp32 master
            # weights and fp32 softmax / logits / log-probs / losses (accelerators)
            remat="none",  # rematerialise blocks in training: none | full | dots | dots_saveable
            attention="auto",  # multi-position passes: "auto" (cuDNN flash attention on a
            # GPU in bf16, splash on a TPU, else "einsum"), "einsum", "xla" or "cudnn"
            # (jax.nn.dot_product_attention), "splash" (the Pallas TPU kernel)
            layer_loop="auto",  # blocks of the training/reference passes: "scan" (one
            # lax.scan, compiles one block), "unroll", "auto" (scan from 8 blocks on)
        )
    )
    c.lora = ml_collections.ConfigDict(
        dict(
            rank=0,  # > 0: train LoRA adapters of this rank over a frozen base (checkpoints
            # then hold only the adapters); 0 = full-parameter training
            alpha=16.0,  # adapter scale = alpha / rank
            targets="all",  # "all" (the 7 projections of a block) or comma-separated
            # names from q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
        )
    )
    c.value_model = ml_collections.ConfigDict(
        dict(
            n_layers=1,  # critic depth (other fields as in `model`)
        )
    )

    c.sft = ml_collections.ConfigDict(
        dict(
            steps=600,  # SFT warm-start steps
            rows=32,  # packed rows per step, each max_prompt_len + max_new_tokens
            max_examples=96,  # problems drawn per step; those that do not fit are dropped
            lr=6e-3,  # peak AdamW learning rate; 3e-3 gives about the same greedy accuracy
            # but a policy that RL improves far less (after RL, 2,048 held-out problems:
            # 0.673 vs 0.717 on seed 0, 0.572 vs 0.713 on seed 1; BENCHMARKS.md)
            warmup=100,  # linear warmup steps
            weight_decay=0.01,  # AdamW decoupled weight decay
            grad_clip=1.0,  # global-norm gradient clip
            grad_accum=1,  # microbatches per step (gradients summed, one update)
            logit_chunk=0,  # > 0: the loss from the hidden states, this many positions at
            # a time (no [rows, S, V] logits tensor; large vocabularies); 0 = whole logits
        )
    )

    c.rl = ml_collections.ConfigDict(
        dict(
            algo="ppo",  # "ppo" (critic + GAE), "grpo" (group-relative, no critic) or
            # "dr_grpo" (GRPO without std or length normalisation); r1jax.rl.ALGORITHMS
            iterations=150,  # RL iterations (one compiled program each; ~2.3 s each on 2 cores)
            prompts_per_iter=32,  # B, prompts per iteration
            group_size=8,  # G, samples per prompt (N = B·G rollouts)
            temperature=1.0,  # τ, sampling temperature
            epochs=1,  # K, policy epochs per iteration
            num_minibatches=4,  # M, minibatches per epoch (N % M == 0)
            grad_accum=1,  # microbatches per minibatch (gradients summed, one update)
            length_buckets=3,  # learner on the completion axis cut to the first of k equal
            # steps of max_new_tokens (32, 64, 96) that holds the batch's longest completion:
            # same numbers, ~0.7x the iteration at 64 (8-11 of 15 logged default iterations),
            # one program with k learner copies (+~13 s compile); 1 = all positions always
            logp_chunk=0,  # rows per reference log-prob pass (0 = the learner's microbatch
            # shape: the reference pass and the learner compute the same numbers)
            logit_chunk=96,  # positions per log-prob/entropy pass of the reference and the
            # learner, from the hidden states (>= T: one pass; large vocabularies: fewer, so
            # never the whole [rows, T, V]; 0 = whole logits, which may differ between the
            # reference pass and the learner by float rounding)
            policy_lr=4e-4,  # policy learning rate (slow time scale)
            value_lr=1e-3,  # critic learning rate (fast time scale)
            value_epochs=1,  # critic epochs per iteration
            warmup=5,  # RL learning-rate warmup iterations
            weight_decay=0.0,  # AdamW weight decay in RL
            grad_clip=1.0,  # global-norm gradient clip
            gamma=1.0,  # γ discount
            lam=0.95,  # λ of GAE
            vf_clip=0.2,  # value-function clip range
            eps_low=0.2,  # ε_low initial lower clip
            eps_high=0.28,  # ε_high initial upper clip (clip-higher)
            adaptive_clip=True,  # adapt ε each iteration toward clip_target
            clip_signal="kl",  # "kl" (approx KL old→new) or "clip_frac"
            clip_target=0.002,  # target of the clip signal (per-update KL on the default)
            clip_rate=0.1,  # multiplicative step of ε per iteration
            eps_min=0.05,  # lower clamp of ε
            eps_max=0.4,  # upper clamp of ε
            kl_coef=0.1,  # β, weight of KL(π‖π_ref) in the loss (initial β with adaptive_kl)
            adaptive_kl=False,  # adapt β each iteration toward kl_target (Ziegler et al. 2019)
            kl_target=0.05,  # KL_target: mean per-token KL(π‖π_ref) of the rollouts
            kl_horizon=100.0,  # H: β changes by at most 20%/H per iteration
            kl_estimator="k3",  # "k1" | "k2" | "k3"
            loss_agg="token_mean",  # "token_mean" | "seq_mean_token_mean" | "seq_mean_token_sum_norm"
            grpo_scale_by_std=True,  # False gives Dr. GRPO
            entropy_coef=1e-3,  # β_H initial entropy-bonus coefficient (> 0)
            adaptive_entropy=False,  # adapt β_H toward entropy_target
            entropy_target=0.3,  # target mean token entropy (nats)
            entropy_lr=0.05,  # step size on log β_H
            top_entropy_q=1.0,  # < 1: policy gradient on the top-q highest-entropy tokens
            prioritized=False,  # sample minibatches by |advantage| (IS-weighted)
            priority_alpha=1.0,  # α of prioritized sampling
            level_weights=(0.1, 0.8, 0.1),  # RL prompt mix over levels (eval keeps the task's
            # 60/30/10): one-step problems are ~93% solved after SFT, so RL spends its
            # samples where the headroom is; () = the task's mix
        )
    )

    c.reward = ml_collections.ConfigDict(
        dict(
            w_correctness=0.6,  # weight of correctness (answer + steps)
            w_efficiency=0.3,  # weight of efficiency
            w_novelty=0.1,  # weight of tree-search novelty of correct solutions
            w_format=0.0,  # weight of R1's <think>…</think><answer>…</answer> format reward
            w_subgoal=0.0,  # weight of the subgoal (process) part: share of the shortest
            # solution's intermediate values reached by valid steps, wrong answers included;
            # a prototype at 0.1 gained +0.5 points on 2,048 fresh problems (BENCHMARKS.md)
            step_weight=0.4,  # share of correctness given by valid steps (> 0.25 keeps a
            # bare "#### N" below a valid one-step solution)
            efficiency_mode="inverse",  # "inverse": 1/(1+steps); "time_decay": decay**steps
            efficiency_decay=0.8,  # decay of the time-decay mode
            efficiency_requires_correct=True,  # no efficiency credit for a wrong answer
            step_credit_requires_correct=True,  # no step credit for a wrong answer (no truncation hack)
            dense_mix=0.0,  # share of the step credit put on step-end tokens (PPO; dense+sparse)
            step_shaping=0.0,  # α of potential-based step shaping: −α on the first wrong
            # step's last token (else on the last token); PPO only (rewards.dense)
            noise_std=0.0,  # σ of Gaussian noise on the total reward (anti reward hacking)
            perturb_prob=0.0,  # chance of a verdict-preserving surface rewrite before scoring
            num_workers=2,  # verifier worker processes (0 = inline)
            deadline_s=2.0,  # hard per-item verification deadline (seconds)
            verify_where="auto",  # "per_shard": each host verifies the batch shards it
            # holds; "global": one call on the whole batch; "auto": per_shard if multi-process
            host_call="split",  # "split": the RL iteration runs as two compiled programs,
            # rollout then learner, with the host reward between them (both kept in the
            # persistent compile cache); "io_callback": one program calling the host reward
            # inside it (JAX never caches a program with host callbacks: recompiled per start)
        )
    )

    c.eval = ml_collections.ConfigDict(
        dict(
            num_problems=256,  # held-out problems (fixed set)
            batch_size=128,  # problems per greedy-decoding batch
            seed=1234,  # seed of the held-out set (independent of c.seed)
            every=0,  # RL iterations between held-out evals (0 = only ends)
            curve_every=15,  # RL iterations between evaluations of a fixed held-out subset
            # (the learning curve in metrics.jsonl "curve" rows and the plot); 0 = none
            curve_problems=128,  # size of that subset: the first of the held-out set
        )
    )

    c.parallelism = "jit"  # "jit" (one program over the mesh below) | "pmap" (data parallel)
    c.mesh = ml_collections.ConfigDict(
        dict(
            data=-1,  # data-parallel axis size (-1 = the devices left by fsdp × tensor)
            fsdp=1,  # fully-sharded data parallel: params/optimizer split, batch split too
            tensor=1,  # tensor parallel: heads, MLP and vocab dimensions split
        )
    )
    c.log_every = 10  # steps between metric fetches / log lines
    c.checkpoint_every = 20  # RL iterations between checkpoints
    c.keep_checkpoints = 2  # checkpoints kept (the SFT one is always kept)

    if arg == "smoke":
        c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64)
        c.value_model.n_layers = 1
        c.sft.update(steps=6, rows=8, max_examples=24, warmup=2)  # rows, prompts: 8 devices
        c.rl.update(
            length_buckets=1,  # one learner copy to compile (tests set more where needed)
            iterations=4,
            prompts_per_iter=8,
            group_size=2,
            epochs=1,
            num_minibatches=2,
            value_epochs=1,
        )
        c.eval.update(num_problems=8, batch_size=8, curve_every=2, curve_problems=4)
        c.log_every = 1
        c.checkpoint_every = 2
        c.reward.num_workers = 1
    elif arg == "r1":
        # DeepSeek-R1's layout: references "<think>\n7*4=28\n...\n</think>\n<answer>N</answer>"
        # (the tags are one token each), scored by the task's own verifier (the answer
        # inside <answer>, the steps inside <think>) with R1's format reward on.
        c.task_kwargs.solution_style = "r1"
        c.reward.w_format = 0.1
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of arith_tiny; use '', 'smoke' or 'r1'")
    return c
