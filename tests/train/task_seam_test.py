"""The seam between a task and its scoring, through the trainer's own reward path.

Every config in `experiments/` and every registered task drives a right and a wrong
completion through `Experiment.host_reward` (the io_callback target of the RL
iteration) and sees the difference; one jitted RL iteration on GSM8K scores its rows by
their `<answer>`; references of any length reach the host.
"""

import importlib.util
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from r1jax._testing import gsm8k_tokenizer, write_gsm8k, write_tokenizer
from r1jax.configs.arith_tiny import get_config as arith_config
from r1jax.models.hf import save_pretrained
from r1jax.models.transformer import CausalLM, ModelConfig
from r1jax.rewards import SCORE_FIELDS, FreeFormVerifier
from r1jax.tasks import DOMAINS, Problem, register_task, sample_in_split
from r1jax.train import loop
from r1jax.train.experiment import Experiment
from r1jax.train.rl_step import generate

COL = {k: i for i, k in enumerate(SCORE_FIELDS)}
EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")


def _experiment_config(name, arg):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seam")
    data = write_gsm8k(root / "gsm8k")
    tok = gsm8k_tokenizer()
    cfg = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        head_dim=8,
        mlp_dim=32,
        qkv_bias=True,
        tie_embeddings=False,
    )
    save_pretrained(CausalLM(cfg, rngs=nnx.Rngs(0)), root / "ckpt", "qwen2")
    write_tokenizer(tok, root / "ckpt")
    return str(root / "ckpt"), data


def _small(c):
    """Any config at test size: the reward path does not depend on the model's size."""
    with c.unlocked():
        if not c.get("pretrained_required"):  # else the checkpoint's config.json sizes it
            c.model.update(d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)
        c.rl.update(prompts_per_iter=4, group_size=2, num_minibatches=2, grad_accum=1)
        c.rl.logp_chunk = 0
        c.eval.update(num_problems=4, batch_size=4)
        c.reward.num_workers = 0
    return c


def _wrong(solution: str, answer: str) -> str:
    """The solution with its last occurrence of the answer replaced by another value."""
    other = str(int(answer) + 1) if answer.lstrip("-").isdigit() else answer + "1"
    i = solution.rfind(answer)
    return solution[:i] + other + solution[i + len(answer) :]


