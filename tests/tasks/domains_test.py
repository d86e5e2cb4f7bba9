"""Tests for the ten synthetic continual-learning domains (r1jax.tasks.domains)."""

import collections
import re
import string
from fractions import Fraction

import numpy as np
import pytest

from r1jax import tasks
from r1jax.rewards import EquationVerifier, check_step, score_completions
from r1jax.tasks import (
    DOMAINS,
    DomainTask,
    Task,
    domains,
    get_task,
    heldout_set,
    list_tasks,
    sample_mixture,
    split_of,
)
from r1jax.tokenizer import UNK_ID, CharTokenizer

N_PER_LEVEL = 300
STEP_LINE = re.compile(r"^[0-9]+(?:/[0-9]+)?(?:[-+*/][0-9]+(?:/[0-9]+)?){1,2}=[0-9]+(?:/[0-9]+)?$")
INT = re.compile(r"^[0-9]+$")
FRACTION = re.compile(r"^([0-9]+)/([0-9]+)$")
DISTRACTOR = re.compile(r" (?:Ignore|Not used:|Extra number:) ([0-9]+)\.")
QUESTION = re.compile(r"^([A-Z][A-Za-z ]*[a-z]): (.+)\. What is the result\?$")
SHOWN_STEP = re.compile(r"([0-9]+[-+*/][0-9]+)=([0-9]+)")
STEPS_BY_LEVEL = {1: {1}, 2: {2, 3}, 3: {3, 4, 5}}
PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


@pytest.fixture(scope="module")
def samples():
    """{domain: {level: [Problem]}}: N_PER_LEVEL train problems per level, plus 30 test."""
    out = {}
    for i, name in enumerate(DOMAINS):
        task = get_task(name)
        rng = np.random.default_rng(100 + i)
        out[name] = {
            lvl: [task.sample(rng, lvl, "train") for _ in range(N_PER_LEVEL)]
            + [task.sample(rng, lvl, "test") for _ in range(30)]
            for lvl in (1, 2, 3)
        }
    return out


def _all(samples, name):
    return [p for lvl in (1, 2, 3) for p in samples[name][lvl]]


def test_domains_order_and_exports():
    assert DOMAINS == (
        "addsub",
        "muldiv",
        "fractions",
        "percent",
        "units",
        "linear",
        "sequences",
        "rates",
        "physics",
        "debugging",
    )
    assert domains.DOMAINS is tasks.DOMAINS and tasks.DomainTask is domains.DomainTask
    assert set(DOMAINS) <= set(list_tasks())
    assert tuple(domains.DOMAIN_CLASSES) == DOMAINS


@pytest.mark.parametrize("name", DOMAINS)
def test_registered_protocol(name):
    task = get_task(name)
    cls = domains.DOMAIN_CLASSES[name]
    assert type(task) is cls and getattr(domains, cls.__name__) is cls
    assert isinstance(task, Task) and isinstance(task, DomainTask)
    assert task.name == name
    assert task.level_weights == (0.6, 0.3, 0.1)
    assert task.reward_parts == ("correctness", "efficiency", "novelty", "subgoal")
    assert isinstance(task.verifier, EquationVerifier)
    assert repr(task).startswith(f"{cls.__name__}(test_fraction=0.1")
    p = task.sample(np.random.default_rng(0), 2, "train")
    assert task.format_prompt(p) == p.question + "\n"
    assert task.reference_answer(p) == p.answer
    t = get_task(name, test_fraction=0.25, level_weights=[1, 1, 2], distractor_prob=1.0)
    assert t.test_fraction == 0.25 and t.level_weights == (1.0, 1.0, 2.0)
    assert "distractor_prob=1.0" in repr(t)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": "0.1"}, "test_fraction"),
        ({"test_fraction": True}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"level_weights": (0.5, 0.5)}, "level_weights"),
        ({"level_weights": (1.0, -1.0, 1.0)}, "level_weights"),
        ({"level_weights": (0, 0, 0)}, "level_weights"),
        ({"level_weights": "abc"}, "level_weights"),
        ({"level_weights": None}, "level_weights"),
        ({"distractor_prob": 1.5}, "distractor_prob"),
    ],
)
def test_constructor_validation(kwargs, match):
    for name in ("addsub", "debugging"):
        with pytest.raises(ValueError, match=match):
            get_task(name, **kwargs)


@pytest.mark.parametrize("name", DOMAINS)
def test_bad_level_and_split(name):
    task = get_task(name)
    with pytest.raises(ValueError, match="level"):
        task.sample(np.random.default_rng(0), 4, "train")
    with pytest.raises(ValueError):
        task.sample(np.random.default_rng(0), 1, "dev")


