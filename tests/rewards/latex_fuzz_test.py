"""Fuzzing the verifier with LaTeX-like answers: nothing raises, nothing hangs the parent,
and the sympy workers survive whatever reaches them (issue: competition-math answers).

The strings are built from the pieces competition answers are made of (commands, braces,
environments, relations, separators, numbers), recombined at random, so the fuzzer
reaches the parser's corners (unbalanced braces, matrices inside intervals, a relation
inside a box, ...) far more often than random text would.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1jax.rewards import answers, verify_answer, verify_answers

PIECES = [
    *"0123456789",
    *"xyzabn",
    *"+-*/^_=<>(),;:.|!%{}[]",
    " ",
    "\\frac",
    "\\dfrac",
    "\\tfrac12",
    "\\sqrt",
    "\\sqrt[3]",
    "\\pi",
    "\\infty",
    "\\cdot",
    "\\times",
    "\\pm",
    "\\le",
    "\\geq",
    "\\neq",
    "\\approx",
    "\\in",
    "\\cup",
    "\\left(",
    "\\right)",
    "\\left[",
    "\\right]",
    "\\{",
    "\\}",
    "\\,",
    "\\!",
    "{,}",
    "\\text{ cm}",
    "\\text{ or }",
    "\\text{and}",
    "\\mbox{meters}",
    "^\\circ",
    "\\%",
    "\\sin",
    "\\cos^2",
    "\\log",
    "\\binom",
    "\\boxed{",
    "\\fbox{",
    "$",
    "$$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\\\",
    "\\quadx",
    "e3",
    "1 000",
    "1000,99",
    "204_5",
    "_{16}",
    " and ",
    " or ",
    "The answer is ",
    "Final Answer: ",
    "\n",
    "9^{9^{9}}",
    "10^{100}",
    "x^{99999}",
]
latex_like = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
REFERENCES = ["$5$", "$\\frac{1}{2}$", "$[0, 1)$", "$x \\le 3$", "$\\{1, 2\\}$", "$204_5$"]


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(latex_like, st.sampled_from(REFERENCES))
def test_fast_path_never_raises(text, reference):
    found = answers.extract_answer(text, fallback=True)
    assert found is None or isinstance(found, str)
    answers.parse_value(text)  # may be None; must not raise
    assert answers.decide(text, reference) in (True, False, None)
    for p, r in answers.answer_pairs(text, reference):
        assert isinstance(p, str) and isinstance(r, str)


@settings(max_examples=3, deadline=None, derandomize=True)
@given(st.lists(st.tuples(latex_like, st.sampled_from(REFERENCES)), min_size=40, max_size=40))
def test_workers_survive_fuzzed_batches(pairs):
    """Every pair goes to the sympy workers (``fast_path=False``): a verdict comes back for
    each, in order, and the pool still judges a known pair afterwards."""
    got = verify_answers(pairs, fast_path=False)
    assert len(got) == len(pairs) and all(isinstance(v, bool) for v in got)
    assert verify_answer("\\boxed{2\\sin b \\cos a}", "$\\sin(a+b) - \\sin(a-b)$")
    assert verify_answers([("\\boxed{x^2-1}", "$(x-1)(x+1)$")], fast_path=False) == [True]