def _right_and_wrong(exp):
    """Scores (host reward, as inside the RL iteration) of each problem's reference
    solution and of the same solution with a wrong final answer, on batch 0."""
    batch = exp.rl_batch(0)
    answers = [a for a, _, _ in exp.host_reward._lookup(np.asarray(batch.ref))]
    solutions = exp.rl_problems(0)
    texts = []
    for p, a in zip(solutions, answers):
        assert exp.task.reference_answer(p) == a
        texts += [p.solution, _wrong(p.solution, a)]
    ids = [exp.tokenizer.encode(t) + [exp.eos_id] for t in texts]
    width = max(map(len, ids))
    tokens = np.full((len(ids), width), exp.pad_id, np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    ref = np.repeat(np.asarray(batch.ref), 2, axis=0)  # rows [2b, 2b+1] answer prompt b
    scores, rewards = exp.host_reward(tokens, ref, 0)
    np.testing.assert_allclose(rewards.sum(1), scores[:, COL["total"]], rtol=1e-5, atol=1e-6)
    return scores[0::2], scores[1::2]


def _assert_right_above_wrong(c, tmp_path):
    """The config's references are right and score above a wrong final answer."""
    exp = Experiment(c, str(tmp_path))
    try:
        right, wrong = _right_and_wrong(exp)
    finally:
        exp.close()
    assert right[:, COL["answer_correct"]].tolist() == [1.0] * len(right)
    assert wrong[:, COL["answer_correct"]].tolist() == [0.0] * len(wrong)
    assert (right[:, COL["total"]] > wrong[:, COL["total"]]).all()
    return right, wrong


CONFIGS = [
    ("arith_tiny.py", ""),
    ("arith_tiny.py", "smoke"),
    ("arith_tiny.py", "r1"),
    ("gsm8k_qwen.py", ""),
    ("gsm8k_qwen.py", "tiny"),
    ("sum.py", ""),
    ("sum.py", "smoke"),
]
# Experiment scripts (not r1jax-train configs) and what drives their tasks: the continual
# experiment trains the ten domains, each driven below (test_every_domain_...) and end to
# end by tests/train/continual_test.py.
SCRIPTS = {"continual.py"}
TASKS_COVERED = {"arithmetic", "gsm8k", "sum", *DOMAINS}


@pytest.mark.parametrize("name,arg", CONFIGS)
def test_every_config_scores_a_right_answer_above_a_wrong_one(name, arg, hf_dirs, tmp_path):
    c = _small(_experiment_config(name, arg))
    if name.startswith("gsm8k"):
        c.pretrained, c.task_kwargs.path = hf_dirs
    right, wrong = _assert_right_above_wrong(c, tmp_path)
    if c.reward.w_format > 0:  # R1 layouts: the format part is paid
        assert (right[:, COL["format"]] == 1.0).all()


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_scores_a_right_answer_above_a_wrong_one(domain, tmp_path):
    """Each continual-learning domain, as `r1jax-train --config.task=<domain>` runs it on
    the embedded default's config: its reference scores above a wrong final answer in
    the trainer's host reward."""
    c = _small(_experiment_config("arith_tiny.py", "smoke"))
    with c.unlocked():
        c.task, c.task_kwargs = domain, {}
    _assert_right_above_wrong(c, tmp_path)


def test_every_experiment_config_is_listed():
    files = {n for n in os.listdir(EXPERIMENTS) if n.endswith(".py")}
    configs = {n for n in files if "get_config" in open(os.path.join(EXPERIMENTS, n)).read()}
    assert SCRIPTS <= files
    assert configs - SCRIPTS == {name for name, _ in CONFIGS}, "add the new config to CONFIGS"


def test_every_registered_task_is_driven_by_a_config():
    """The tasks r1jax registers itself (tests register throwaway ones) each have a config
    in CONFIGS, so each has its right/wrong completion test."""
    from r1jax.tasks import base

    builtin = {n for n, f in base._REGISTRY.items() if f.__module__.startswith("r1jax.")}
    assert builtin and builtin <= TASKS_COVERED, "a task without a config: add one to CONFIGS"


def test_gsm8k_rl_iteration_rewards_its_answers(hf_dirs, tmp_path, monkeypatch):
    """One jitted RL iteration on GSM8K, the rollout replaced by fixed completions: the
    row answering `<answer>{gold}</answer>` gets correctness 1, a wrong answer 0."""
    c = _small(_experiment_config("gsm8k_qwen.py", "tiny"))
    c.pretrained, c.task_kwargs.path = hf_dirs
    c.rl.iterations = 1
    c.max_new_tokens = 48  # room for the fixed completions
    exp = Experiment(c, str(tmp_path))
    try:
        batch = exp.rl_batch(0)
        answers = [a for a, _, _ in exp.host_reward._lookup(np.asarray(batch.ref))]
        texts = []
        for a in answers:  # G = 2: sample 0 right, sample 1 wrong
            texts += [
                f"<think>\nok\n</think>\n<answer>{a}</answer>",
                f"<answer>{int(a) + 1}</answer>",
            ]
        t = c.max_new_tokens
        fixed = np.full((len(texts), t), exp.pad_id, np.int32)
        for i, text in enumerate(texts):
            ids = (exp.tokenizer.encode(text) + [exp.eos_id])[:t]
            fixed[i, : len(ids)] = ids
        fixed_mask = np.cumsum(fixed == exp.eos_id, 1) - (fixed == exp.eos_id) == 0

        def rollout(*args, **kwargs):
            r = generate(*args, **kwargs)
            m = jnp.asarray(fixed_mask)
            return r._replace(
                tokens_bt=jnp.asarray(fixed),
                mask_bt=m,
                logp_bt=jnp.where(m, r.logp_bt, 0.0),
                entropy_bt=jnp.where(m, r.entropy_bt, 0.0),
            )

        monkeypatch.setattr("r1jax.train.rl_step.generate", rollout)
        seen = []
        score = exp.host_reward._score
        exp.host_reward._score = lambda *a: seen.append(score(*a)) or seen[-1]
        _, m = exp.rl_fn(exp.init_state, batch)
        metrics = loop._fetch(m)
    finally:
        exp.close()
    scores = seen[0][0]
    assert scores[:, COL["answer_correct"]].tolist() == [1.0, 0.0] * len(answers)
    assert scores[:, COL["format"]].tolist() == [1.0, 0.0] * len(answers)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["format"] == pytest.approx(0.5)


class LongAnswerTask:
    """A user's task whose reference answer is a set of 50 numbers (250 characters)."""

    name = "long_answer"
    level_weights = (1.0,)
    reward_parts = ("correctness",)
    verifier = FreeFormVerifier()

    def sample(self, rng, level, split):
        def make():
            start = int(rng.integers(100, 900))
            answer = "{" + ", ".join(str(start + i) for i in range(50)) + "}"
            solution = f"<answer>{answer}</answer>"  # marked: the verifier reads it
            return Problem(f"List {start} and the next 49 numbers.", answer, solution, 1, 1)

        return sample_in_split(make, split, 0.2)

    def format_prompt(self, problem):
        return problem.question + "\n"

    def reference_answer(self, problem):
        return problem.answer


def test_long_references_reach_the_host_reward(tmp_path):
    register_task("long_answer", LongAnswerTask, overwrite=True)
    c = _small(arith_config("smoke"))
    with c.unlocked():
        c.task, c.task_kwargs = "long_answer", ml_collections.ConfigDict()
        c.sft.steps = 0
        c.rl.level_weights = ()
    exp = Experiment(c, str(tmp_path))
    try:
        batch = exp.rl_batch(0)
        refs = exp.host_reward._lookup(np.asarray(batch.ref))
        assert all(len(a) >= 200 for a, _, _ in refs)
        texts = [f"<answer>{refs[0][0]}</answer>", f"<answer>{refs[0][0][:-2]}}}</answer>"]
        tokens = np.stack(
            [np.asarray(exp.tokenizer.encode(t) + [exp.eos_id]) for t in texts[:1]]
            + [np.asarray(exp.tokenizer.encode(texts[1]) + [exp.eos_id] * 2)]
        )
        scores, _ = exp.host_reward(tokens, np.asarray(batch.ref)[[0, 0]], 0)
    finally:
        exp.close()
    assert scores[:, COL["answer_correct"]].tolist() == [1.0, 0.0]
