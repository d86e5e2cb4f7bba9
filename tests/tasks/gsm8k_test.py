"""The GSM8K task on small JSONL fixtures (and a smoke check of the real files if present)."""

import json
import os

import numpy as np
import pytest

from r1jax.rewards import extract_answer
from r1jax.rewards.format import format_reward, split_think_answer
from r1jax.tasks import R1_TEMPLATE, Gsm8kTask, Task, get_task, heldout_set, sample_mixture
from r1jax.tasks.gsm8k import level_of, r1_messages, reference_of

REAL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "gsm8k")

TRAIN = [
    {
        "question": "Janet has 16 eggs. She eats 3. How many are left?",
        "answer": "She has 16 - 3 = <<16-3=13>>13 eggs left.\n#### 13",
    },
    {
        "question": "A robe takes 2 bolts of blue fiber and half that much white fiber. "
        "How many bolts in total does it take?",
        "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\n"
        "So the total amount of fabric is 2+1=<<2+1=3>>3 bolts of fabric\n#### 3",
    },
    {
        "question": "Josh buys a house for $80,000 and puts in $50,000 in repairs. "
        "This increased the value of the house by 150%. How much profit did he make?",
        "answer": "The cost came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
        "He increased the value by 80,000*1.5=<<80000*1.5=120000>>120,000\n"
        "So the new value is 120,000+80,000=$<<120000+80000=200000>>200,000\n"
        "So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n"
        "#### 70,000",
    },
    {
        "question": "Five steps?",
        "answer": "1+1=<<1+1=2>>2\n2+1=<<2+1=3>>3\n3+1=<<3+1=4>>4\n4+1=<<4+1=5>>5\n"
        "5+1=<<5+1=6>>6\n#### 6",
    },
    {
        "question": "No annotations here?",
        "answer": "First she walks 2 miles.\nThen she walks back.\n#### -4",
    },
]
TEST = [
    {"question": "What is 2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"},
    {"question": "What is 3*3?", "answer": "3*3=<<3*3=9>>9\n#### 9"},
]