@pytest.mark.parametrize("name", DOMAINS)
def test_reference_solutions_are_true_and_verify(name, samples):
    task = get_task(name)
    verifier = EquationVerifier()
    for lvl in (1, 2, 3):
        for p in samples[name][lvl]:
            *steps, last = p.solution.split("\n")
            assert last == f"#### {p.answer}", p
            assert p.level == lvl and p.min_steps == len(steps), p
            assert len(steps) in STEPS_BY_LEVEL[lvl], p
            for line in steps:
                assert STEP_LINE.match(line), (line, p)
                assert check_step(line) and verifier.check_step(line), (line, p)
            assert steps[-1].split("=")[1] == p.answer
            assert p.subgoals == tuple(line.split("=")[1] for line in steps[:-1])
            for v in (verifier, task.verifier):
                verdict = v.verify(p.solution, p.answer)
                assert verdict.answer_correct and verdict.has_answer, p
                assert verdict.valid_steps == verdict.num_steps == p.min_steps, p
            if name == "fractions":
                m = FRACTION.match(p.answer)
                assert INT.match(p.answer) or (m and Fraction(p.answer).denominator > 1), p
            else:
                assert INT.match(p.answer), p


@pytest.mark.parametrize("name", DOMAINS)
def test_lengths_charset_and_small_numbers(name, samples):
    tok = CharTokenizer()
    for p in _all(samples, name):
        assert len(p.question) <= 140 and len(p.solution) + 1 <= 80, p
        assert set(p.question) <= PRINTABLE and set(p.solution) <= PRINTABLE | {"\n"}, p
        assert UNK_ID not in tok.encode(p.question + "\n" + p.solution)
        values = [Fraction(line.split("=")[1]) for line in p.solution.split("\n")[:-1]]
        assert all(v > 0 for v in values), p
        if name == "fractions":
            nums = [Fraction(x) for x in re.findall(r"[0-9]+/[0-9]+", p.solution)]
            assert all(f.denominator <= 12 for f in nums + values), p
        elif name == "units":
            assert max(values) <= 9000 and (max(values) <= 1000 or p.level == 1), p
        else:
            assert max(values) <= 200, p


@pytest.mark.parametrize("name", DOMAINS)
def test_level_mix(name):
    problems = sample_mixture(get_task(name), np.random.default_rng(7), 1500)
    freq = collections.Counter(p.level for p in problems)
    for lvl, w in zip((1, 2, 3), (0.6, 0.3, 0.1)):
        assert abs(freq[lvl] / 1500 - w) < 0.045, freq


@pytest.mark.parametrize("name", DOMAINS)
def test_splits_disjoint_and_heldout_deterministic(name, samples):
    task = get_task(name)
    for lvl in (1, 2, 3):
        train, test = samples[name][lvl][:N_PER_LEVEL], samples[name][lvl][N_PER_LEVEL:]
        assert all(split_of(p.question, 0.1) == "train" for p in train)
        assert all(split_of(p.question, 0.1) == "test" for p in test)
    train = sample_mixture(task, np.random.default_rng(3), 2000, "train")
    held = heldout_set(task, 256, seed=0)
    assert held[:128] == heldout_set(get_task(name), 128, seed=0)
    assert heldout_set(task, 128, seed=1) != held[:128]
    assert len({p.question for p in held}) == 256
    assert all(split_of(p.question, task.test_fraction) == "test" for p in held)
    assert not {p.question for p in held} & {p.question for p in train}


@pytest.mark.parametrize("name", DOMAINS)
def test_question_space_is_large(name):
    """1000 level-1 draws are mostly distinct: the level-1 space is well over 1000
    (about 2000-30000 questions measured); all levels together far more."""
    task = get_task(name)
    rng = np.random.default_rng(11)
    level1 = {task._generate(rng, 1).question for _ in range(1000)}
    assert len(level1) > 700, len(level1)
    assert len(heldout_set(task, 64, seed=2, level=1)) == 64
    level3 = {task._generate(rng, 3).question for _ in range(300)}
    assert len(level3) > 270


@pytest.mark.parametrize("name", DOMAINS)
def test_wrong_completions_score_lower(name, samples):
    task = get_task(name)
    problems = [samples[name][lvl][i] for lvl in (1, 2, 3) for i in range(15)]
    completions = []
    for p in problems:
        *steps, _ = p.solution.split("\n")
        wrong_answer = domains.fmt(Fraction(p.answer) + 1)
        lhs, rhs = steps[0].split("=")
        falsified = [f"{lhs}={domains.fmt(Fraction(rhs) + 1)}"] + steps[1:]
        completions += [
            p.solution,
            "\n".join(steps + [f"#### {wrong_answer}"]),
            "\n".join(falsified + [f"#### {p.answer}"]),
        ]
    rows = score_completions(task, [p for p in problems for _ in range(3)], completions)
    idle = 0
    for i, p in enumerate(problems):
        ref, bad_answer, bad_step = rows[3 * i : 3 * i + 3]
        assert ref["answer_correct"] == 1.0 and ref["valid_steps"] == ref["num_steps"], p
        assert ref["total"] > bad_answer["total"] and bad_answer["answer_correct"] == 0.0, p
        assert bad_step["valid_steps"] == ref["valid_steps"] - 1, p
        if task.verifier.verify(p.solution, p.answer).credited_steps:
            assert ref["total"] > bad_step["total"], p
        else:  # a reference that only restates (``1*5/9=5/9``) earns no step credit
            assert ref["total"] == bad_step["total"], p
            idle += 1
    assert idle <= 2  # such degenerate draws are rare


