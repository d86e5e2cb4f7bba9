"""Task-owned scoring: every task's completions are scored by its own verifier."""

import json

import numpy as np
import pytest

from r1jax.rewards import (
    SCORE_FIELDS,
    EquationVerifier,
    FreeFormVerifier,
    RewardConfig,
    TaskScorer,
    score_completions,
    task_reward_config,
    task_verifier,
)
from r1jax.tasks import ArithmeticTask, Gsm8kTask, Problem, heldout_set

TRAIN = [
    {
        "question": "Janet has 16 eggs. She eats 3. How many are left?",
        "answer": "She has 16 - 3 = <<16-3=13>>13 eggs left.\n#### 13",
    },
    {
        "question": "Two plus two, times three?",
        "answer": "2+2=<<2+2=4>>4\n4*3=<<4*3=12>>12\n#### 12",
    },
]
TEST = [
    {
        "question": "Ann has 5 pens and buys 4 packs of 3. How many pens?",
        "answer": "4*3=<<4*3=12>>12 pens in packs.\n5+12=<<5+12=17>>17 pens.\n#### 17",
    },
    {"question": "What is 3*3?", "answer": "3*3=<<3*3=9>>9\n#### 9"},
]


@pytest.fixture
def gsm8k(tmp_path):
    for name, rows in (("train.jsonl", TRAIN), ("test.jsonl", TEST)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Gsm8kTask(path=str(tmp_path))


def r1(think, answer):
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>"


def test_gsm8k_scores_r1_answers_not_just_the_format(gsm8k):
    p = gsm8k.problems("test")[0]  # answer 17
    texts = [
        r1("4 * 3 = 12 pens in packs.\n5 + 12 = 17 pens.", "17"),
        r1("4 * 3 = 12 pens in packs.\n5 + 12 = 18 pens.", "18"),
        r1("I think it is this.", "\\boxed{17}"),
        "We add them up.\n#### 17",
        "The answer is 17.",
        "<think>\nno idea\n</think>",
        "5 + 12 = 17",  # no marked answer: a bare number is not an answer
    ]
    rows = score_completions(gsm8k, [p] * len(texts), texts)
    assert [r["answer_correct"] for r in rows] == [1, 0, 1, 1, 1, 0, 0]
    assert set(rows[0]) == set(SCORE_FIELDS)
    assert rows[0]["num_steps"] == 2 and rows[0]["valid_steps"] == 2
    assert rows[1]["num_steps"] == 2 and rows[1]["valid_steps"] == 1
    assert rows[0]["total"] > rows[2]["total"] > rows[1]["total"]  # steps earn credit


def test_gsm8k_format_and_subgoal_parts_work_on_its_text(gsm8k):
    p = gsm8k.problems("test")[0]
    assert p.subgoals == ("12",)  # the annotation before the answer
    cfg = RewardConfig(w_format=0.2, w_subgoal=0.1)
    good = r1("4 * 3 = 12 pens.\n5 + 12 = 17 pens.", "17")
    slip = r1("4 * 3 = 12 pens.\n5 + 12 = 16 pens.", "16")
    bare = "4 * 3 = 12 pens. 5 + 12 = 17 pens.\n#### 17"
    rows = score_completions(gsm8k, [p] * 3, [good, slip, bare], cfg)
    assert [r["format"] for r in rows] == [1.0, 1.0, 0.0]
    assert rows[1]["subgoal"] == 1.0 and rows[1]["answer_correct"] == 0  # reached 12
    assert rows[0]["total"] > rows[2]["total"]  # same answer and steps, format differs


def test_gsm8k_step_ends_are_the_equations_in_prose():
    v = FreeFormVerifier()
    text = "She has 16 - 3 = 13 eggs.\nThen 13 * 2 = 27 dollars.\n<answer>27</answer>"
    ends = v.step_ends(text)
    assert [(text[e], ok) for e, ok in ends] == [("3", True), ("7", False)]
    assert v.check_step("16 - 3 = 13") and not v.check_step("13 * 2 = 27")


def test_arithmetic_r1_style_scores_tagged_answers():
    task = ArithmeticTask(solution_style="r1")
    assert "format" in task.reward_parts and task.verifier == EquationVerifier(answer_tag=True)
    p = heldout_set(task, 1, seed=0, level=2)[0]
    assert p.solution.startswith("<think>\n") and p.solution.endswith(
        f"<answer>{p.answer}</answer>"
    )
    wrong = p.solution.replace(
        f"<answer>{p.answer}</answer>", f"<answer>{int(p.answer) + 1}</answer>"
    )
    rows = score_completions(task, [p, p], [p.solution, wrong], RewardConfig(w_format=0.1))
    assert [r["answer_correct"] for r in rows] == [1, 0]
    assert rows[0]["format"] == 1.0 and rows[0]["valid_steps"] == rows[0]["num_steps"] > 0
    plain = ArithmeticTask()
    assert score_completions(plain, [p], [p.solution])[0]["answer_correct"] == 0  # no ####


class LongAnswerTask:
    """A user's task whose reference is 200 characters long."""

    name = "long"
    level_weights = (1.0,)
    reward_parts = ("correctness",)
    verifier = FreeFormVerifier()

    def reference_answer(self, problem):
        return problem.answer


def test_long_reference_and_unused_parts():
    task = LongAnswerTask()
    answer = "{" + ", ".join(str(i) for i in range(100, 150)) + "}"  # a set of 50 numbers
    assert len(answer) > 200
    p = Problem("q", answer, f"#### {answer}", 1, 1)
    wrong = answer.replace("149", "150")
    rows = score_completions(task, [p, p], [f"<answer>{answer}</answer>", f"#### {wrong}"])
    assert [r["answer_correct"] for r in rows] == [1, 0]
    cfg = task_reward_config(task, RewardConfig())
    assert (cfg.w_efficiency, cfg.w_novelty, cfg.w_correctness) == (0.0, 0.0, 0.6)
    assert rows[0]["total"] == pytest.approx(0.6 * 0.6)  # no steps, no efficiency weight
    assert task_verifier(ArithmeticTask()) == EquationVerifier()


def test_scorer_checks_lengths_and_verifier():
    task = ArithmeticTask()
    with TaskScorer(task) as s:
        with pytest.raises(ValueError, match="one problem per completion"):
            s.score([], ["#### 1"])

    class Bad(LongAnswerTask):
        verifier = object()

    with pytest.raises(TypeError, match="verify"):
        task_verifier(Bad())


def test_worker_pool_scores_like_inline(gsm8k):
    probs = gsm8k.problems("test")
    texts = [r1("3 * 3 = 9", "9"), r1("3 * 3 = 9", "10")]
    inline = score_completions(gsm8k, [probs[1]] * 2, texts)
    pooled = score_completions(gsm8k, [probs[1]] * 2, texts, num_workers=1)
    assert inline == pooled and [r["answer_correct"] for r in pooled] == [1, 0]
    assert np.isfinite([r["total"] for r in pooled]).all()


def test_gsm8k_novelty_and_dense_rewards_through_the_host_reward(gsm8k):
    """The trainer's host reward on GSM8K text: novelty for new correct paths, step
    credit on the tokens that end each prose step, step shaping on the first wrong one."""
    from r1jax.rewards.bridge import HostReward, Placement
    from r1jax.tokenizer import CharTokenizer

    tok = CharTokenizer()
    p = gsm8k.problems("test")[0]  # answer 17
    good = r1("4 * 3 = 12 pens.\n5 + 12 = 17 pens.", "17")
    other = r1("Packs: 3 * 4 = 12.\nAll: 12 + 5 = 17.", "17")
    bad = r1("4 * 3 = 12 pens.\n5 + 12 = 18 pens.", "18")
    texts = [good, other, bad]
    ids = [tok.encode(t) + [tok.eos_id] for t in texts]
    tokens = np.full((3, max(map(len, ids))), tok.pad_id, np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    h = HostReward(
        TaskScorer(gsm8k, RewardConfig()),
        tok,
        group_size=3,
        placement=Placement(dense_mix=1.0, step_shaping=0.1),
    )
    ref = np.repeat(h.register(0, [p], [gsm8k.format_prompt(p)]), 3, axis=0)
    scores, rewards = h(tokens, ref, 0)
    col = {k: i for i, k in enumerate(SCORE_FIELDS)}
    assert scores[:, col["answer_correct"]].tolist() == [1.0, 1.0, 0.0]
    assert scores[0, col["novelty"]] > 0 and scores[2, col["novelty"]] == 0
    np.testing.assert_allclose(rewards.sum(1), scores[:, col["total"]] - 0.1, atol=1e-6)
    _, owner = tok.decode_with_offsets(tokens[0])
    per_step = 0.6 * 0.4 / 2  # w_correctness * step_weight / steps, all on step ends
    for end in (good.index("= 12") + 3, good.index("= 17") + 3):
        assert rewards[0, owner[end]] == pytest.approx(per_step)
    _, owner = tok.decode_with_offsets(tokens[2])
    assert rewards[2, owner[bad.index("= 18") + 3]] == pytest.approx(-0.1)  # the wrong step


@pytest.mark.parametrize("style", ["plain", "r1"])
def test_a_decorative_step_earns_no_step_credit(style):
    """Review finding: ``1=1`` before the answer was a valid step and lifted a bare correct
    answer from 0.66 to 0.75 (what a real step earns). Idle steps (restatements,
    equations nothing uses) now earn no step credit; a real step still does."""
    task = ArithmeticTask(solution_style=style)
    p = heldout_set(task, 1, seed=3, level=1)[0]
    a = p.answer

    def text(steps):
        body = "\n".join(steps)
        return r1(body, a) if style == "r1" else "\n".join([*steps, f"#### {a}"])

    real = p.solution.split("\n")[0] if style == "plain" else p.solution.split("\n")[1]
    assert real.endswith(f"={a}")  # level 1: one step, its result is the answer
    idle = [["1=1"], [f"{a}={a}"], [f"{a}*1={a}"], [f"0+{a}={a}"], ["1000+1=1001"]]
    texts = [text([]), text([real])] + [text(s) for s in idle]
    rows = score_completions(task, [p] * len(texts), texts)
    bare, honest, *padded = (r["total"] for r in rows)
    assert all(r["answer_correct"] == 1.0 and r["valid_steps"] == r["num_steps"] for r in rows)
    assert honest > bare > max(padded)
    # An idle step beside a real one is neutral for correctness (efficiency charges it).
    checked = score_completions(task, [p], [text([real, f"{a}-1={int(a) - 1}"])])[0]
    assert checked["correctness"] == rows[1]["correctness"]
    assert checked["efficiency"] < rows[1]["efficiency"]


def test_gsm8k_decorative_steps_earn_no_step_credit(gsm8k):
    p = gsm8k.problems("test")[0]  # answer 17
    honest = r1("4 * 3 = 12 pens in packs.\n5 + 12 = 17 pens.", "17")
    bare = r1("I know it.", "17")
    padded = [
        r1("So 17 + 0 = 17.", "17"),
        r1("17 = 17, 17 * 1 = 17.", "17"),
        r1("2+2=4", "17"),
        r1("1+1=2, 2=2.", "17"),  # an idle step does not make an earlier one used
        r1("1+1=2, 2+5=7.", "17"),
        r1("17 + 2 - 2 = 17", "17"),  # the answer rewritten
        "1+1=2. The answer is \\boxed{2*17/2}.",  # an answer as an expression uses nothing
        "3-1=2. The answer is \\boxed{\\frac{34}{2}}.",
    ]
    rows = score_completions(gsm8k, [p] * (2 + len(padded)), [honest, bare, *padded])
    assert [r["answer_correct"] for r in rows] == [1] * len(rows)
    assert all(r["valid_steps"] >= 1 for r in rows[2:])
    assert rows[0]["total"] > rows[1]["total"] > max(r["total"] for r in rows[2:])
