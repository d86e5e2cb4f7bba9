"""Tests for the synthetic arithmetic task."""

import collections
import re
from fractions import Fraction

import numpy as np
import pytest

from r1jax.rewards import score_completions
from r1jax.tasks import (
    ArithmeticTask,
    Problem,
    Task,
    arithmetic,
    get_task,
    sample_mixture,
    split_of,
)
from r1jax.tasks.arithmetic import Step, given_numbers, render_solution

EQ = re.compile(r"^(\d+)([+\-*/])(\d+)=(\d+)$")
ANS = re.compile(r"^#### (\d+)$")
IDENT = re.compile(r"^(\d+)=\1$")
NUM = re.compile(r"\d+")
OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def parse(solution):
    """Returns ([(a, op, b, c)], answer) or raises AssertionError."""
    lines = solution.split("\n")
    m = ANS.match(lines[-1])
    assert m, f"bad answer line {lines[-1]!r}"
    steps = []
    for line in lines[:-1]:
        if IDENT.match(line):  # a restated given quantity ("7=7"), true by form
            continue
        e = EQ.match(line)
        assert e, f"not an equation: {line!r}"
        steps.append((int(e[1]), e[2], int(e[3]), int(e[4])))
    return steps, int(m[1])


def is_true(a, op, b, c):
    if op == "/" and b == 0:
        return False
    return OPS[op](Fraction(a), Fraction(b)) == Fraction(c)


@pytest.fixture(scope="module")
def task():
    return ArithmeticTask()


@pytest.fixture(scope="module")
def check_samples():
    """Like `samples`, with the "check" verbose style."""
    t = ArithmeticTask(verbose_style="check")
    rng = np.random.default_rng(321)
    return {lvl: [t.sample(rng, lvl, "train") for _ in range(800)] for lvl in (1, 2, 3)}


@pytest.fixture(scope="module")
def samples(task):
    """{level: [Problem]} from the train split, plus some from test."""
    rng = np.random.default_rng(123)
    out = {lvl: [task.sample(rng, lvl, "train") for _ in range(1500)] for lvl in (1, 2, 3)}
    for lvl in (1, 2, 3):
        out[lvl] += [task.sample(rng, lvl, "test") for _ in range(150)]
    return out


def test_protocol_and_registry(task):
    assert isinstance(task, Task)
    t = get_task("arithmetic", verbose_prob=0.0, test_fraction=0.2)
    assert isinstance(t, ArithmeticTask) and t.verbose_prob == 0.0 and t.test_fraction == 0.2
    assert task.name == "arithmetic"
    assert task.level_weights == (0.6, 0.3, 0.1)
    assert task.reward_parts == ("correctness", "efficiency", "novelty", "subgoal")


def test_format_prompt_and_reference(task):
    p = task.sample(np.random.default_rng(0), 1, "train")
    assert task.format_prompt(p) == p.question + "\n"
    assert task.reference_answer(p) == p.answer
    assert "\n" not in p.question


def test_restate_style_restates_the_givens_first(task):
    assert task.verbose_style == "restate"
    rng = np.random.default_rng(5)
    seen_verbose = seen_concise = False
    for lvl in (1, 2, 3):
        for _ in range(300):
            p = task.sample(rng, lvl, "train")
            lines = p.solution.split("\n")
            idents = [l for l in lines if re.fullmatch(r"(\d+)=\1", l)]
            comp = [l for l in lines[:-1] if l not in idents]
            assert len(comp) == p.min_steps
            if idents:
                seen_verbose = True
                assert lines[: len(idents)] == idents  # all restatements come first
                question_numbers = {x for x in NUM.findall(p.question)}
                assert {l.split("=")[0] for l in idents} <= question_numbers
            else:
                seen_concise = True
            assert lines[-1] == f"#### {p.answer}"
    assert seen_verbose and seen_concise


