"""Evaluation of a Hugging Face checkpoint on GSM8K (`r1jax.checkpoint_eval.evaluate_hf`,
`r1jax-eval --hf_checkpoint --task=gsm8k`) through the one evaluator
(`r1jax.evaluate`): a tiny random Qwen2 written by `transformers` with a tokenizer.json
trained here; repeated runs give identical results; the CLI writes the JSON and rejects
bad command lines with exit code 2."""

import importlib
import json
import os
import subprocess
import sys

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")

from r1jax._testing import (
    GSM8K_PROBLEMS,
    cli_forked,
    gsm8k_tokenizer,
    write_gsm8k,
    write_tokenizer,
)
from r1jax.checkpoint_eval import evaluate_hf as _evaluate_hf
from r1jax.errors import ConfigError
from r1jax.evaluate import answer_key, majority_vote, score_decoded
from r1jax.rewards import TaskScorer
from r1jax.tasks import Gsm8kTask, Problem

ENV = dict(os.environ, JAX_PLATFORMS="cpu")
PROBLEMS = GSM8K_PROBLEMS
EVAL_KW = {"num_problems": 5, "k": 2, "max_new_tokens": 8, "batch_size": 4, "seed": 3}


def evaluate_hf(ckpt, data, **kw):
    return _evaluate_hf(ckpt, "gsm8k", {"path": str(data)}, **kw)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsm8k_eval")
    data = write_gsm8k(root / "gsm8k", files=("test.jsonl", "train.jsonl"))
    tok = gsm8k_tokenizer()
    ckpt = root / "ckpt"
    import torch

    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(ckpt)
    write_tokenizer(tok, ckpt)
    return ckpt, data


def _run_eval(*args):
    code = "import sys; from r1jax.main import eval_entry; eval_entry(['prog', *sys.argv[1:]])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def test_repeated_runs_are_identical(dirs):
    ckpt, data = dirs
    a = evaluate_hf(ckpt, data, **EVAL_KW, records=True)
    b = evaluate_hf(ckpt, data, **EVAL_KW, records=True)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    for key in ("accuracy", "maj@2", "pass@2", "sample_accuracy", "format_rate", "truncated"):
        assert 0.0 <= a[key] <= 1.0, key
    assert a["num_problems"] == 5 and a["k"] == 2
    assert a["config"]["max_prompt_len"] % 64 == 0 and a["config"]["seed"] == 3
    assert len(a["records"]) == 5
    assert [r["question"] for r in a["records"]] == [q for q, _ in PROBLEMS[:5]]
    assert [r["reference"] for r in a["records"]] == ["13", "4", "9", "12", "600"]
    assert all(len(r["sample_answers"]) == 2 for r in a["records"])
    # A problem's completions do not depend on the batch split or on num_problems.
    c = evaluate_hf(ckpt, data, **{**EVAL_KW, "batch_size": 3, "num_problems": 2}, records=True)
    assert c["records"] == a["records"][:2]


def test_chat_template_prompts(dirs):
    ckpt, data = dirs
    c = evaluate_hf(ckpt, data, num_problems=2, k=1, max_new_tokens=4, chat=True, records=True)
    assert c["config"]["chat"] and "maj@1" in c and c["num_problems"] == 2


def test_bad_arguments(dirs, tmp_path):
    ckpt, data = dirs
    with pytest.raises(FileNotFoundError, match="nope"):
        evaluate_hf(tmp_path / "nope", data)
    with pytest.raises(ConfigError, match="test.jsonl"):
        evaluate_hf(ckpt, tmp_path)
    with pytest.raises(ConfigError, match="k must be"):
        evaluate_hf(ckpt, data, k=-1)
    with pytest.raises(ConfigError, match="max_prompt_len"):
        evaluate_hf(ckpt, data, max_prompt_len=4)


class _OneQuestion:
    """A task with a single test problem."""

    name = "one_question"
    level_weights = (1.0,)

    def sample(self, rng, level, split):
        return Problem("What is 2+2?", "4", "2+2=4\n#### 4", 1, 1)

    def format_prompt(self, problem):
        return problem.question + "\n"

    def reference_answer(self, problem):
        return problem.answer


def test_more_problems_than_the_task_has_name_num_problems(dirs):
    """Asking a task for more distinct held-out problems than it has was a RuntimeError
    traceback (audit): a ConfigError of `num_problems`, which r1jax-eval prints as one
    `--num_problems` line."""
    from r1jax.tasks import register_task

    register_task("one_question", _OneQuestion, overwrite=True)
    ckpt, _ = dirs
    with pytest.raises(ConfigError, match="num_problems=3: .*only 1 distinct held-out") as e:
        _evaluate_hf(ckpt, "one_question", num_problems=3, k=0)
    assert e.value.field == "num_problems"


