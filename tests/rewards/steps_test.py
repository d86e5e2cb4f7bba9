"""Tests for r1jax.rewards.steps: step finding, spans, statuses, hostile input, properties."""

import json
import pathlib
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1jax.rewards import steps
from r1jax.rewards.steps import UNPARSEABLE, VERIFIED, WRONG, StepCheck, StepReport, check_steps

# Real GSM8K-style gold solutions (prose, calculator annotations, "$", "%", units).
GOLD = [
    (
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
        "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18"
    ),
    (
        "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is "
        "2+1=<<2+1=3>>3 bolts of fabric\n#### 3"
    ),
    (
        "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000"
        "\nHe increased the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\n"
        "So the new value of the house is 120,000+80,000=$<<120000+80000=200000>>200,000\n"
        "So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000"
    ),
    "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540",
    "There are 60 questions x 40/100 = <<60*40/100=24>>24 easy questions.\n#### 24",
    "So, his friend got $200/$2000 x 100% = <<200/2000*100=10>>10% discount.\n#### 10",
    "Jess needs to go 25 blocks – 5 = <<25-5=20>>20 blocks to get to work.\n#### 20",
    "Thus, W = 1 1/2 / 1/2 = 3 episodes.\nSo, 2L = 22 - 8 = 14\nSo L = 14/2 = <<14/2=7>>7\n#### 7",
]


_GSM8K_TEST = pathlib.Path(__file__).resolve().parents[3] / "shared/data/gsm8k/test.jsonl"


def _statuses(text):
    return [(s.text, s.status) for s in check_steps(text).steps]


def test_gsm8k_gold_fixture_all_verified_one_step_per_annotation():
    for text in GOLD:
        report = check_steps(text)
        assert report.num_verified == report.num_steps > 0, _statuses(text)
        annotated = [s for s in report.steps if s.annotated]
        assert len(annotated) == text.count("<<")
        for s in report.steps:
            assert text[s.span[0] : s.span[1]] == s.text


def test_annotation_and_its_prose_are_one_step_with_exact_span():
    text = GOLD[0]
    report = check_steps(text)
    assert [s.text for s in report.steps] == [
        "16 - 3 - 4 = <<16-3-4=9>>9",
        "9 * 2 = $<<9*2=18>>18",
    ]
    first = report.steps[0]
    assert first.span == (12, 38) and text[first.span[1] :].startswith(" duck")
    assert first.value == 9 and first.annotated
    assert report == StepReport(report.steps, 2, 2, 0, 0)
    assert report.fraction_verified == 1.0


def test_prose_disagreeing_with_its_annotation_is_wrong():
    # A genuine slip in GSM8K test gold: the prose says 364 / 4, the calculator 3/4*364.
    assert _statuses("364 yards = 364 / 4 = <<3/4*364=273>>273 yards") == [
        ("364 / 4 = <<3/4*364=273>>273", WRONG)
    ]
    assert _statuses("<<2*3=7>>7")[0][1] == WRONG
    assert _statuses("<<2*3=6>>7")[0][1] == WRONG  # the number after >> is checked too
    assert _statuses("<<2*3=6>> apples")[0] == ("<<2*3=6>>", VERIFIED)


@pytest.mark.parametrize(
    "text, found",
    [
        ("She makes 9 * 2 = $18 every day", ["9 * 2 = $18"]),
        ("a total of 1,200 + 300 = 1,500 people", ["1,200 + 300 = 1,500"]),
        ("2*3 = 6 = 3+3", ["2*3 = 6 = 3+3"]),
        ("Total = 3 + 4 = 7", ["3 + 4 = 7"]),
        ("(so 3 + 4 = 7)", ["3 + 4 = 7"]),
        ("Step 2: 3 * 4 = 12.", ["3 * 4 = 12"]),
        ("3 x 4 = 12 and 3 × 4 = 12 and 12 ÷ 4 = 3", ["3 x 4 = 12", "3 × 4 = 12", "12 ÷ 4 = 3"]),
        ("54 − 37 = 17", ["54 − 37 = 17"]),
        ("2 \\times 3 = 6", ["2 \\times 3 = 6"]),
        ("27(1/3)=9", ["27(1/3)=9"]),
        ("5 - 1 - 1/2 = 3 1/2 hours", ["5 - 1 - 1/2 = 3 1/2"]),
        ("12 x 1 and 1/4 = 15", ["12 x 1 and 1/4 = 15"]),
        ("¾ x 3/3 = 9/12", ["¾ x 3/3 = 9/12"]),
        ("-3 + 5 = 2 and 2 - 8 = -6", ["-3 + 5 = 2", "2 - 8 = -6"]),
        ("The answer is 7 - 2 = 5 - that's it", ["7 - 2 = 5"]),
        ("3 + 4 == 7", ["3 + 4 == 7"]),
    ],
)
def test_plain_equations_found_and_verified(text, found):
    got = _statuses(text)
    assert got == [(f, VERIFIED) for f in found]


