"""RL from a Hugging Face checkpoint on GSM8K (`experiments/gsm8k_qwen.py:tiny`): a tiny
random Qwen2 written by `save_pretrained` with a BPE tokenizer trained here, the run's
workdir evaluated with accuracy (pass@1)/maj@k, exact resume, LoRA (adapters only in checkpoints,
base frozen), chunked reference log-probs, and config errors."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from r1jax._testing import gsm8k_tokenizer, write_gsm8k, write_tokenizer
from r1jax.checkpoint import Checkpointer
from r1jax.checkpoint_eval import evaluate_workdir
from r1jax.config import ConfigError
from r1jax.configs.gsm8k_qwen import get_config
from r1jax.models.hf import load_pretrained_params, save_pretrained
from r1jax.models.transformer import CausalLM, ModelConfig
from r1jax.tasks.gsm8k import R1_SYSTEM_PROMPT
from r1jax.train.experiment import Experiment
from r1jax.train.loop import train
from r1jax.train.metrics import read_metrics


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    data = write_gsm8k(root / "gsm8k")
    tok = gsm8k_tokenizer()
    ckpt = root / "ckpt"
    cfg = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        n_layers=1,
        n_heads=4,
        n_kv_heads=2,
        head_dim=8,
        mlp_dim=64,
        qkv_bias=True,
        tie_embeddings=False,
    )
    save_pretrained(CausalLM(cfg, rngs=nnx.Rngs(5)), ckpt, "qwen2")
    write_tokenizer(tok, ckpt)
    return str(ckpt), data


def _config(hf_dirs, **rl):
    ckpt, data = hf_dirs
    c = get_config("tiny")
    c.pretrained = ckpt
    c.task_kwargs.path = data
    # A random checkpoint earns no reward, so GRPO's advantages are 0, and the KL to the
    # reference is exactly 0 at the start (same numbers in both passes): the entropy
    # bonus is the learning signal that makes three iterations move the weights.
    c.rl.entropy_coef = 1e-2
    c.rl.update(rl)
    return c


@pytest.fixture(scope="module")
def grpo_run(hf_dirs, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("grpo"))
    return workdir, train(_config(hf_dirs), workdir)


def _leaves(tree):
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def test_run_starts_from_the_checkpoint_and_keeps_its_tokenizer(hf_dirs, grpo_run):
    workdir, summary = grpo_run
    assert summary["steps"] == {"sft": 0, "rl": 3}
    assert 0.0 <= summary["rl"]["accuracy"] <= 1.0
    # The config and tokenizer travel with the run (not the weights).
    assert sorted(os.listdir(os.path.join(workdir, "hf"))) == [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    # The step-0 checkpoint (RL start, no SFT) holds exactly the pretrained weights.
    exp = Experiment(_config(hf_dirs), workdir, load_weights=False)
    ckpt = Checkpointer(workdir)
    try:
        state, _ = exp.restore(ckpt, "sft", 0)
        final, _ = exp.restore(ckpt, "rl", 3)
    finally:
        ckpt.close()
        exp.close()
    _, weights = load_pretrained_params(hf_dirs[0])
    want, got = _leaves(weights), _leaves(state.policy)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert state.value == {}  # GRPO keeps no critic
    moved = [k for k in want if not np.array_equal(_leaves(final.policy)[k], want[k])]
    assert moved, "RL did not change the policy"
    rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["phase"] == "rl"]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all("format" in r for r in rows)


def test_workdir_eval_is_reproducible(grpo_run):
    workdir, _ = grpo_run
    kw = dict(num_problems=3, k=2, max_new_tokens=6, batch_size=2, seed=1)
    a = evaluate_workdir(workdir, **kw)
    b = evaluate_workdir(workdir, **kw)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["step"] == 3 and a["phase"] == "rl" and a["num_problems"] == 3 and a["k"] == 2
    for key in ("accuracy", "maj@2", "pass@2", "sample_accuracy", "format_rate"):
        assert 0.0 <= a[key] <= 1.0
    sft = evaluate_workdir(workdir, step=0, **kw)
    assert sft["step"] == 0 and sft["phase"] == "sft"


def test_resume_continues_as_if_never_stopped(hf_dirs, grpo_run, tmp_path):
    full_dir, _ = grpo_run
    workdir = str(tmp_path / "resumed")
    assert train(_config(hf_dirs), workdir, stop_after=2) == {}
    train(_config(hf_dirs), workdir)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "iter_seconds"} for r in rows]
    full = drop(read_metrics(os.path.join(full_dir, "metrics.jsonl")))
    resumed = drop(read_metrics(os.path.join(workdir, "metrics.jsonl")))
    assert resumed == full


def test_lora_trains_adapters_only_and_checkpoints_hold_only_them(hf_dirs, tmp_path):
    workdir = str(tmp_path / "lora")
    c = _config(hf_dirs)
    c.lora.update(rank=2, targets="all")
    summary = train(c, workdir)
    assert summary["steps"]["rl"] == 3
    exp = Experiment(c, workdir)  # LoRA needs the base weights: load_weights=True
    ckpt = Checkpointer(workdir)
    try:
        raw, _ = ckpt.restore("rl", 3, exp.checkpoint_view(exp.init_state))
        state, _ = exp.restore(ckpt, "rl", 3)
        full = exp.eval_params(state)
    finally:
        ckpt.close()
        exp.close()
    assert "base" not in raw  # the frozen base is not in the checkpoint
    adapters = _leaves(state.policy)
    assert adapters and all(k.endswith(("['a']", "['b']")) for k in adapters)
    assert any(np.abs(v).max() > 0 for k, v in adapters.items() if k.endswith("['b']"))
    # The base stays the pretrained model; only the adapted kernels differ from it.
    _, weights = load_pretrained_params(hf_dirs[0])
    base, want, got = _leaves(state.base), _leaves(weights), _leaves(full)
    for k in want:
        np.testing.assert_array_equal(base[k], want[k], err_msg=k)
        adapted = k.endswith("['kernel']") and "proj" in k and "lm_head" not in k
        assert adapted != np.array_equal(got[k], want[k]), k
    # Optimizer moments only over the adapters.
    n_adapter = sum(v.size for v in adapters.values())
    n_opt = sum(np.size(x) for x in jax.tree.leaves(state.policy_opt))
    assert n_opt < 3 * n_adapter + 10
    result = evaluate_workdir(workdir, num_problems=2, k=1, max_new_tokens=4, batch_size=2)
    assert result["step"] == 3
    # Resuming from an adapters-only checkpoint continues exactly.
    resumed = str(tmp_path / "lora_resumed")
    assert train(c, resumed, stop_after=2) == {}
    train(c, resumed)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "iter_seconds"} for r in rows]
    assert drop(read_metrics(os.path.join(resumed, "metrics.jsonl"))) == drop(
        read_metrics(os.path.join(workdir, "metrics.jsonl"))
    )


def test_chunked_reference_logprobs_match_one_pass(hf_dirs, tmp_path):
    metrics = []
    for chunk in (0, 2):  # 0: the learner's microbatches (4 rows); 2: one group a pass
        exp = Experiment(_config(hf_dirs, logp_chunk=chunk), str(tmp_path / f"c{chunk}"))
        try:
            state = exp.start_rl(exp.init_state)
            _, m = exp.rl_fn(state, exp.device_batch(exp.rl_batch(0)))
            metrics.append(jax.device_get(m))
        finally:
            exp.close()
    for k in ("loss", "kl", "entropy"):
        np.testing.assert_allclose(metrics[0][k], metrics[1][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_chat_prompts_and_config_errors(hf_dirs, tmp_path):
    c = _config(hf_dirs)
    c.chat = True
    exp = Experiment(c, str(tmp_path / "chat"))
    try:
        problem = exp.task.problems("test")[0]
        text = exp.prompt_text(problem)
        # No template in tokenizer_config.json: ChatML with the R1 instruction as system.
        assert text.startswith("<|im_start|>system\n" + R1_SYSTEM_PROMPT)
        assert text.endswith(f"{problem.question}<|im_end|>\n<|im_start|>assistant\n")
        assert exp.prompt_kw == {}
    finally:
        exp.close()

    c = get_config("tiny")
    c.task_kwargs.path = hf_dirs[1]
    with pytest.raises(ConfigError, match="config.pretrained"):
        Experiment(c, str(tmp_path / "none"))
    c.pretrained = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="directory not found"):
        Experiment(c, str(tmp_path / "missing_run"))
    c = _config(hf_dirs)
    c.lora.update(rank=2, targets="q_proj,vproj")
    with pytest.raises(ConfigError, match="lora"):
        Experiment(c, str(tmp_path / "bad_lora"))
    c = _config(hf_dirs)
    c.max_prompt_len = 8
    with pytest.raises(ConfigError, match="max_prompt_len"):
        Experiment(c, str(tmp_path / "short"))


def _eval_cli(*args):
    import subprocess
    import sys

    code = "import sys; from r1jax.main import eval_entry; eval_entry(['prog', *sys.argv[1:]])"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_eval_cli_on_a_gsm8k_workdir(grpo_run, tmp_path):
    workdir, _ = grpo_run
    out = tmp_path / "eval.json"
    args = ["--workdir", workdir, "--num_problems=2", "--k=2", "--max_new_tokens=4"]
    r = _eval_cli(*args, "--batch_size=2", f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert printed["num_problems"] == 2 and "maj@2" in printed and printed["step"] == 3
    r = _eval_cli(*args, "--chat")
    assert r.returncode == 2 and "--chat" in r.stderr


def test_training_warns_past_max_position_embeddings(hf_dirs, tmp_path, caplog):
    """A run from a checkpoint whose max_position_embeddings is shorter than the longest
    prompt + max_new_tokens is warned (naming a --config.max_new_tokens that fits) and
    goes on; within the limit, or when only evaluating a run, it is not."""
    import logging
    import shutil

    ckpt = tmp_path / "short"
    shutil.copytree(hf_dirs[0], ckpt)
    meta = json.loads((ckpt / "config.json").read_text())

    def warnings_of(limit, **kw):
        (ckpt / "config.json").write_text(json.dumps({**meta, "max_position_embeddings": limit}))
        c = _config((str(ckpt), hf_dirs[1]))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="r1jax"):
            Experiment(c, str(tmp_path / f"run{limit}"), **kw).close()
        return [
            r.getMessage() for r in caplog.records if "max_position_embeddings" in r.getMessage()
        ]

    (warning,) = warnings_of(150)
    assert "the checkpoint's max_position_embeddings (150)" in warning, warning
    longest = int(warning.split("the longest prompt (", 1)[1].split()[0])
    fits = int(warning.rsplit("--config.max_new_tokens=", 1)[1].split()[0])
    assert 100 < longest < 150 and fits == 150 - longest < 16  # the tiny config decodes 16
    assert warnings_of(longest + 16) == []
    assert len(warnings_of(longest + 15)) == 1
    assert warnings_of(150, load_weights=False) == []  # evaluation: no warning
    assert warnings_of(150, training=False) == []  # (a LoRA run's evaluation loads weights)
    (alone,) = warnings_of(longest - 1)
    assert f"the longest prompt ({longest} tokens) alone reaches" in alone, alone