def _write(d, name, rows):
    with open(d / name, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.write("\n")  # a trailing blank line is fine


@pytest.fixture
def data_dir(tmp_path):
    _write(tmp_path, "train.jsonl", TRAIN)
    _write(tmp_path, "test.jsonl", TEST)
    return tmp_path


@pytest.fixture
def task(data_dir):
    return get_task("gsm8k", path=str(data_dir))


def test_protocol_and_registry(task):
    assert isinstance(task, Task) and isinstance(task, Gsm8kTask)
    assert task.name == "gsm8k" and "format" in task.reward_parts
    assert "correctness" in task.reward_parts
    assert "train=5, test=2" in repr(task)


def test_parsing_levels_and_references(task):
    probs = task.problems("train")
    assert [p.answer for p in probs] == ["13", "3", "70000", "6", "-4"]
    assert [(p.level, p.min_steps) for p in probs] == [(1, 1), (1, 2), (2, 4), (3, 5), (1, 2)]
    assert probs[0].question == TRAIN[0]["question"]
    assert reference_of("x\n#### 1,234,567") == "1234567"
    assert reference_of("no marker") is None
    assert level_of("a\nb\nc\n#### 1") == (2, 3)
    # default level weights: the train file's level shares
    assert task.level_weights == pytest.approx((3 / 5, 1 / 5, 1 / 5))


def test_r1_solution_and_prompt(task):
    p = task.problems("train")[2]
    assert "<<" not in p.solution and ">>" not in p.solution
    think, answer = split_think_answer(p.solution)
    assert answer == "70000" and think.startswith("The cost came out to 80,000+50,000=$130,000")
    assert format_reward(p.solution) == 1.0
    assert extract_answer(p.solution) == task.reference_answer(p) == "70000"
    prompt = task.format_prompt(p)
    assert prompt == R1_TEMPLATE.format(question=p.question)
    assert prompt.endswith(f"\nUser: {p.question}\nAssistant:")
    assert "<think> </think>" in prompt and "<answer> </answer>" in prompt
    msgs = r1_messages(p.question)
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[1]["content"] == p.question


def test_solution_styles(data_dir):
    t = Gsm8kTask(str(data_dir), solution_style="gsm8k", keep_annotations=True)
    p = t.problems("train")[1]
    assert p.solution == TRAIN[1]["answer"]
    assert extract_answer(p.solution) == "3" and format_reward(p.solution) == 0.0
    with pytest.raises(ValueError, match="solution_style"):
        Gsm8kTask(str(data_dir), solution_style="chat")


def test_sampling_by_split_and_level(task):
    rng = np.random.default_rng(0)
    train_qs = {p.question for p in task.problems("train")}
    test_qs = {p.question for p in task.problems("test")}
    for level in (1, 2, 3):
        for _ in range(20):
            p = task.sample(rng, level, "train")
            assert p.level == level and p.question in train_qs
    # the test file has only level-1 problems: other levels fall back to the nearest
    assert all(task.sample(rng, 3, "test").question in test_qs for _ in range(10))
    draws = [task.sample(np.random.default_rng(7), 1, "train") for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]  # deterministic in the rng
    mix = sample_mixture(task, rng, 50, "train")
    assert {p.level for p in mix} == {1, 2, 3}
    held = heldout_set(task, 2, seed=0)
    assert {p.question for p in held} == test_qs
    with pytest.raises(ValueError, match="split"):
        task.sample(rng, 1, "dev")
    with pytest.raises(ValueError, match="level"):
        task.sample(rng, 4, "train")


def test_level_weights_override(data_dir):
    t = Gsm8kTask(str(data_dir), level_weights=(0, 0, 1))
    assert {p.level for p in sample_mixture(t, np.random.default_rng(1), 10)} == {3}
    with pytest.raises(ValueError, match="level_weights"):
        Gsm8kTask(str(data_dir), level_weights=(1, 1))


def test_clear_errors(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"--config\.task_kwargs\.path"):
        get_task("gsm8k")
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=r"nowhere.*train\.jsonl.*--config\.task_kwargs\.path"):
        get_task("gsm8k", path=str(missing))
    (data_dir / "test.jsonl").unlink()
    with pytest.raises(ValueError, match=r"test file .*test\.jsonl"):
        get_task("gsm8k", path=str(data_dir))
    _write(data_dir, "test.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(ValueError, match="####"):
        get_task("gsm8k", path=str(data_dir))
    (data_dir / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"test\.jsonl:1: need string fields"):
        get_task("gsm8k", path=str(data_dir))
    (data_dir / "test.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"test\.jsonl:1: not a JSON object"):
        get_task("gsm8k", path=str(data_dir))


def test_prompts_fit_a_byte_level_tokenizer(tmp_path, task):
    """The R1 prompt and solution round-trip through an HF tokenizer."""
    tokenizers = pytest.importorskip("tokenizers")
    from r1jax.hf_tokenizer import HFTokenizer

    raw = tokenizers.Tokenizer(tokenizers.models.BPE())
    raw.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator([R1_TEMPLATE] + [r["answer"] for r in TRAIN], trainer)
    (tmp_path / "tok").mkdir()
    raw.save(str(tmp_path / "tok" / "tokenizer.json"))
    tok = HFTokenizer.from_pretrained(tmp_path / "tok")
    probs = task.problems("train")
    prompts, _ = tok.encode_left_padded([task.format_prompt(p) for p in probs], 512)
    assert tok.decode_batch(prompts) == [task.format_prompt(p) for p in probs]
    sols, _ = tok.encode_right_padded([p.solution for p in probs], 256)
    texts = tok.decode_batch(sols)
    assert [extract_answer(t) for t in texts] == [p.answer for p in probs]
    assert all(format_reward(t) == 1.0 for t in texts)


@pytest.mark.skipif(not os.path.isdir(REAL_DIR), reason="../shared/data/gsm8k not present")
def test_real_gsm8k_files_parse():
    task = Gsm8kTask(REAL_DIR)
    test = task.problems("test")
    assert len(test) == 1319 and len(task.problems("train")) == 7473
    for p in test:
        assert extract_answer(p.solution) == p.answer
        assert extract_answer("#### " + p.answer) == p.answer
        assert format_reward(p.solution) == 1.0
    assert {p.level for p in test} == {1, 2, 3}
    assert sum(task.level_weights) == pytest.approx(1.0)