@pytest.mark.parametrize(
    "text",
    [
        "x = 5",
        "3x = 12",
        "2L + 8 = 22 games",  # a variable joined by "+"
        "5 kg * 3 = 15 kg",  # units inside the expression
        "60g * 4/5 = 240g/5 = 48 grams",
        "$600/month * 12 months = $7200",
        "20% of 50 = 10",  # "of" is not an operator; lone number after a word
        "half of 50 = 25",
        "3 times 4 = 12",
        "3:30 = 210 minutes",
        "Day 1 3 + 4 = 7",  # juxtaposed numbers
        "3/3 - 2/3 = 1/3 of $150",  # the chain is about "1/3 of $150"
        "26=5+3x",
        "250=(5/2)x",
        "5! = 120",
        "√(144) = 12",
        "1=1 1=1",
        "__import__('os').system('rm -rf /') = 0",
        "a << 2 >> 1",  # no "=" inside: not an annotation
        "",
    ],
)
def test_not_steps(text):
    assert check_steps(text).num_steps == 0, _statuses(text)


@pytest.mark.parametrize(
    "text, found",
    [
        # Markdown list markers (a "-", "*", "+" or en dash, then a space, first on a
        # line) are no minus signs or products: "- 9 * 2 = 18" was a wrong step.
        ("- 16 - 3 - 4 = 9", ["16 - 3 - 4 = 9"]),
        ("Eggs:\n  - 9 * 2 = 18 dollars\n* 18 + 2 = 20", ["9 * 2 = 18", "18 + 2 = 20"]),
        ("+ 9*2 = 18\n– 18 - 5 = 13", ["9*2 = 18", "18 - 5 = 13"]),
        ("- -3 + 5 = 2", ["-3 + 5 = 2"]),
        ("-5 + 10 = 5", ["-5 + 10 = 5"]),  # a sign touching its number is a sign
        # LaTeX thousands separators.
        ("3{,}000 + 500 = 3{,}500", ["3{,}000 + 500 = 3{,}500"]),
        ("1\\,000 \\times 3 = 3\\,000", ["1\\,000 \\times 3 = 3\\,000"]),
    ],
)
def test_list_markers_and_latex_thousands(text, found):
    assert _statuses(text) == [(f, VERIFIED) for f in found]


@pytest.mark.parametrize(
    "text",
    [
        "3 : 1 = 6 : 2",  # ratios: not a step (the middle "1 = 6" was a wrong one)
        "12 : 4 = 3",
        "$1 = 100 cents",  # a conversion: numbers alone, a unit after the last
        "1 = 12 dozen",
    ],
)
def test_ratios_and_conversions_are_not_steps(text):
    assert check_steps(text).num_steps == 0, _statuses(text)


def test_a_bullet_does_not_turn_a_wrong_step_right():
    assert _statuses("- 5 + 10 = 5") == [("5 + 10 = 5", WRONG)]
    assert _statuses("1 = 100") == [("1 = 100", WRONG)]  # no unit: a false equation
    assert _statuses("2 + 2 = 5 of them") == [("2 + 2 = 5", WRONG)]


@pytest.mark.parametrize(
    "text, status",
    [
        ("2 + 2 = 5", WRONG),
        ("2*3 = 6 = 7", WRONG),
        ("10/3 = 3.33", VERIFIED),  # rounding to the decimals written
        ("10/3=3.3", VERIFIED),
        ("2/3 = 0.67", VERIFIED),
        ("10/3 = 3", WRONG),  # integers never round
        ("7/2 = 3", WRONG),
        ("2/3 = 0.66", WRONG),  # truncation is not rounding
        ("1/30 = 0.0", WRONG),  # a written 0 rounds nothing (fuzz review)
        ("5 - 4.96 = 0.0", WRONG),
        ("5 - 5.0 = 0.0", VERIFIED),
        ("1/7 = 0.1", VERIFIED),  # one decimal written: rounding to it
        ("123456789012345 + 100 = 123456789012345.0", WRONG),  # .0: an integer, exact
        ("123456789012345 + 100 = 123456789012445.0", VERIFIED),
        ("3.3 = 3.33", WRONG),  # no computed side: exact
        ("<<10/3=3.33>>3.33", VERIFIED),
        ("<<3*0.8=2.4000000000000004>>2.4", VERIFIED),  # a float's repr, then rounded
        ("0.1 + 0.2 = 0.30000000000000004", VERIFIED),
        ("<<50/3=16.666666666666668>>16.67", VERIFIED),
        ("<<50*.2=10>>10", VERIFIED),
        ("50 * 20% = 10", VERIFIED),  # p% is p/100 ...
        ("50 * 20% = 1000", WRONG),
        ("3 / 6 = 50%", VERIFIED),  # ... and a lone p% may mean p
        ("45 + 21 + 28 = 94%", VERIFIED),
        ("100% - 20% = 80%", VERIFIED),
        ("50 + 10% = 55", WRONG),
        ("4/20 x 100% = 20%", VERIFIED),
        (".24 * 100% = <<.24*100=24>>24%", VERIFIED),  # "x 100%" may mean percent units
        ("1 1/2 / 1/2 = 3", VERIFIED),  # spaced-off fractions are single numbers
        ("500/ 1/10 = <<500/1/10=50>>50", VERIFIED),  # ... only when spaced on both sides
        ("9**9**9**9 = 5", UNPARSEABLE),
        ("2^100 = 5", UNPARSEABLE),
        ("1/0 = 3", UNPARSEABLE),
        ("3 * (4 + 5 = 27", UNPARSEABLE),
        ("<<__import__('os')=1>>1", UNPARSEABLE),
        ("<<500/month*12=6000>>6000", UNPARSEABLE),
        ("<<560//10=56>>56", UNPARSEABLE),
    ],
)
def test_statuses(text, status):
    report = check_steps(text)
    assert [s.status for s in report.steps] == [status], _statuses(text)


