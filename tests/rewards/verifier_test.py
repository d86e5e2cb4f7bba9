"""Tests for r1jax.rewards.verifier: parsing, step checks, verdicts, the protocol."""

import pickle
import time

import pytest

from r1jax.rewards import verifier
from r1jax.rewards.verifier import (
    EquationVerifier,
    ParsedSolution,
    Verdict,
    Verifier,
    check_step,
    parse_solution,
    verify,
)

SOLUTION = "7*4=28\n28-5=23\n3*6=18\n23+18=41\n#### 41"


def test_parse_solution_example():
    parsed = parse_solution(SOLUTION)
    assert parsed == ParsedSolution(steps=("7*4=28", "28-5=23", "3*6=18", "23+18=41"), answer="41")


def test_parse_solution_ignores_prose_blank_lines_and_text_after_answer():
    text = (
        "Let me think.\n"
        "\n"
        "   7*4 = 28   \n"
        "So we have 28 apples\n"
        "28-5=23\n"
        "####   23  \n"
        "1+1=2\n"
        "#### 99\n"
    )
    parsed = parse_solution(text)
    assert parsed.steps == ("7*4 = 28", "28-5=23")
    assert parsed.answer == "23"


def test_parse_solution_without_answer_line():
    parsed = parse_solution("1+1=2\n2+2=4")
    assert parsed.steps == ("1+1=2", "2+2=4")
    assert parsed.answer is None


def test_parse_solution_indented_marker_and_empty_answer():
    assert parse_solution("1+1=2\n   #### 2").answer == "2"
    assert parse_solution("1+1=2\n####").answer == ""
    assert parse_solution("").steps == ()


@pytest.mark.parametrize(
    "step, ok",
    [
        ("7*4=28", True),
        (" 7 * 4 = 28 ", True),
        ("7*4=29", False),
        ("2*3=6=3+3", True),  # chained
        ("2*3=6=7", False),
        ("0.1+0.2=0.3", True),  # exact decimals
        ("1/3*3=1", True),
        ("1,000+1=1,001", True),
        ("2^3=8", True),
        ("10/4=2.5", True),
        ("1/0=1/0", False),
        ("28=28", True),
        ("a=b", False),
        ("x+1=2", False),
        ("7*4==28", False),
        ("=28", False),
        ("28=", False),
        ("28", False),
        ("3 apples = 3", False),
        ("<<48/2=24>>", False),  # GSM8K annotations: a fuller verifier's job
        ("__import__('os')=0", False),
    ],
)
def test_check_step(step, ok):
    assert check_step(step) is ok


def test_check_step_length_cap_is_cheap():
    step = "=".join(["1"] * 100_000)
    start = time.perf_counter()
    assert check_step(step) is False
    assert time.perf_counter() - start < 2.0  # capped before parsing (no blow-up)
    assert check_step("=".join(["1"] * 100)) is True


def test_verify_example():
    assert verify(SOLUTION, "41") == Verdict(
        answer_correct=True, num_steps=4, valid_steps=4, has_answer=True, credited_steps=4
    )


def test_verify_wrong_answer_and_wrong_step():
    text = "7*4=28\n28-5=24\n#### 24"
    assert verify(text, "23") == Verdict(  # 28 moved the solution on, though 24 is wrong
        answer_correct=False, num_steps=2, valid_steps=1, has_answer=True, credited_steps=1
    )