def test_given_numbers_skips_computed_values():
    steps = [Step(3, "*", 4, 12), Step(12, "+", 5, 17), Step(17, "-", 3, 14)]
    assert given_numbers(steps) == [3, 4, 5]
    assert render_solution(steps, True).split("\n")[:3] == ["3=3", "4=4", "5=5"]
    assert render_solution(steps, False).split("\n")[0] == "3*4=12"


def test_every_step_is_a_true_equation(check_samples):
    samples = check_samples
    n_verbose = collections.Counter()
    for lvl, problems in samples.items():
        for p in problems:
            assert isinstance(p, Problem) and p.level == lvl
            steps, ans = parse(p.solution)
            for a, op, b, c in steps:
                assert is_true(a, op, b, c), (p.question, p.solution)
                assert 2 <= c <= 200 and a >= 2 and b >= 2
            verbose = len(steps) == 2 * p.min_steps
            assert verbose or len(steps) == p.min_steps
            n_verbose[verbose] += 1
            comp = steps[0::2] if verbose else steps
            if verbose:  # each check is the inverse of the step before it
                for (a, op, b, c), (a2, op2, b2, c2) in zip(steps[0::2], steps[1::2]):
                    assert (a2, b2, c2) == (c, b, a) and {op, op2} in ({"+", "-"}, {"*", "/"})
            assert ans == comp[-1][3] and str(ans) == p.answer  # final computed value
    assert n_verbose[True] > 0 and n_verbose[False] > 0


def test_operands_come_from_question_or_earlier_steps(samples):
    for problems in samples.values():
        for p in problems:
            steps, _ = parse(p.solution)
            known = {int(x) for x in NUM.findall(p.question)}
            for a, op, b, c in steps:
                assert a in known and b in known, (p.question, p.solution)
                known.add(c)


def test_number_ranges(samples):
    for problems in samples.values():
        for p in problems:
            steps, _ = parse(p.solution)
            computed = set()
            for a, op, b, c in steps[:: 2 if len(steps) == 2 * p.min_steps else 1]:
                if op in "+-":
                    assert 2 <= b <= 20 or b in computed  # written operands are small
                elif op == "*":
                    assert min(a, b) <= 9 and max(a, b) <= 20 and min(a, b) >= 2
                else:
                    assert 2 <= b <= 9 and a % b == 0
                assert 2 <= c <= 200
                computed.add(c)


def test_min_steps_per_level(samples):
    assert {p.min_steps for p in samples[1]} == {1}
    assert {p.min_steps for p in samples[2]} == {2, 3}
    s3 = collections.Counter(p.min_steps for p in samples[3])
    assert set(s3) <= {4, 5} and s3[4] > 0.8 * sum(s3.values())


def test_level3_has_distractor(samples):
    for p in samples[3]:
        steps, _ = parse(p.solution)
        used = {x for st in steps for x in (st[0], st[2], st[3])}
        unused = [int(x) for x in NUM.findall(p.question) if int(x) not in used]
        assert unused, (p.question, p.solution)


def test_lengths_within_bounds(samples):
    report = []
    for lvl, problems in samples.items():
        q = max(len(p.question) for p in problems)
        s = max(len(p.solution) for p in problems)
        report.append(f"level {lvl}: max question {q}, max solution {s}")
        assert q <= {1: 76, 2: 120, 3: 150}[lvl]
        assert s <= 92
        assert min(len(p.question) for p in problems) >= 30
    print("\n" + "\n".join(report))


def test_level_mixture_and_verbose_fraction(task):
    rng = np.random.default_rng(7)
    problems = sample_mixture(task, rng, 5000, "train")
    freq = collections.Counter(p.level for p in problems)
    for lvl, w in zip((1, 2, 3), task.level_weights):
        assert abs(freq[lvl] / 5000 - w) < 0.03, freq
    verbose = np.mean([p.solution.count("\n") > p.min_steps for p in problems])
    assert abs(verbose - task.verbose_prob) < 0.03, verbose
    ref_steps = np.mean([p.solution.count("\n") for p in problems])
    min_steps = np.mean([p.min_steps for p in problems])
    print(f"\nmean reference steps {ref_steps:.3f} vs mean min_steps {min_steps:.3f}")
    assert ref_steps > min_steps


