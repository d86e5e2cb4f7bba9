"""Layered synthetic arithmetic word problems (registered as "arithmetic").

Levels:
  1. one step, e.g. "Ann has 7 pens. She buys 5 more. How many pens does she have?"
  2. two or three steps, e.g. "Tom has 6 boxes of 4 apples. He eats 3. ..."
  3. four (rarely five) steps plus one distractor sentence whose number is not
     used by any step, e.g. "Ann's cat is 9 years old."

Numbers are small so a tiny character-level model can learn them: written
operands are 2..``max_operand``, multipliers/divisors 2..``max_factor``, a
multiplied value is at most ``max_operand`` (so every product is in a
``max_operand`` x ``max_factor`` table), every intermediate result is a
integer in 2..``max_number`` and divisions are exact. Every number a step
uses is written in the question or computed by an earlier step.

Reference solutions are one equation per line, ``a<op>b=c`` without spaces,
ending with ``#### N``; with ``solution_style="r1"`` the same lines sit inside
``<think>...</think>`` and the answer in ``<answer>N</answer>`` (DeepSeek-R1's layout;
the char tokenizer writes each tag as one token). Completions are scored by the task's
``verifier`` (``rewards.EquationVerifier``, reading the tag in the R1 style), with the
format part added to ``reward_parts`` in the R1 style. With probability ``verbose_prob`` the reference is
verbose, so a shorter correct solution (``min_steps`` lines) exists for RL to find.
Two verbose styles (``verbose_style``):

* ``"restate"``: the solution first restates each given quantity it
  will use, one identity per line (``7=7``, ``5=5``), then computes. The redundant
  lines all come before the first computation, so dropping them is one decision
  at the start of the solution, independent of how many steps the problem needs.
* ``"final_check"`` (the embedded default's choice): one redundant check of the last step, with the inverse
  operation, just before the answer line (``3+12=15``, ``15-12=3``, ``#### 15``):
  the "wait, let me verify" habit. The decision to check comes where the solution is
  complete in every problem, so skipping it never cuts a solution short.
* ``"long_route"``: every multiplication is written as repeated addition
  (``4*10=40`` becomes ``10+10=20``, ``20+10=30``, ``30+10=40``); a problem without
  a multiplication gets the final check instead. The long road is not only longer but
  riskier: each extra addition is one more chance of an arithmetic slip, so a policy
  that learns the short road should gain accuracy as well as brevity.
* ``"check"``: each computation step is followed by a redundant (true) check with
  the inverse operation (``7+5=12`` then ``12-5=7``). Measured on the embedded
  default: RL that learns to drop the check after a one-step problem's only step
  also stops multi-step solutions after their first step (two-step accuracy fell
  from 16% to 7%), because "check or stop" is the same decision there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from r1jax.rewards.verifier import EquationVerifier
from r1jax.tasks.base import Problem, check_split, register_task, sample_in_split

_NAMES = (
    ("Ann", "she"),
    ("Tom", "he"),
    ("Mia", "she"),
    ("Sam", "he"),
    ("Eva", "she"),
    ("Leo", "he"),
    ("Zoe", "she"),
    ("Max", "he"),
    ("Amy", "she"),
    ("Ben", "he"),
)
_ITEMS = (
    "pens",
    "apples",
    "cards",
    "books",
    "coins",
    "eggs",
    "shells",
    "stamps",
    "marbles",
    "cups",
    "toys",
    "beads",
)
_CONTAINERS = (("boxes", "box"), ("bags", "bag"), ("packs", "pack"), ("jars", "jar"))
_OTHER_ITEMS = ("hats", "socks", "pets", "kites")

_ADD = ("{S} buys {b} more.", "{S} finds {b} more.", "{S} gets {b} more.")
_SUB = ("{S} gives away {b}.", "{S} loses {b}.", "{S} sells {b}.")
_MUL = ("Then {s} has {b} times as many.",)
_DIV = ("{S} keeps one of {b} equal piles.",)
_DISTRACTORS = (
    "{N} is {d} years old.",
    "{N}'s cat is {d} years old.",
    "{N}'s dog is {d}.",
    "{N} also has {d} {other}.",
    "It is {d} degrees.",
)

_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}

# Question length caps (characters) per level; longer draws are rejected.
MAX_QUESTION_CHARS = {1: 76, 2: 120, 3: 150}
# Cap on the *verbose* solution length for every draw (so both verbosities fit).
MAX_VERBOSE_SOLUTION_CHARS = 92
SOLUTION_STYLES = ("plain", "r1")  # "#### N" last, or <think>steps</think><answer>N</answer>


class Step(NamedTuple):
    a: int
    op: str
    b: int
    c: int

    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}={self.c}"

    def check(self) -> "Step":
        """The inverse-operation check of this step (also a true equation)."""
        return Step(self.c, _INVERSE[self.op], self.b, self.a)


VERBOSE_STYLES = ("restate", "check", "final_check", "long_route")


def long_route(st: Step) -> list[Step]:
    """A multiplication as repeated addition (``4*10=40`` -> ``10+10=20``, ``20+10=30``,
    ``30+10=40``): the same result by a longer road, one addition per extra copy of the
    larger operand. Other steps are returned unchanged."""
    if st.op != "*":
        return [st]
    k, x = sorted((st.a, st.b))
    out, acc = [], x
    for _ in range(k - 1):
        out.append(Step(acc, "+", x, acc + x))
        acc += x
    return out or [st]


def given_numbers(steps: list[Step]) -> list[int]:
    """Operands taken from the question (not computed by an earlier step), first use order."""
    computed, out = set(), []
    for st in steps:
        for x in (st.a, st.b):
            if x not in computed and x not in out:
                out.append(x)
        computed.add(st.c)
    return out


def as_style(solution: str, style: str) -> str:
    """``solution`` (step lines, then ``#### N``) in ``style``: "plain" leaves it, "r1"
    wraps the steps in ``<think>`` and the answer in ``<answer>`` (DeepSeek-R1's layout)."""
    if style == "plain":
        return solution
    body, _, answer = solution.rpartition("\n#### ")
    return f"<think>\n{body}\n</think>\n<answer>{answer}</answer>"


def render_solution(steps: list[Step], verbose: bool, style: str = "restate") -> str:
    lines = []
    if verbose and style == "restate":
        lines += [f"{n}={n}" for n in given_numbers(steps)]
    if verbose and style == "long_route":
        if not any(st.op == "*" for st in steps):
            style = "final_check"  # nothing to take the long way round: check instead
        else:
            steps_out = [x for st in steps for x in long_route(st)]
            return "\n".join([x.text() for x in steps_out] + [f"#### {steps[-1].c}"])
    for st in steps:
        lines.append(st.text())
        if verbose and style == "check":
            lines.append(st.check().text())
    if verbose and style == "final_check":
        lines.append(steps[-1].check().text())
    lines.append(f"#### {steps[-1].c}")
    return "\n".join(lines)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class _Reject(Exception):
    pass


class ArithmeticTask:
    """Synthetic arithmetic word problems in three difficulty levels."""

    name = "arithmetic"
    reward_parts = ("correctness", "efficiency", "novelty", "subgoal")  # + "format" in R1 style

    def __init__(
        self,
        test_fraction: float = 0.1,
        verbose_prob: float = 0.6,
        verbose_style: str = "restate",
        max_number: int = 200,
        max_operand: int = 20,
        max_factor: int = 9,
        level_weights: tuple[float, ...] = (0.6, 0.3, 0.1),
        wide_level1: bool = False,
        solution_style: str = "plain",
    ):
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if not 0.0 <= verbose_prob <= 1.0:
            raise ValueError(f"verbose_prob must be in [0, 1], got {verbose_prob}")
        if max_operand < 4 or max_factor < 2 or max_number < 2 * max_operand:
            raise ValueError("need max_operand >= 4, max_factor >= 2, max_number >= 2*max_operand")
        if len(level_weights) != 3 or min(level_weights) < 0 or sum(level_weights) <= 0:
            raise ValueError(f"level_weights must be 3 non-negative weights, got {level_weights}")
        self.test_fraction = float(test_fraction)
        self.verbose_prob = float(verbose_prob)
        if verbose_style not in VERBOSE_STYLES:
            raise ValueError(
                f"verbose_style must be one of {VERBOSE_STYLES}, got {verbose_style!r}"
            )
        self.verbose_style = verbose_style
        if solution_style not in SOLUTION_STYLES:
            raise ValueError(
                f"solution_style must be one of {SOLUTION_STYLES}, got {solution_style!r}"
            )
        self.solution_style = solution_style
        # How completions are scored (rewards.scoring): equation lines, then the answer
        # after "####", or (R1 style) inside <answer>...</answer>, with the format part.
        self.verifier = EquationVerifier(answer_tag=solution_style == "r1")
        if solution_style == "r1":
            self.reward_parts = type(self).reward_parts + ("format",)
        self.max_number = int(max_number)
        self.max_operand = int(max_operand)
        self.max_factor = int(max_factor)
        self.level_weights = tuple(float(w) for w in level_weights)
        # Level-1 "plain" problems start from any amount up to max_number (not only
        # max_operand), so one-step problems cover the additions and subtractions that
        # multi-step problems need on their intermediate results.
        self.wide_level1 = bool(wide_level1)

    def __repr__(self) -> str:
        return (
            f"ArithmeticTask(test_fraction={self.test_fraction}, verbose_prob={self.verbose_prob}, "
            f"verbose_style={self.verbose_style!r}, "
            f"max_number={self.max_number}, max_operand={self.max_operand}, "
            f"max_factor={self.max_factor}, level_weights={self.level_weights}, "
            f"wide_level1={self.wide_level1}, solution_style={self.solution_style!r})"
        )

    # -- Task protocol -----------------------------------------------------

    def sample(self, rng: np.random.Generator, level: int, split: str) -> Problem:
        check_split(split)
        if level not in (1, 2, 3):
            raise ValueError(f"level must be 1, 2 or 3, got {level!r}")
        question, steps = sample_in_split(
            lambda: self._generate(rng, level), split, self.test_fraction
        )
        verbose = bool(rng.random() < self.verbose_prob)
        answer = str(steps[-1].c)
        return Problem(
            question=question,
            answer=answer,
            solution=as_style(
                render_solution(steps, verbose, self.verbose_style), self.solution_style
            ),
            level=level,
            min_steps=len(steps),
            subgoals=tuple(str(st.c) for st in steps[:-1]),
        )

    def format_prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def reference_answer(self, problem: Problem) -> str:
        return problem.answer

    # -- generation --------------------------------------------------------

    def _generate(self, rng: np.random.Generator, level: int):
        """A ``_Draft(question, steps)`` within the length caps (rejection sampling)."""
        for _ in range(1000):
            try:
                question, steps = self._draw(rng, level)
            except _Reject:
                continue
            if len(question) > MAX_QUESTION_CHARS[level]:
                continue
            if len(render_solution(steps, True, self.verbose_style)) > MAX_VERBOSE_SOLUTION_CHARS:
                continue
            return _Draft(question, steps)
        raise RuntimeError("arithmetic generator failed to produce a problem")

    def _draw(self, rng: np.random.Generator, level: int):
        if level == 1:
            n_steps = 1
        elif level == 2:
            n_steps = 2 + int(rng.integers(2))
        else:
            n_steps = 5 if rng.random() < 0.1 else 4
        lo, mo, mf, mn = 2, self.max_operand, self.max_factor, self.max_number

        starts = ["plain", "boxes", "compare"]
        if n_steps == 1:
            starts.append("split")
        if n_steps >= 2:
            starts.append("together")
        start = _pick(rng, starts)

        name, pron = _pick(rng, _NAMES)
        item = _pick(rng, _ITEMS)
        sentences: list[str] = []
        steps: list[Step] = []
        subj = pron  # pronoun for later sentences
        final_q = None
        first = None  # for "together": the first person's amount

        if start == "plain":
            v = int(rng.integers(lo, (mn if self.wide_level1 and n_steps == 1 else mo) + 1))
            sentences.append(f"{name} has {v} {item}.")
        elif start == "boxes":
            conts, _ = _pick(rng, _CONTAINERS)
            k = int(rng.integers(lo, mf + 1))
            per = int(rng.integers(lo, min(mo, mn // k) + 1))
            v = k * per
            steps.append(Step(k, "*", per, v))
            sentences.append(f"{name} has {k} {conts} of {per} {item}.")
        elif start == "split":
            conts, cont = _pick(rng, _CONTAINERS)
            k = int(rng.integers(lo, mf + 1))
            per = int(rng.integers(lo, min(mo, mn // k) + 1))
            total = k * per
            steps.append(Step(total, "/", k, per))
            sentences.append(f"{name} puts {total} {item} into {k} equal {conts}.")
            final_q = f"How many {item} are in each {cont}?"
            v = per
        else:  # compare / together
            # The second person has the other pronoun, so "she"/"he" is unambiguous.
            name2, pron2 = _pick(rng, [p for p in _NAMES if p[1] != pron])
            a = int(rng.integers(lo, mo + 1))
            kinds = ["more", "times"] + (["fewer"] if a >= 2 * lo else [])
            kind = _pick(rng, kinds)
            if kind == "more":
                b = int(rng.integers(lo, mo + 1))
                st = Step(a, "+", b, a + b)
                rel = f"{b} more"
            elif kind == "fewer":
                b = int(rng.integers(lo, min(mo, a - lo) + 1))
                st = Step(a, "-", b, a - b)
                rel = f"{b} fewer"
            else:
                b = int(rng.integers(lo, min(mf, mn // a) + 1))
                st = Step(a, "*", b, a * b)
                rel = f"{b} times as many"
            steps.append(st)
            sentences.append(f"{name} has {a} {item}. {name2} has {rel}.")
            first, v = a, st.c
            name, subj = name2, pron2
            if start == "compare" and n_steps == 1:
                final_q = f"How many {item} does {name2} have?"

        n_ops = n_steps - len(steps) - (1 if start == "together" else 0)
        if n_ops < 0:
            raise _Reject
        last_op = None
        prev = None
        for _ in range(n_ops):
            op, b = self._draw_op(rng, v, prev)
            if op == "+":
                st = Step(v, "+", b, v + b)
                sentences.append(_pick(rng, _ADD).format(S=_cap(subj), s=subj, b=b))
            elif op == "-":
                st = Step(v, "-", b, v - b)
                sentences.append(_pick(rng, _SUB).format(S=_cap(subj), s=subj, b=b))
            elif op == "*":
                st = Step(v, "*", b, v * b)
                sentences.append(_pick(rng, _MUL).format(S=_cap(subj), s=subj, b=b))
            else:
                st = Step(v, "/", b, v // b)
                sentences.append(_pick(rng, _DIV).format(S=_cap(subj), s=subj, b=b))
            steps.append(st)
            v, prev, last_op = st.c, (op, b), op

        if start == "together":
            total = first + v
            if total > mn:
                raise _Reject
            steps.append(Step(first, "+", v, total))
            final_q = _pick(
                rng,
                (
                    f"How many {item} do they have together?",
                    f"How many {item} do they have in all?",
                ),
            )
        if final_q is None:
            options = [f"How many {item} does {subj} have?"]
            if n_ops and level < 3:
                options.append(f"How many {item} does {subj} have now?")
            if last_op in ("-", "/"):
                options.append(
                    f"How many {item} are left?"
                    if last_op == "-"
                    else f"How many {item} does {subj} keep?"
                )
            elif start == "boxes" and not n_ops:
                options.append(f"How many {item} are there?")
            final_q = _pick(rng, options)

        if level == 3:
            used = {x for st in steps for x in (st.a, st.b, st.c)}
            free = [d for d in range(lo, mo + 1) if d not in used]
            if not free:
                raise _Reject
            d = _pick(rng, free)
            first_name = sentences[0].split(" ", 1)[0]
            distractor = _pick(rng, _DISTRACTORS).format(
                N=first_name, d=d, other=_pick(rng, _OTHER_ITEMS)
            )
            if rng.random() < 0.5:
                sentences.insert(0, distractor)
            else:
                sentences.append(distractor)
        sentences.append(final_q)
        return " ".join(sentences), steps

    def _draw_op(self, rng: np.random.Generator, v: int, prev):
        """An operation (op, operand) applicable to the running value ``v``."""
        lo, mo, mf, mn = 2, self.max_operand, self.max_factor, self.max_number
        cands: dict[str, list[int]] = {
            "+": list(range(lo, min(mo, mn - v) + 1)),
            "-": list(range(lo, min(mo, v - lo) + 1)),
            "*": list(range(lo, min(mf, mn // v) + 1)) if v <= mo else [],
            "/": [k for k in range(lo, mf + 1) if v % k == 0 and v // k >= lo],
        }
        if prev is not None:  # never undo the previous operation
            pop, pb = prev
            inv = _INVERSE[pop]
            cands[inv] = [b for b in cands[inv] if b != pb]
        weights = {"+": 1.0, "-": 1.0, "*": 0.7, "/": 0.8}
        ops = [op for op in "+-*/" if cands[op]]
        if not ops:
            raise _Reject
        w = np.array([weights[op] for op in ops])
        op = ops[int(rng.choice(len(ops), p=w / w.sum()))]
        return op, _pick(rng, cands[op])


class _Draft(NamedTuple):
    question: str
    steps: list


register_task("arithmetic", ArithmeticTask)