@pytest.mark.parametrize(
    "answer, reference, correct",
    [
        ("41", "41", True),
        ("41.", "41", True),
        ("41.0", "41", True),
        ("$1,200", "1200", True),
        ("1200", "1,200", True),
        ("3/2", "1.5", True),
        ("1.50", "3/2", True),
        ("-5", "-5", True),
        ("42", "41", False),
        ("41", "forty-one", False),  # unparseable reference
        ("forty-one", "41", False),
        ("50%", "50", False),
        ("", "0", False),
        ("- 10.0", "-10", True),
        ("-5 / 6", "-5/6", True),
        ("2/9", "0.2222", False),
        # The answer states a number; restating the computation is not an answer (a
        # policy could copy the question's arithmetic instead of doing it).
        ("14+7-5", "16", False),
        ("26 - 7 + 3 + 5 - 14", "13", False),
        ("(7/9 * 2 + 1 - 2) * 2/5", "2/9", False),
        ("2*3", "6", False),
        ("8/4", "2", False),  # a fraction is in lowest terms and not a whole number
        ("4/18", "2/9", False),
        ("2/1", "2", False),
        ("2^3", "8", False),
    ],
)
def test_verify_answer_comparison(answer, reference, correct):
    assert verify(f"1+1=2\n#### {answer}", reference).answer_correct is correct


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("<think>\n8/4=2\n</think>\n<answer>2</answer>", "2"),
        ("<think>\n8/4=2\n</think>\n<answer>\n2\n</answer>", "2"),  # on its own line
        ("<think>\n8/4=2\n</think>\n<answer>  2\n\n</answer>\n", "2"),
        ("<think>\n8/4=2\n</think>\n<answer>2\nnot closed", "2"),  # the rest of its line
        ("<think>\n8/4=2\n</think>\n<answer>2\n3\n</answer>", "2\n3"),  # not one number
        ("<think>\n8/4=2\n</think>\n<answer></answer>", ""),
    ],
)
def test_answer_tag_content_across_lines(completion, answer):
    parsed = verifier.parse_solution(completion, answer_tag=True)
    assert parsed == ParsedSolution(steps=("8/4=2",), answer=answer)
    verdict = verifier.EquationVerifier(answer_tag=True).verify(completion, "2")
    assert verdict.answer_correct is (answer == "2") and verdict.valid_steps == 1


def test_verify_no_answer_line():
    verdict = verify("1+1=2", "2")
    assert verdict == Verdict(  # nothing uses the step's result
        answer_correct=False, num_steps=1, valid_steps=1, has_answer=False, credited_steps=0
    )
    assert verify("1+1=2\n####  ", "2").has_answer is False


def test_verify_hostile_inputs_are_fast_and_safe():
    cases = [
        "#### " + "9" * 1_000_000,
        "#### " + "(" * 10000 + "1" + ")" * 10000,
        "#### 9**9**9**9",
        "The answer is 10**10**10",
        "#### ().__class__.__bases__[0].__subclasses__()",
        "#### 1\x002",
        "#### \u0663\u0664",
        "1=1\n" * 20_000 + "#### 2",
    ]
    for text in cases:
        start = time.perf_counter()
        verdict = verify(text, "2")
        assert time.perf_counter() - start < 10.0  # no blow-up, not a speed target
        assert isinstance(verdict, Verdict)
    many = verify("1=1\n" * 20_000 + "#### 2", "2")
    assert many.num_steps == 20_000
    assert many.valid_steps == verifier.MAX_CHECKED_STEPS  # the rest are not checked
    assert many.answer_correct


def test_verify_non_string_input():
    assert verify(None, "2") == Verdict(False, 0, 0, False, 0)  # type: ignore[arg-type]


def test_equation_verifier_is_a_picklable_verifier():
    v = EquationVerifier()
    assert isinstance(v, Verifier)
    assert pickle.loads(pickle.dumps(v)) == v
    assert v.verify(SOLUTION, "41") == verify(SOLUTION, "41")


class _AnnotatedVerifier(EquationVerifier):
    """A subclass that also accepts GSM8K <<a=b>> annotations as steps."""

    def parse(self, completion):
        return super().parse(completion.replace("<<", "\n").replace(">>", "\n"))


def test_subclass_extension_point():
    text = "She sold <<48/2=24>>24 clips\n#### 24"
    assert verify(text, "24").valid_steps == 0
    verdict = _AnnotatedVerifier().verify(text, "24")
    assert verdict == Verdict(
        answer_correct=True, num_steps=1, valid_steps=1, has_answer=True, credited_steps=1
    )