@pytest.mark.parametrize("verbose_prob", [0.0, 1.0])
def test_verbose_prob_extremes(verbose_prob):
    for style in ("restate", "check", "final_check"):
        t = ArithmeticTask(verbose_prob=verbose_prob, verbose_style=style)
        rng = np.random.default_rng(3)
        for p in sample_mixture(t, rng, 200):
            n = p.solution.count("\n")
            if not verbose_prob:
                assert n == p.min_steps
            elif style == "check":
                assert n == 2 * p.min_steps
            elif style == "final_check":
                assert n == p.min_steps + 1
            else:
                assert n > p.min_steps


def test_train_test_disjoint(task):
    rng = np.random.default_rng(11)
    train = sample_mixture(task, rng, 3000, "train")
    test = sample_mixture(task, rng, 1000, "test")
    assert all(split_of(p.question, task.test_fraction) == "train" for p in train)
    assert all(split_of(p.question, task.test_fraction) == "test" for p in test)
    assert not {p.question for p in train} & {p.question for p in test}


def test_determinism(task):
    a = sample_mixture(task, np.random.default_rng(5), 300, "train")
    b = sample_mixture(ArithmeticTask(), np.random.default_rng(5), 300, "train")
    c = sample_mixture(task, np.random.default_rng(6), 300, "train")
    assert a == b
    assert a != c


def test_variety(samples):
    for lvl, problems in samples.items():
        qs = {p.question for p in problems}
        assert len(qs) > 0.9 * len(problems), lvl


def test_bad_arguments(task):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        task.sample(rng, 4, "train")
    with pytest.raises(ValueError):
        task.sample(rng, 1, "valid")
    with pytest.raises(ValueError):
        ArithmeticTask(test_fraction=0.0)
    with pytest.raises(ValueError):
        ArithmeticTask(verbose_prob=1.5)


def test_small_config_respects_limits():
    t = ArithmeticTask(max_number=60, max_operand=10, max_factor=5)
    rng = np.random.default_rng(2)
    for p in sample_mixture(t, rng, 500):
        steps, _ = parse(p.solution)
        for a, op, b, c in steps:
            assert is_true(a, op, b, c) and c <= 60
            if op == "*":
                assert min(a, b) <= 5


def test_check_step_helper():
    st = arithmetic.Step(24, "/", 4, 6)
    assert st.text() == "24/4=6" and st.check().text() == "6*4=24"
    assert (
        arithmetic.render_solution([arithmetic.Step(7, "+", 5, 12)], True, "check")
        == "7+5=12\n12-5=7\n#### 12"
    )


def test_final_check_style_checks_only_the_last_step():
    t = ArithmeticTask(verbose_prob=1.0, verbose_style="final_check")
    rng = np.random.default_rng(9)
    for lvl in (1, 2, 3):
        for _ in range(200):
            p = t.sample(rng, lvl, "train")
            steps, ans = parse(p.solution)
            assert len(steps) == p.min_steps + 1
            (a, op, b, c), (a2, op2, b2, c2) = steps[-2], steps[-1]
            assert (a2, b2, c2) == (c, b, a) and {op, op2} in ({"+", "-"}, {"*", "/"})
            assert ans == c and str(ans) == p.answer  # the answer is the checked value