@pytest.mark.parametrize("name", DOMAINS)
def test_restating_the_computation_is_not_an_answer(name, samples):
    """The last step's left side after "####" (the arithmetic restated, not done) scores
    as a wrong answer through the trainer's reward path; the number itself is right."""
    task = get_task(name)
    problems, completions = [], []
    for p in (samples[name][lvl][i] for lvl in (1, 2, 3) for i in range(15)):
        *steps, _ = p.solution.split("\n")
        lhs = steps[-1].split("=")[0]
        if re.fullmatch(r"-?\d+", lhs.strip()):
            continue  # a restated value, not a computation
        problems += [p, p]
        completions += ["\n".join(steps[:-1] + [f"#### {lhs}"]), f"#### {p.answer}"]
    assert len(problems) >= 30, name
    rows = score_completions(task, problems, completions)
    for i in range(0, len(rows), 2):
        assert rows[i]["answer_correct"] == 0.0, (problems[i], completions[i])
        assert rows[i + 1]["answer_correct"] == 1.0, problems[i]


def test_debugging_shows_exactly_one_false_step(samples):
    for p in _all(samples, "debugging"):
        body = QUESTION.match(p.question)[2]
        shown = SHOWN_STEP.findall(body)
        assert len(shown) == body.count("="), p
        false = [i for i, (lhs, rhs) in enumerate(shown) if not check_step(f"{lhs}={rhs}")]
        assert len(false) == 1, p
        j = false[0]
        steps = p.solution.split("\n")[:-1]
        # The reference rewrites the wrong step (same left side) and every later one.
        assert len(steps) == len(shown) - j, p
        assert steps[0].split("=")[0] == shown[j][0], p
        for line, (lhs, _) in zip(steps[1:], shown[j + 1 :]):
            assert re.sub(r"^[0-9]+", "", line.split("=")[0]) == re.sub(r"^[0-9]+", "", lhs)
        assert p.answer != shown[-1][1], p  # the slip changed the shown result


def test_shared_surface_form_and_distinct_rules(samples):
    headers = {}
    for name in DOMAINS:
        got = set()
        for p in _all(samples, name):
            m = QUESTION.match(p.question)
            assert m, p.question
            got.add(m[1])
            assert p.question.endswith(". " + domains.QUESTION_TAIL)
        assert got == set(domains.DOMAIN_CLASSES[name].headers), (name, got)
        headers[name] = got
    # Every rule word belongs to one domain: only it tells the domains apart.
    owners = collections.Counter(h for hs in headers.values() for h in hs)
    assert all(n == 1 for n in owners.values()), owners
    # Different rules: no question (nor question body) is shared by two domains.
    bodies = {
        name: {QUESTION.match(p.question)[2] for p in _all(samples, name)} for name in DOMAINS
    }
    for i, a in enumerate(DOMAINS):
        for b in DOMAINS[i + 1 :]:
            assert not bodies[a] & bodies[b], (a, b)
    # One visual family: similar question lengths across domains.
    means = [np.mean([len(p.question) for p in _all(samples, n)]) for n in DOMAINS]
    assert max(means) < 2.5 * min(means), means


@pytest.mark.parametrize("name", DOMAINS)
def test_distractors(name, samples):
    level3 = samples[name][3]
    with_d = [p for p in level3 if DISTRACTOR.search(p.question)]
    assert 0.3 < len(with_d) / len(level3) < 0.7
    for p in with_d:
        d = DISTRACTOR.search(p.question)[1]
        body = DISTRACTOR.sub("", QUESTION.match(p.question)[2] + ".")
        assert d not in re.findall(r"[0-9]+", p.solution + " " + body), p
    for lvl in (1, 2):
        assert not any(DISTRACTOR.search(p.question) for p in samples[name][lvl])
    rng = np.random.default_rng(5)
    never = get_task(name, distractor_prob=0.0)
    always = get_task(name, distractor_prob=1.0)
    assert not any(DISTRACTOR.search(never.sample(rng, 3, "train").question) for _ in range(30))
    hits = sum(bool(DISTRACTOR.search(always.sample(rng, 3, "train").question)) for _ in range(30))
    assert hits >= 28


@pytest.mark.parametrize("name", DOMAINS)
def test_the_trainer_accepts_the_domain(name, tmp_path):
    """`r1jax-train --config.task=<domain>` on the embedded default's config: the config
    validates (task_kwargs reset for another task) and every prompt and reference fits
    the model's prompt and completion lengths."""
    from r1jax import config as config_lib
    from r1jax.configs.arith_tiny import get_config

    c = (
        config_lib.with_overrides(get_config("smoke"), {"task": name})
        if hasattr(config_lib, "with_overrides")
        else None
    )
    if c is None:
        c = get_config("smoke")
        c.task, c.task_kwargs = name, {}
    config_lib.validate(c)
    task = get_task(name)
    probs = sample_mixture(task, np.random.default_rng(0), 300, "train")
    assert max(len(task.format_prompt(p)) for p in probs) <= c.max_prompt_len
    assert max(len(p.solution) + 1 for p in probs) <= c.max_new_tokens