@pytest.mark.parametrize(
    "text, want",
    [
        # long integers are exact: the float slack is for literals with a "."
        ("123456789012345 + 100 = 123456789012345", WRONG),
        ("123456789012345 + 100 = 123456789012445", VERIFIED),
        ("1234567890123456789 * 1 = 1234567890123456788", WRONG),
        ("0.1 + 0.2 = 0.30000000000000004", VERIFIED),
        ("<<3*0.8=2.4000000000000004>>2.4", VERIFIED),
    ],
)
def test_float_slack_only_for_decimal_literals(text, want):
    assert [s.status for s in check_steps(text).steps] == [want], _statuses(text)


@pytest.mark.parametrize(
    "text, found",
    [
        # words after the last side are prose or units: the step is still checked
        ("2 + 2 = 5 of them", [("2 + 2 = 5", WRONG)]),
        ("2 + 2 = 4 of them", [("2 + 2 = 4", VERIFIED)]),
        ("2 + 2 = 5cm", [("2 + 2 = 5", WRONG)]),
        ("2 + 2 = 4cm", [("2 + 2 = 4", VERIFIED)]),
        ("2 + 2 = 4 cm", [("2 + 2 = 4", VERIFIED)]),
        ("He has 2 * 7 = 14kg of rice", [("2 * 7 = 14", VERIFIED)]),
        ("<<2*7=14>>14kg of rice", [("<<2*7=14>>14", VERIFIED)]),
        # one glued letter is a variable: unparseable, never dropped
        ("2 + 2 = 5x", [("2 + 2 = 5x", UNPARSEABLE)]),
        ("2 + 2 = 4x", [("2 + 2 = 4x", UNPARSEABLE)]),
        ("2 + 2 = 1 + 3x", [("2 + 2 = 1 + 3x", UNPARSEABLE)]),
        ("2 + 3 = 5 = 5x", [("2 + 3 = 5 = 5x", UNPARSEABLE)]),
    ],
)
def test_words_after_a_side_do_not_hide_the_step(text, found):
    assert _statuses(text) == found


@pytest.mark.parametrize(
    "text",
    [
        "so 4 = 5x",  # no arithmetic side: not a step (as "26=5+3x")
        "2 + 2 = 4 of the 10 apples",  # "of" before a number multiplies
        "48 = 100% + 20% = 120% of the actual number",  # ... and after a percent
        "1 - 3/5 = 2/5 of his land",  # ... or a fraction
        "2*3 = 6kg * 2 = 12",  # a unit, then an operator
        "15kg * 3 = 45",
    ],
)
def test_multiplying_of_and_units_in_arithmetic_are_still_not_steps(text):
    assert check_steps(text).num_steps == 0, _statuses(text)


def test_run_on_chain_is_split_into_two_steps_sharing_a_number():
    text = "So 1/2 off is $3/2 = $1.50+$3.00=$4.50 in all"
    report = check_steps(text)
    assert _statuses(text) == [("$3/2 = $1.50", VERIFIED), ("$1.50+$3.00=$4.50", VERIFIED)]
    assert report.steps[0].span[1] > report.steps[1].span[0]  # they share "$1.50"
    assert _statuses("7 = 3 + 4 = 8")[0][1] == WRONG  # 3 + 4 != 7: no split