def test_long_route_writes_multiplication_as_repeated_addition():
    steps = [Step(4, "*", 10, 40), Step(40, "-", 5, 35)]
    assert render_solution(steps, True, "long_route").splitlines() == [
        "10+10=20",
        "20+10=30",
        "30+10=40",
        "40-5=35",
        "#### 35",
    ]
    assert render_solution(steps, False, "long_route") == "4*10=40\n40-5=35\n#### 35"
    # No multiplication: the verbose form falls back to the final check.
    plain = [Step(7, "+", 5, 12)]
    assert render_solution(plain, True, "long_route") == "7+5=12\n12-5=7\n#### 12"
    assert arithmetic.long_route(Step(2, "*", 2, 4)) == [Step(2, "+", 2, 4)]


def test_long_route_samples_are_true_and_end_in_the_answer():
    t = ArithmeticTask(
        verbose_style="long_route", verbose_prob=1.0, max_operand=12, max_factor=5, max_number=60
    )
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = t.sample(rng, int(rng.integers(1, 4)), "train")
        lines = p.solution.splitlines()
        assert lines[-1] == f"#### {p.answer}"
        for line in lines[:-1]:
            lhs, rhs = line.split("=")
            assert Fraction(eval(lhs)) == Fraction(rhs)  # trusted generator output


def test_wide_level1_covers_the_intermediate_range():
    kw = dict(max_operand=12, max_factor=5, max_number=60)
    rng = np.random.default_rng(0)
    narrow = ArithmeticTask(**kw)
    wide = ArithmeticTask(**kw, wide_level1=True)
    plain = re.compile(r"^\w+ has (\d+) \w+\. (?:She|He) (?:buys|finds|gets|gives|loses|sells)")

    def starts(t):
        qs = [t.sample(rng, 1, "train").question for _ in range(400)]
        return [int(m.group(1)) for m in map(plain.match, qs) if m]

    assert max(starts(narrow)) <= 12 < max(starts(wide)) <= 60
    # Only level 1 changes.
    assert all(len(wide.sample(rng, 2, "train").solution.splitlines()) >= 3 for _ in range(50))


def test_subgoals_are_the_shortest_solutions_intermediate_values(task):
    rng = np.random.default_rng(7)
    for level in (1, 2, 3):
        for _ in range(50):
            p = task.sample(rng, level, "train")
            assert len(p.subgoals) == p.min_steps - 1
            assert all(s.isdigit() for s in p.subgoals)
            if level == 1:
                assert p.subgoals == ()
    # The concise reference of a fresh draw passes through exactly its subgoals.
    t = ArithmeticTask(verbose_prob=0.0)
    for _ in range(50):
        p = t.sample(rng, 2, "train")
        lines = p.solution.splitlines()[:-1]
        assert tuple(line.split("=")[-1] for line in lines[:-1]) == p.subgoals


@pytest.mark.parametrize("style", ["plain", "r1"])
def test_restating_the_computation_is_not_an_answer(style):
    """The last step's left side as the answer (the arithmetic restated, not done) is
    scored wrong through the trainer's reward path, in both layouts; the number, written
    in the answer tag on a line of its own too, is right."""
    task = get_task("arithmetic", solution_style=style)
    rng = np.random.default_rng(5)
    problems = [task.sample(rng, lvl, "train") for lvl in (1, 2, 3) for _ in range(10)]
    completions = []
    for p in problems:
        steps = [s for s in p.solution.split("\n") if "=" in s]
        lhs = steps[-1].split("=")[0]
        if style == "r1":
            think = "<think>\n" + "\n".join(steps[:-1]) + "\n</think>\n"
            completions += [
                think + f"<answer>{lhs}</answer>",
                think + f"<answer>\n{p.answer}\n</answer>",
            ]
        else:
            completions += ["\n".join(steps[:-1] + [f"#### {lhs}"]), f"#### {p.answer}"]
    rows = score_completions(task, [p for p in problems for _ in range(2)], completions)
    for i, p in enumerate(problems):
        assert rows[2 * i]["answer_correct"] == 0.0, (p, completions[2 * i])
        assert rows[2 * i + 1]["answer_correct"] == 1.0, (p, completions[2 * i + 1])