def test_majority_vote_and_scoring(tmp_path):
    assert answer_key("$1,200.00") == answer_key("1200") == answer_key("x = 1200") == "1200"
    assert answer_key("  a   b ") == "a b" and answer_key(None) is None
    assert majority_vote(["3", "18", "$18", None, "3"]) == 0  # tie 2-2: first class wins
    assert majority_vote([None, "7", "18", "18.0"]) == 2
    assert majority_vote([None, None]) is None
    good = "<think>16 - 3 = 13</think>\n<answer>13</answer>"
    bad = "<think>x</think><answer>12</answer>"
    task = Gsm8kTask(path=write_gsm8k(tmp_path / "data"))
    problems = [Problem("q1", "13", "", 1, 1), Problem("q2", "4", "", 2, 1)]
    with TaskScorer(task) as scorer:
        out = score_decoded(
            problems,
            [good, "the answer is 4"],
            [[bad, good, good], [bad, "The answer is 4 apples.", bad]],
            scorer,
            truncated=[False, True],
            records=True,
        )
    assert out["accuracy"] == 1.0 and out["maj@3"] == 0.5 and out["format_rate"] == 0.5
    assert out["sample_accuracy"] == pytest.approx(3 / 6) and out["truncated"] == 0.5
    assert out["pass@3"] == 1.0 and out["accuracy_level2"] == 1.0
    assert out["records"][0]["majority_answer"] == "13"
    assert (
        out["records"][1]["majority_answer"] == "12" and not out["records"][1]["majority_correct"]
    )


VERIFY_ONLY_TASK = """
from r1jax.rewards import Verdict


class HashVerifier:
    \"\"\"verify() alone (the Verifier protocol's minimum): the answer follows a '#'.\"\"\"

    def verify(self, completion, reference):
        answer = completion.rpartition("#")[2].strip() if "#" in completion else ""
        return Verdict(answer == reference, 0, 0, has_answer=bool(answer))


class HashTask:
    name = "hash_answer"
    level_weights = (1.0,)
    reward_parts = ("correctness",)
    verifier = HashVerifier()

    def reference_answer(self, problem):
        return problem.answer
"""


def test_a_verifier_without_parse_gets_its_answer_rate_and_no_made_up_majority(
    tmp_path, monkeypatch
):
    """A task whose verifier has only verify() (audit: r1jax-eval printed answer_rate 0.0
    and maj@4 0.0 where pass@4 was 0.5): answer_rate is the share of Verdict.has_answer
    (the scores' has_answer column, from the reward workers); maj@k, which needs the
    answers, is None with a note instead of a silent 0."""
    (tmp_path / "hash_answer_task.py").write_text(VERIFY_ONLY_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))  # the reward workers import it by name
    HashTask = importlib.import_module("hash_answer_task").HashTask

    problems = [
        Problem("q1", "7", "", 1, 0),
        Problem("q2", "5", "", 1, 0),
        Problem("q3", "2", "", 1, 0),
    ]
    samples = [["# 7", "# 7", "# 3"], ["# 5", "x", "# 4"], ["# 1", "# 1", "y"]]
    with TaskScorer(HashTask(), num_workers=1) as scorer:
        out = score_decoded(problems, ["so # 7", "no answer", "# 3"], samples, scorer, records=True)
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["answer_rate"] == pytest.approx(2 / 3)  # "so # 7" and "# 3" answer
    assert out["pass@3"] == pytest.approx(2 / 3)
    assert out["sample_accuracy"] == pytest.approx(3 / 9)
    assert out["maj@3"] is None and "HashVerifier has no parse(" in out["maj_note"]
    assert [r["majority_correct"] for r in out["records"]] == [None] * 3
    assert json.loads(json.dumps(out))["maj@3"] is None


def test_cli_writes_json_and_rejects_bad_command_lines(dirs, tmp_path):
    ckpt, data = dirs
    out = tmp_path / "res" / "gsm8k.json"
    r = _run_eval(
        f"--hf_checkpoint={ckpt}",
        f"--gsm8k_dir={data}",
        "--num_problems=5",
        "--k=2",
        "--max_new_tokens=8",
        "--batch_size=4",
        "--seed=3",
        f"--output={out}",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    written = json.loads(out.read_text())
    assert json.loads(r.stdout.strip().splitlines()[-1]) == written
    assert written == json.loads(json.dumps(evaluate_hf(ckpt, data, **EVAL_KW)))
    assert [p.name for p in out.parent.iterdir()] == ["gsm8k.json"]  # no temp file left

    # The bad command lines, each in a fork of one parent that imported JAX once.
    missing = tmp_path / "no_such_ckpt"
    both, no_ckpt, no_data, own, no_dir = cli_forked(
        "eval_entry",
        [
            [f"--hf_checkpoint={ckpt}", f"--workdir={tmp_path}"],
            [f"--hf_checkpoint={missing}", f"--gsm8k_dir={data}"],
            [f"--hf_checkpoint={ckpt}", f"--gsm8k_dir={tmp_path / 'nodata'}"],
            [f"--workdir={tmp_path}", "--dtype=bfloat16"],
            [f"--hf_checkpoint={ckpt}", "--task=gsm8k"],  # no data directory given
        ],
        env=ENV,
    )
    assert both.returncode == 2 and "--hf_checkpoint" in both.stderr and "--workdir" in both.stderr
    assert no_ckpt.returncode == 2 and str(missing) in no_ckpt.stderr
    assert no_data.returncode == 2 and "--data_dir" in no_data.stderr
    assert "train.jsonl" in no_data.stderr
    assert own.returncode == 2 and "--dtype" in own.stderr and "own settings" in own.stderr
    assert no_dir.returncode == 2 and "--data_dir" in no_dir.stderr
    for r in (both, no_ckpt, no_data, own, no_dir):
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