def test_counts_values_and_fraction_verified():
    text = "1+1=2\n2+2=5\n1/0=1\n<<3*3=9>>9\n#### 9"
    report = check_steps(text)
    assert (report.num_steps, report.num_verified, report.num_wrong) == (4, 2, 1)
    assert report.num_unparseable == 1 and report.fraction_verified == 0.5
    assert [s.value for s in report.steps] == [2, 4, None, 9]
    assert isinstance(report.steps[0], StepCheck) and not report.truncated
    assert check_steps("no maths here").fraction_verified == 0.0
    assert check_steps(None).num_steps == 0  # type: ignore[arg-type]


def test_values_are_exact():
    assert check_steps("1/3 + 1/6 = 0.5").steps[0].value == Fraction(1, 2)
    assert check_steps("0.1 + 0.2 = 0.3").steps[0].status == VERIFIED


@pytest.mark.parametrize(
    "text",
    [
        "(" * 10_000 + "1" + ")" * 10_000 + " = 1",
        "1+" + "9" * 1_000_000 + " = 1",
        "9" * 1_000_000,
        "\x00" * 100_000 + "1+1=2\x00=\x00",
        "__import__('os').system('ls') = <<__import__('os').system('ls')=0>>0",
        "9**9**9**9 = 1\n" * 5_000,
        "<<" * 100_000,
        "1=" * 200_000,
        "1 1/2 " * 50_000,
        "= " * 100_000 + "((((",
        "$%,.:;!√×÷−–·^*/+-=()<>x" * 5_000,
    ],
)
def test_hostile_input_is_fast_and_safe(text):
    start = time.perf_counter()
    report = check_steps(text)
    assert time.perf_counter() - start < 10.0  # no blow-up (speed: verifier_bench)
    assert report.num_steps == len(report.steps) <= steps.MAX_STEPS
    assert report.num_verified + report.num_wrong + report.num_unparseable == report.num_steps
    for s in report.steps:
        assert text[s.span[0] : s.span[1]] == s.text
        assert s.status in (VERIFIED, WRONG, UNPARSEABLE)


def test_caps_on_steps_and_text():
    report = check_steps("1+1=2\n" * 5_000)
    assert report.num_steps == steps.MAX_STEPS and report.truncated
    assert check_steps("9" * 1_000_000).truncated
    long = "1" + "+1" * 600 + " = 601"  # over MAX_STEP_CHARS: unparseable, not evaluated
    assert [s.status for s in check_steps(long).steps] == [UNPARSEABLE]


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_OPS |= {"x": lambda a, b: a * b, "/": lambda a, b: Fraction(a, b)}
_ints = st.integers(min_value=-(10**6), max_value=10**6)


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


@settings(max_examples=300, deadline=None)
@given(_ints, _ints.filter(bool), st.sampled_from(sorted(_OPS)), st.integers(1, 10**6))
def test_property_correct_verified_wrong_wrong(a, b, op, delta):
    right, sb = _OPS[op](a, b), f"({b})" if b < 0 else str(b)
    step = f"{a} {op} {sb} = {_fmt(right)}"
    assert _statuses(f"So {step} apples.") == [(step, VERIFIED)]
    bad = f"{a} {op} {sb} = {_fmt(right + delta)}"
    assert _statuses(f"Thus {bad}.") == [(bad, WRONG)]
    annotated = f"{a} {op} {sb} = <<{a}{op.replace('x', '*')}{sb}={_fmt(right)}>>{_fmt(right)}"
    assert _statuses(annotated) == [(annotated, VERIFIED)]


_pieces = st.sampled_from(
    list("0123456789 +-*/=()$%,.x\n") + ["<<", ">>", "1/2", "**", " of ", "–", "×", "½", "\x00"]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_pieces, max_size=120).map("".join)))
def test_property_never_raises_and_spans_slice_back(text):
    report = check_steps(text)
    assert report.num_steps == len(report.steps)
    assert report.num_verified + report.num_wrong + report.num_unparseable == report.num_steps
    assert [s.span for s in report.steps] == sorted(s.span for s in report.steps)
    for s in report.steps:
        start, end = s.span
        assert 0 <= start < end <= len(text) and text[start:end] == s.text
        assert (s.value is None) == (s.status == UNPARSEABLE)


@pytest.mark.skipif(not _GSM8K_TEST.exists(), reason="GSM8K test split not present")
def test_gsm8k_gold_test_split_measurement():
    """By hand/opt-in: all gold test solutions; prints the steps that do not verify."""
    found = verified = 0
    for line in _GSM8K_TEST.read_text().splitlines():
        report = check_steps(json.loads(line)["answer"])
        found, verified = found + report.num_steps, verified + report.num_verified
        for s in report.steps:
            if s.status != VERIFIED:
                print(s.status, repr(s.text))
    print(f"GSM8K test gold: {found} steps, {verified} verified ({verified / found:.4%})")
    assert found >= 4282 and verified >= 0.999 * found
