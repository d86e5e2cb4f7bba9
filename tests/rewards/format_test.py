"""Tests for r1jax.rewards.format: the R1 <think>/<answer> format reward."""

import time

import pytest

from r1jax.rewards.format import format_reward, split_think_answer

GOOD = "<think>7*4 is 28, minus 5 is 23</think><answer>7*4=28\n28-5=23\n#### 23</answer>"


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "<think>a</think><answer>b</answer>",
        "  \n<think>a</think>\n\n<answer>b</answer>\n  ",
        "<think>\n  reasoning \n</think> \t <answer> 42 </answer>",
        "<think>a < b and b > c</think><answer>#### 1</answer>",  # stray < > are text
        "<think><THINK>upper case is text</THINK></think><answer>x</answer>",
        "<think>a</think><answer>ünïcødé ✓</answer>",
    ],
)
def test_well_formed_scores_one(text):
    assert format_reward(text) == 1.0
    think, answer = split_think_answer(text)
    assert think and answer
    assert think == think.strip() and answer == answer.strip()


def test_split_returns_stripped_contents():
    assert split_think_answer("<think> a b </think>\n<answer>\n#### 3\n</answer>") == (
        "a b",
        "#### 3",
    )
    assert split_think_answer(GOOD)[1] == "7*4=28\n28-5=23\n#### 23"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "just an answer #### 23",
        "<think>a</think>",  # no answer block
        "<answer>b</answer>",  # no think block
        "<answer>b</answer><think>a</think>",  # wrong order
        "<think></think><answer>b</answer>",  # empty think
        "<think>a</think><answer>   \n </answer>",  # blank answer
        "<think>a</think>text in between<answer>b</answer>",
        "preamble <think>a</think><answer>b</answer>",
        "<think>a</think><answer>b</answer> trailing",
        "<think>a</think><answer>b</answer><answer>c</answer>",  # duplicated answer
        "<think>a</think><think>a2</think><answer>b</answer>",  # duplicated think
        "<think><think>a</think></think><answer>b</answer>",  # nested think
        "<think>a<answer>x</answer></think><answer>b</answer>",  # answer inside think
        "<think>a</think><answer><think>x</think>b</answer>",  # think inside answer
        "<think>a</think><answer>b</answer></answer>",  # extra closing tag
        "<think>a<answer>b</answer>",  # unclosed think
        "<think>a</think><answer>b",  # unclosed answer
        "<think>a</think><answer>b</answer",  # truncated closing tag
        "<THINK>a</THINK><ANSWER>b</ANSWER>",  # tags are case-sensitive
        "<think >a</think><answer>b</answer>",  # not the exact tag
        "<think>a</think><answer</answer>",
    ],
)
def test_malformed_scores_zero(text):
    assert format_reward(text) == 0.0
    assert split_think_answer(text) == (None, None)


@pytest.mark.parametrize("value", [None, 3, b"<think>a</think><answer>b</answer>", ["x"]])
def test_non_strings_score_zero_without_raising(value):
    assert format_reward(value) == 0.0
    assert split_think_answer(value) == (None, None)


def test_reward_is_exactly_zero_or_one():
    assert {format_reward(t) for t in (GOOD, "", GOOD + "x")} == {0.0, 1.0}
    assert isinstance(format_reward(GOOD), float)


@pytest.mark.parametrize(
    "text",
    [
        "<think>" * 200_000,
        "<think>" + "a" * 5_000_000 + "</think><answer>" + "b" * 5_000_000 + "</answer>",
        "<" * 3_000_000 + "/think>",
        "<think>x</think>" + " " * 3_000_000 + "<answer>y</answer>",
        "</think><answer>" * 100_000,
    ],
)
def test_hostile_long_input_is_fast(text):
    start = time.perf_counter()
    result = format_reward(text)
    assert time.perf_counter() - start < 5.0  # linear: milliseconds for megabytes; a
    # quadratic scan of these inputs takes hours
    assert result in (0.0, 1.0)


def test_long_well_formed_input_still_scores():
    text = "<think>" + "a" * 1_000_000 + "</think><answer>b</answer>"
    assert format_reward(text) == 1.0
