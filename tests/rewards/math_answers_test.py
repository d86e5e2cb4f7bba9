"""Competition-math (MATH dataset) answers through ``verify_answer``: a table of verdicts.

Each case is ``(prediction, reference, expected, rule)``. Predictions are written the way
a model writes them (sentences, ``$...$``, ``\\boxed{}``, ``\\( \\)``, ``\\[ \\]``,
``$$ $$``, worked solutions ending in a boxed answer or "The answer is ..."); references
the way MATH writes them (usually ``$...$`` LaTeX, sometimes plain). The expected
verdicts encode the policy, not what any implementation happens to do:

* Extraction: the last ``\\boxed{..}``/``\\fbox{..}`` (nested braces); else the last
  ``<answer>..</answer>``, ``#### x``, answer line or "the answer is x" phrase; else the
  last math environment; else a short bare answer; else the last standalone number on the
  last line (a number glued to letters, ``AZYUK2A``, is no number).
* Equations: a named equation ``x = 3`` is its value; equations with symbols on both sides
  are equal when their ``lhs - rhs`` differ by a nonzero constant factor; a different
  variable name is a different answer.
* Units, ``^\\circ``, ``\\%`` (``50\\%`` is 50 and 0.5) and ``\\text{}`` wrappers are
  ignored; text answers compare case-insensitively without spaces and a trailing period.
* Numbers: fractions, mixed numbers, roots, ``\\pi``, scientific notation, thousands
  separators, a decimal comma only when unambiguous (4+ digits before it, not exactly 3
  after). A decimal matches an exact value rounded or truncated to its written places
  with at least two significant digits; otherwise only float noise (round-off in the
  last digits of a float printed in full) is forgiven. A plain numeral matches a base-b
  reference written with the same digits.
* Sets and bare lists are unordered, tuples and points ordered, intervals compare ends
  and openness, unions are unordered, inequalities compare as the set they describe,
  chains compare as orderings, matrices entry by entry, expressions through sympy.
* Traps (all False): hedges (``5 or 6``), a number hidden in a word, a wrong variable
  name, a wrong last box after a right one, unfinished arithmetic in words.
"""

import json
import subprocess
import sys
import time

import pytest

from r1jax.rewards import symbolic, verify_answer


def _lines(*parts: str) -> str:
    return "\n".join(parts)


# ------------------------------------------------------------------------ long solutions
DIVISORS = _lines(
    r"We need the number of positive divisors of $360 = 2^3 \cdot 3^2 \cdot 5$.",
    r"Each divisor is $2^a 3^b 5^c$ with $0 \le a \le 3$, $0 \le b \le 2$, $0 \le c \le 1$.",
    r"So there are $(3+1)(2+1)(1+1) = 24$ divisors.",
    r"The answer is $\boxed{24}$.",
)
RATIO = _lines(
    r"Let $r$ be the common ratio. Then $ar = 6$ and $ar^3 = \frac{3}{2}$.",
    r"Dividing, $r^2 = \frac{1}{4}$, so $r = \frac{1}{2}$ since the terms are positive.",
    r"The answer is $\frac{1}{2}$.",
)
MINIMUM = _lines(
    "Completing the square,",
    r"\[",
    r"x^2 - 6x + 13 = (x-3)^2 + 4,",
    r"\]",
    "so the minimum value is",
    r"\[",
    r"4.",
    r"\]",
)
SUM = _lines(
    r"From the first equation we get $x = 5$.",
    r"Substituting, $y = 2(5) - 3 = 7$.",
    r"So $x + y = \boxed{12}$.",
)
DOMAIN = _lines(
    r"The expression is defined when $x - 2 \ge 0$ and $5 - x > 0$.",
    r"So $2 \le x < 5$, that is, the domain is $\boxed{[2, 5)}$.",
)
MINERVA = _lines(
    r"Both are red with probability $\frac{5}{10} \cdot \frac{4}{9} = \frac{2}{9}$.",
    "",
    r"Final Answer: The final answer is $\frac{2}{9}$. I hope it is correct.",
)
POINT = _lines(
    r"Adding the equations gives $3x = 6$, so $x = 2$.",
    r"Then $y = 1 - 2 = -1$.",
    r"Thus, the answer is $\boxed{(2, -1)}$.",
)
TEXT_SOLUTION = _lines(
    r"Since $f(-x) = (-x)^3 - (-x) = -(x^3 - x) = -f(x)$, the function is odd.",
    r"$\boxed{\text{odd}}$",
)
FIRST_BOX_RIGHT = r"First I thought $\boxed{5}$, but checking again the count is $\boxed{6}$."
HALF_QUARTER = r"So $\boxed{\frac{1}{2}}$... wait, I dropped a factor: $\boxed{\frac{1}{4}}$."

# -------------------------------------------------------------------------------- cases
_P12 = r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"

CASES = [
    # extraction: the last \boxed / \fbox
    (r"So the probability is $\boxed{\frac{1}{6}}$.", r"$\frac{1}{6}$", True, "boxed"),
    (r"Therefore, $x = \boxed{7}$.", r"$7$", True, "boxed"),
    (r"The final answer is $\boxed{42}$. I hope it is correct.", "42", True, "boxed"),
    (r"The final answer is $\boxed{41}$. I hope it is correct.", "42", False, "boxed"),
    (r"\boxed 5", "5", True, "boxed"),
    (r"We get \boxed{-3}.", r"$3$", False, "boxed"),
    (r"Thus \fbox{12} is the count.", r"$12$", True, "fbox"),
    (r"Thus \fbox{13}.", "12", False, "fbox"),
    (r"$\fbox{\frac{2}{3}}$", r"$\frac23$", True, "fbox"),
    (r"$\fbox{\frac{3}{2}}$", r"$\frac23$", False, "fbox"),
    (r"Hence $\boxed{\frac{\sqrt{3}}{2}}$.", r"$\frac{\sqrt{3}}{2}$", True, "boxed-nested"),
    (r"$\boxed{\dfrac{1}{\sqrt{2}}}$", r"$\frac{\sqrt{2}}{2}$", True, "boxed-nested"),
    (
        r"\boxed{\left\{ \frac{1}{2}, \frac{3}{2} \right\}}",
        r"$\left\{\frac{3}{2}, \frac{1}{2}\right\}$",
        True,
        "boxed-nested",
    ),
    (
        r"\boxed{\begin{pmatrix} 1 \\ -2 \end{pmatrix}}",
        r"$\begin{pmatrix} 1 \\ -2 \end{pmatrix}$",
        True,
        "boxed-nested",
    ),
    (r"The answer is $\boxed{{3}}$.", "3", True, "boxed-nested"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"$\frac{\sqrt{2}}{2}$", False, "boxed-nested"),
    (r"$\boxed{\frac{1}{\frac{1}{2}+1}}$", r"$\frac{2}{3}$", True, "boxed-nested"),
    (r"$\boxed{\frac{1}{\frac{1}{2}+1}}$", r"$\frac{3}{2}$", False, "boxed-nested"),
    (r"\boxed{2^{\frac{1}{2}}}", r"$\sqrt{2}$", True, "boxed-nested"),
    (r"\boxed{\sqrt{\frac{9}{4}}}", r"$\frac{2}{3}$", False, "boxed-nested"),
    (r"\boxed{\sqrt{\frac{9}{4}}}", r"$\frac32$", True, "boxed-nested"),
    (FIRST_BOX_RIGHT, "5", False, "last-boxed"),
    (FIRST_BOX_RIGHT, "6", True, "last-boxed"),
    (HALF_QUARTER, r"$\frac12$", False, "last-boxed"),
    (HALF_QUARTER, r"$\frac14$", True, "last-boxed"),
    (r"\boxed{10} is wrong; the right count is \boxed{12}", "10", False, "last-boxed"),
    # extraction: answer tags, ####, answer lines and phrases
    (r"<think>2+2 is 4</think><answer>4</answer>", "4", True, "answer-tag"),
    (r"<answer>\frac{1}{2}</answer>", r"$0.5$", True, "answer-tag"),
    (r"<answer>3</answer>", "4", False, "answer-tag"),
    (r"<answer>5</answer> no, rather <answer>7</answer>", "5", False, "answer-tag"),
    (r"<think>Maybe 5.</think><answer>x = 6</answer>", "6", True, "answer-tag"),
    ("She sells 9 eggs a day.\n#### 18", "18", True, "hash-answer"),
    ("#### 1,000", r"$1000$", True, "hash-answer"),
    ("#### 17", "18", False, "hash-answer"),
    ("#### 5\nmore text\n#### 7", "5", False, "hash-answer"),
    ("Answer: 72", "72", True, "answer-line"),
    ("Final answer: 42", r"$42$", True, "answer-line"),
    (r"**Final Answer:** $\frac{3}{4}$", r"\frac34", True, "answer-line"),
    ("Answer: 41\n", "42", False, "answer-line"),
    ("We computed it twice.\nFinal answer: 9", "8", False, "answer-line"),
    (r"The answer is $\frac{3}{4}$.", r"$\frac{3}{4}$", True, "answer-phrase"),
    ("So the answer is 7.", "7", True, "answer-phrase"),
    ("So the answer is 7.", "8", False, "answer-phrase"),
    ("The answer is 2. Wait, no: the answer is 3.", "2", False, "answer-phrase"),
    ("The answer is 2. Wait, no: the answer is 3.", "3", True, "answer-phrase"),
    (r"Therefore the answer is \(x = 5\).", "5", True, "answer-phrase"),
    # extraction: the last math environment, a bare answer, the last number
    (r"The area is $$12.$$", r"$12$", True, "display-math"),
    (r"So we get \[ x = 5 \]", "5", True, "display-math"),
    (r"The distance is \(2\sqrt{3}\).", r"$2\sqrt3$", True, "display-math"),
    (_lines("Thus the sum is", r"\[", r"\frac{7}{2}", r"\]"), "3.5", True, "display-math"),
    (
        _lines("The roots multiply to", "$$", r"-\frac{5}{2}", "$$"),
        r"$-\frac52$",
        True,
        "display-math",
    ),
    (r"We have $x = 2$, so the area is $A = 24$.", "24", True, "display-math"),
    (r"We have $x = 2$, so the area is $A = 24$.", "2", False, "display-math"),
    (r"$$\frac{3}{4}$$", r"$\frac{4}{3}$", False, "display-math"),
    (r"The sum is \(\frac{7}{2}\).", "3", False, "display-math"),
    (r"Since $3^2 = 9$, the remainder is $4$.", "9", False, "display-math"),
    (r"Since $3^2 = 9$, the remainder is $4$.", r"$4$", True, "display-math"),
    ("3/4", r"$\frac{3}{4}$", True, "bare-answer"),
    ("0.75", r"\frac34", True, "bare-answer"),
    ("-7", "7", False, "bare-answer"),
    ("2/3", r"$\frac{3}{2}$", False, "bare-answer"),
    ("x = 3", r"$3$", True, "bare-answer"),
    ("She has 12 apples.\nSo in total she has 15 apples", "15", True, "last-number"),
    ("She has 12 apples.\nSo in total she has 15 apples", "12", False, "last-number"),
    ("We add 3 and 4 to get 7", "7", True, "last-number"),
    ("We add 3 and 4 to get 7", "4", False, "last-number"),
    ("It costs 250 dollars in total", r"$250$", True, "last-number"),
    ("It costs 250 dollars in total", r"$25$", False, "last-number"),
    # fractions, decimals, mixed numbers
    (r"\boxed{\dfrac{3}{4}}", r"$\frac34$", True, "dfrac"),
    (r"$\tfrac12$", r"$\frac{1}{2}$", True, "dfrac"),
    (r"\boxed{3/4}", r"$\frac{3}{4}$", True, "dfrac"),
    (r"\boxed{\dfrac{4}{3}}", r"$\frac{3}{4}$", False, "dfrac"),
    (r"\boxed{\frac{6}{8}}", r"$\frac34$", True, "dfrac"),
    (r"\boxed{-\frac{1}{2}}", r"$\frac{-1}{2}$", True, "dfrac"),
    (r"\boxed{\frac{1}{2}}", r"$-\frac12$", False, "dfrac"),
    (r"\boxed{\frac{7}{2}}", "3.5", True, "dfrac"),
    (r"\boxed{\frac14}", r"$4$", False, "dfrac"),
    (r"\boxed{\frac{1}{2}}", "0.5", True, "dfrac"),
    (r"\boxed{0.2}", r"$\frac15$", True, "dfrac"),
    (r"\boxed{0.25}", r"$\frac15$", False, "dfrac"),
    (r"\boxed{\dfrac{10}{4}}", r"$\frac{5}{2}$", True, "dfrac"),
    (r"\boxed{\dfrac{2}{5}}", r"$\frac{5}{2}$", False, "dfrac"),
    (r"\boxed{10}", "10.0", True, "decimal"),
    (r"\boxed{10.0}", r"$10$", True, "decimal"),
    (r"\boxed{10.01}", "10", False, "decimal"),
    (r"\boxed{.5}", "0.5", True, "decimal"),
    (r"\boxed{0.05}", "0.5", False, "decimal"),
    (r"\boxed{2\frac{1}{2}}", r"$\frac{5}{2}$", True, "mixed-number"),
    (r"\boxed{2\frac{1}{2}}", r"$1$", False, "mixed-number"),
    (r"\boxed{3\frac{3}{4}}", "3.75", True, "mixed-number"),
    (r"\boxed{1\frac{1}{3}}", r"$\frac{1}{3}$", False, "mixed-number"),
    (r"\boxed{\frac{5}{2}}", r"$2\frac{1}{2}$", True, "mixed-number"),
    (r"\boxed{2\frac{1}{4}}", r"$2\frac{1}{2}$", False, "mixed-number"),
    # \left ... \right
    (r"\boxed{\left( 1, 2 \right)}", r"$(1,2)$", True, "left-right"),
    (r"\boxed{\left[ 0, 1 \right)}", r"$[0, 1)$", True, "left-right"),
    (r"\boxed{\left\{ 1, 2 \right\}}", r"$\{1, 2\}$", True, "left-right"),
    (r"\boxed{\left| -3 \right|}", r"$3$", True, "left-right"),
    (r"\boxed{\left( 2, 1 \right)}", r"$(1, 2)$", False, "left-right"),
    (r"\boxed{\left[ 0, 1 \right]}", r"$[0, 1)$", False, "left-right"),
    (r"\boxed{\left(\frac{1}{2}\right)^2}", r"$\frac14$", True, "left-right"),
    (r"\boxed{\left(\frac{1}{2}\right)^3}", r"$\frac14$", False, "left-right"),
    # units, degrees, percent
    (r"\boxed{15\text{ cm}^2}", "15", True, "units-text"),
    (r"\boxed{15\text{ cm}^2}", "16", False, "units-text"),
    (r"\boxed{\frac{1}{3}\text{ meters}}", "1/3", True, "units-text"),
    (r"\boxed{\frac{1}{3}\text{ meters}}", r"$3$", False, "units-text"),
    (r"The length is $\boxed{6\mbox{ inches}}$.", r"$6$", True, "units-text"),
    (r"$\boxed{20\textbf{meters}}$", "20", True, "units-text"),
    (r"\boxed{5 km/h}", r"$5$", True, "units-text"),
    ("The speed is 5 km/h", r"$50$", False, "units-text"),
    (r"\boxed{12\pi\text{ square units}}", r"$12\pi$", True, "units-text"),
    (r"\boxed{12\text{ square units}}", r"$12\pi$", False, "units-text"),
    (r"\boxed{7\text{ cm}}", r"$70$", False, "units-text"),
    (r"The tank holds \boxed{40\text{ gallons}}.", r"$40$", True, "units-text"),
    (r"\boxed{40\text{ gallons}}", r"$4$", False, "units-text"),
    (r"\boxed{42}", r"$\$42$", True, "units-dollar"),
    (r"\boxed{\$42.50}", r"$\$42.50$", True, "units-dollar"),
    (r"\boxed{\$24}", r"$\$42$", False, "units-dollar"),
    (r"\boxed{\$42.05}", r"$\$42.50$", False, "units-dollar"),
    (r"\boxed{30^\circ}", "30", True, "degrees"),
    (r"\boxed{30^{\circ}}", r"$30$", True, "degrees"),
    (r"\boxed{30°}", r"$30^\circ$", True, "degrees"),
    ("The answer is 30°.", r"$30^\circ$", True, "degrees"),
    (r"\boxed{45^\circ}", r"$30^\circ$", False, "degrees"),
    (r"$\angle ABC = \boxed{120^\circ}$", r"$120$", True, "degrees"),
    (r"\boxed{60}", r"$120^{\circ}$", False, "degrees"),
    (r"\boxed{72^{\circ}}", r"$72^\circ$", True, "degrees"),
    (r"\boxed{27^\circ}", r"$72^\circ$", False, "degrees"),
    (r"\boxed{50\%}", "50", True, "percent"),
    (r"\boxed{50\%}", "0.5", True, "percent"),
    ("The answer is 50%.", r"$50\%$", True, "percent"),
    (r"\boxed{25\%}", r"$50$", False, "percent"),
    (r"\boxed{5\%}", "0.5", False, "percent"),
    (r"\boxed{12.5\%}", "0.125", True, "percent"),
    (r"\boxed{50\%}", r"$5$", False, "percent"),
    (r"\boxed{40}", r"$40\%$", True, "percent"),
    (r"\boxed{0.4}", r"$40\%$", True, "percent"),
    (r"\boxed{4}", r"$40\%$", False, "percent"),
    # pi, roots, scientific notation
    (r"\boxed{2\pi}", r"$2 \pi$", True, "pi"),
    (r"\boxed{\frac{\pi}{2}}", r"$\frac12\pi$", True, "pi"),
    (r"\boxed{\pi/2}", r"$\frac{\pi}{2}$", True, "pi"),
    (r"\boxed{\frac{\pi}{3}}", r"$\frac{\pi}{6}$", False, "pi"),
    (r"\boxed{4\pi}", r"$4$", False, "pi"),
    (r"\boxed{\frac{25\pi}{4}}", r"$6.25\pi$", True, "pi"),
    (r"\boxed{36\pi}", r"$6\pi$", False, "pi"),
    (r"\boxed{\cos\frac{\pi}{3}}", r"$\frac12$", True, "pi"),
    (r"\boxed{8 - 2\pi}", r"$8-2\pi$", True, "pi"),
    (r"\boxed{2\pi - 8}", r"$8-2\pi$", False, "pi"),
    (r"\boxed{\sqrt{8}}", r"$2\sqrt{2}$", True, "sqrt"),
    (r"\boxed{\sqrt{12}}", r"$2\sqrt{3}$", True, "sqrt"),
    (r"\boxed{\sqrt{12}}", r"$3\sqrt{2}$", False, "sqrt"),
    (r"\boxed{\sqrt2}", r"$\sqrt{2}$", True, "sqrt"),
    (r"\boxed{\sqrt[3]{8}}", r"$2$", True, "sqrt"),
    (r"\boxed{\sqrt[3]{2}}", r"$2^{1/3}$", True, "sqrt"),
    (r"\boxed{\sqrt{2}}", r"$2$", False, "sqrt"),
    (r"\boxed{\frac{\sqrt{6}}{3}}", r"$\sqrt{\frac{2}{3}}$", True, "sqrt"),
    (r"\boxed{\frac{\sqrt{6}}{2}}", r"$\sqrt{\frac{2}{3}}$", False, "sqrt"),
    (r"\boxed{5\sqrt{2}}", r"$\sqrt{50}$", True, "sqrt"),
    (r"\boxed{\sqrt{5}+1}", r"$1+\sqrt5$", True, "sqrt"),
    (r"\boxed{\sqrt{5}-1}", r"$1+\sqrt5$", False, "sqrt"),
    (r"\boxed{\sqrt[3]{2}}", r"$\sqrt{2}$", False, "sqrt"),
    (r"\boxed{1.5\times 10^{3}}", "1500", True, "sci-notation"),
    (r"\boxed{1.5e3}", r"$1500$", True, "sci-notation"),
    (r"\boxed{1.5 \times 10^3}", "150", False, "sci-notation"),
    (r"\boxed{2.5\cdot 10^{-3}}", "0.0025", True, "sci-notation"),
    (r"\boxed{3\times10^{8}}", r"$300000000$", True, "sci-notation"),
    (r"\boxed{1.5e3}", "15000", False, "sci-notation"),
    (r"\boxed{1.5 \times 10^{3}}", "1.5", False, "sci-notation"),
    (r"\boxed{6.02 \times 10^{23}}", r"$6.02\times10^{23}$", True, "sci-notation"),
    (r"\boxed{6.02 \times 10^{22}}", r"$6.02\times10^{23}$", False, "sci-notation"),
    (r"\boxed{2.5\times 10^{-3}}", r"$0.025$", False, "sci-notation"),
    # thousands separators and decimal commas
    (r"\boxed{1,000}", "1000", True, "thousands"),
    (r"\boxed{1{,}000}", "1000", True, "thousands"),
    (r"\boxed{1\,000}", r"$1000$", True, "thousands"),
    ("The answer is 1 000.", "1000", True, "thousands"),
    (r"\boxed{10000}", r"$10,\!000$", True, "thousands"),
    (r"\boxed{1,000}", "100", False, "thousands"),
    (r"\boxed{1,234}", "1234", True, "thousands"),
    (r"\boxed{1,234}", "1.234", False, "thousands"),
    (r"\boxed{12,345,678}", "12345678", True, "thousands"),
    (r"\boxed{1,000,000}", r"$10^6$", True, "thousands"),
    (r"\boxed{1,000,000}", r"$10^5$", False, "thousands"),
    (r"\boxed{\$32,\!348}", r"$\$32,\!348$", True, "thousands"),
    (r"\boxed{32,348}", r"$\$32,\!384$", False, "thousands"),
    (r"\boxed{1{,}001}", "1000", False, "thousands"),
    (r"\boxed{1000,99}", "1000.99", True, "decimal-comma"),
    (r"\boxed{1234,5}", r"$1234.5$", True, "decimal-comma"),
    (r"\boxed{12345,67}", "12345.67", True, "decimal-comma"),
    (r"\boxed{1000,5}", "1000.5", True, "decimal-comma"),
    (r"\boxed{1000,99}", "100099", False, "decimal-comma"),
    (r"\boxed{1000,5}", "10005", False, "decimal-comma"),
    (r"\boxed{2,500}", "2.5", False, "decimal-comma"),
    (r"\boxed{1000,99}", "1000.9", False, "decimal-comma"),
    # decimals against exact values
    (r"\boxed{0.33}", r"$\frac13$", True, "precision"),
    (r"\boxed{0.333}", r"$\frac{1}{3}$", True, "precision"),
    (r"\boxed{0.67}", r"$\frac{2}{3}$", True, "precision"),
    (r"\boxed{0.66}", r"$\frac{2}{3}$", True, "precision"),
    (r"\boxed{0.34}", r"$\frac13$", False, "precision"),
    (r"\boxed{3.14}", r"$\pi$", True, "precision"),
    (r"\boxed{3.1416}", r"$\pi$", True, "precision"),
    (r"\boxed{3.15}", r"$\pi$", False, "precision"),
    ("0.30000000000000004", "0.3", True, "precision"),
    ("0.30000000000000004", r"$\frac{3}{10}$", True, "precision"),
    (r"\boxed{0.5}", "0.50", True, "precision"),
    (r"\boxed{0.3}", "0.30", True, "precision"),
    (r"\boxed{0.33}", "0.333", False, "precision"),
    (r"\boxed{0.3}", r"$\frac13$", False, "precision"),
    (r"\boxed{1.41}", r"$\sqrt2$", True, "precision"),
    (r"\boxed{1.42}", r"$\sqrt{2}$", False, "precision"),
    (r"\boxed{1.414}", r"$\sqrt2$", True, "precision"),
    (r"\boxed{0.14}", r"$\frac{1}{7}$", True, "precision"),
    (r"\boxed{0.1}", r"$\frac{1}{7}$", False, "precision"),
    (r"\boxed{0.144}", r"$\frac{1}{7}$", False, "precision"),
    (r"\boxed{0.033}", r"$\frac{1}{30}$", True, "precision"),
    (r"\boxed{0.03}", r"$\frac{1}{30}$", False, "precision"),
    (r"\boxed{3.3}", r"$\frac{10}{3}$", True, "precision"),
    (r"\boxed{0.6}", r"$\frac23$", False, "precision"),
    (r"\boxed{0.6667}", r"$\frac23$", True, "precision"),
    (r"\boxed{2.50}", r"$\frac52$", True, "precision"),
    (r"\boxed{2.51}", r"$\frac52$", False, "precision"),
    (r"\boxed{33.3}", r"$\frac{100}{3}$", True, "precision"),
    (r"\boxed{-0.33}", r"$-\frac13$", True, "precision"),
    (r"\boxed{0.33}", r"$-\frac13$", False, "precision"),
    # number bases
    (r"\boxed{204_5}", r"$204_{5}$", True, "base"),
    (r"\boxed{204}", r"$204_5$", True, "base"),
    (r"\boxed{54}", r"$204_5$", False, "base"),
    (r"\boxed{204_6}", r"$204_5$", False, "base"),
    (r"\boxed{1011_2}", r"$1011_2$", True, "base"),
    (r"\boxed{1011}", r"$1011_2$", True, "base"),
    (r"\boxed{1101_2}", r"$1011_2$", False, "base"),
    (r"\boxed{11}", r"$1011_2$", False, "base"),
    (r"\boxed{2012_3}", r"$2012_{3}$", True, "base"),
    (r"\boxed{2021_3}", r"$2012_3$", False, "base"),
    (r"\boxed{A3_{16}}", r"$A3_{16}$", True, "base"),
    (r"\boxed{163}", r"$A3_{16}$", False, "base"),
    ("The answer is $204_5$.", "204_5", True, "base"),
    (r"\boxed{204_{5}}", r"$240_5$", False, "base"),
    # sets, tuples, several answers
    (r"\boxed{\{1, 2\}}", r"$\{2, 1\}$", True, "set"),
    (r"\boxed{\{1,2\}}", r"$\{1,2,3\}$", False, "set"),
    (r"\boxed{\{-1, 3\}}", r"$\{1, -3\}$", False, "set"),
    (r"\boxed{\{\frac12, 2\}}", r"$\{0.5, 2\}$", True, "set"),
    (r"$\boxed{\{-2, 0, 2\}}$", r"$\{0, 2, -2\}$", True, "set"),
    (r"\boxed{\{0, 2\}}", r"$\{0, 2, -2\}$", False, "set"),
    (r"\boxed{\{\sqrt{2}, -\sqrt{2}\}}", r"$\{-\sqrt2, \sqrt2\}$", True, "set"),
    (r"\boxed{\{\sqrt{2}, -\sqrt{3}\}}", r"$\{-\sqrt2, \sqrt2\}$", False, "set"),
    (r"\boxed{(1, 2)}", r"$(2, 1)$", False, "tuple"),
    (r"\boxed{(1,2)}", r"$(1, 2)$", True, "tuple"),
    (r"\boxed{\left(3, \frac{\pi}{2}\right)}", r"$(3, \frac{\pi}{2})$", True, "tuple"),
    (
        r"\boxed{(3, \frac{\pi}{2})}",
        r"$\left( 3, \frac{3\pi}{2} \right)$",
        False,
        "tuple",
    ),
    (r"\boxed{(2, -1, 3)}", r"$(2,-1,3)$", True, "tuple"),
    (r"\boxed{(2, 1, 3)}", r"$(2,-1,3)$", False, "tuple"),
    (r"\boxed{(1, 2)}", r"$(1, 2, 0)$", False, "tuple"),
    (
        r"\boxed{\left(\frac{1}{2}, \frac{\sqrt3}{2}\right)}",
        r"$\left( 0.5, \frac{\sqrt{3}}{2} \right)$",
        True,
        "tuple",
    ),
    (r"The point is $\boxed{(-4, 7)}$.", r"$(-4,7)$", True, "tuple"),
    (r"The point is $\boxed{(7, -4)}$.", r"$(-4,7)$", False, "tuple"),
    (
        r"\boxed{\left( 2\sqrt{2}, \frac{7\pi}{4} \right)}",
        r"$\left( 2 \sqrt{2}, \frac{7 \pi}{4} \right)$",
        True,
        "tuple",
    ),
    (
        r"\boxed{\left( 2\sqrt{2}, \frac{\pi}{4} \right)}",
        r"$\left( 2 \sqrt{2}, \frac{7 \pi}{4} \right)$",
        False,
        "tuple",
    ),
    (r"\boxed{(-1, 3)}", r"$(-1, -3)$", False, "tuple"),
    (r"\boxed{1, 2}", r"$\{1, 2\}$", True, "multiple-answers"),
    (r"\boxed{1, 2}", r"$2, 1$", True, "multiple-answers"),
    (r"\boxed{1, 2}", r"$1$", False, "multiple-answers"),
    (r"\boxed{1, 2, 3}", r"$1, 2$", False, "multiple-answers"),
    (r"\boxed{-2, 3}", r"$3, -2$", True, "multiple-answers"),
    (r"\boxed{\frac{1}{2}, -3}", r"$-3, \frac12$", True, "multiple-answers"),
    # several boxes are one list of answers: they match a reference listing the same answers
    (r"The solutions are $\boxed{-3}$ and $\boxed{2}$.", r"$-3, 2$", True, "multiple-answers"),
    (r"The solutions are $\boxed{-3}$ and $\boxed{2}$.", r"$2$", True, "last-boxed"),
    (r"The solutions are $\boxed{-3}$ and $\boxed{3}$.", r"$-3, 2$", False, "multiple-answers"),
    (r"\boxed{1}", r"$1, 2$", False, "multiple-answers"),
    (r"\boxed{-3, 2}", r"$-2, 3$", False, "multiple-answers"),
    (r"\boxed{1, -1, 2}", r"$-1, 1, 2$", True, "multiple-answers"),
    (
        r"\boxed{2 + \sqrt{3}, 2 - \sqrt{3}}",
        r"$2 - \sqrt{3}, 2 + \sqrt{3}$",
        True,
        "multiple-answers",
    ),
    (
        r"\boxed{2 + \sqrt{3}, 2 - \sqrt{2}}",
        r"$2 - \sqrt{3}, 2 + \sqrt{3}$",
        False,
        "multiple-answers",
    ),
    # intervals and unions
    (r"\boxed{[0, 1)}", r"$[0, 1]$", False, "interval"),
    (r"\boxed{(-\infty, 3]}", r"$(-\infty,3]$", True, "interval"),
    (r"\boxed{(-\infty, 3)}", r"$(-\infty, 3]$", False, "interval"),
    (r"\boxed{\left[ -2, 5 \right)}", r"$[-2,5)$", True, "interval"),
    (r"\boxed{[2, \infty)}", r"$[2,\infty)$", True, "interval"),
    (r"\boxed{(2, \infty)}", r"$[2, \infty)$", False, "interval"),
    (r"\boxed{(-\infty, -3)}", r"$(-\infty, 3)$", False, "interval"),
    (r"\boxed{[\frac12, 4]}", r"$\left[0.5, 4\right]$", True, "interval"),
    (r"\boxed{(1, 2]}", r"$[1, 2]$", False, "interval"),
    (r"\boxed{[-1, 1]}", r"$[-1,1]$", True, "interval"),
    (r"\boxed{[1, -1]}", r"$[-1, 1]$", False, "interval"),
    (r"\boxed{\left(-\infty, \frac{1}{2}\right]}", r"$(-\infty, 0.5]$", True, "interval"),
    (r"\boxed{(0,1) \cup (2,3)}", r"$(2,3) \cup (0,1)$", True, "interval-union"),
    (
        r"\boxed{(-\infty, 1) \cup (1, \infty)}",
        r"$\left(-\infty, 1\right) \cup \left(1, \infty\right)$",
        True,
        "interval-union",
    ),
    (
        r"\boxed{(-\infty,1)\cup(1,\infty)}",
        r"$(-\infty,1]\cup[1,\infty)$",
        False,
        "interval-union",
    ),
    (
        r"\boxed{(-\infty, -2) \cup (2, \infty)}",
        r"$(-\infty, -2) \cup [2, \infty)$",
        False,
        "interval-union",
    ),
    (r"\boxed{(0,1) \cup (2,3)}", r"$(0,1)$", False, "interval-union"),
    (r"\boxed{(0,1)\cup(2,3)}", r"$(0,3)$", False, "interval-union"),
    (r"\boxed{[-1, 0) \cup (0, 1]}", r"$[-1,1]$", False, "interval-union"),
    (r"\boxed{[-1,0)\cup(0,1]}", r"$[-1, 0) \cup (0, 1]$", True, "interval-union"),
    (
        r"\boxed{(-\infty, -1] \cup [3, \infty)}",
        r"$(-\infty,-1]\cup[3,\infty)$",
        True,
        "interval-union",
    ),
    (
        r"\boxed{(-\infty, -1] \cup [3, \infty)}",
        r"$(-\infty,-3]\cup[1,\infty)$",
        False,
        "interval-union",
    ),
    # inequalities and orderings
    (r"\boxed{x > 3}", r"$3 < x$", True, "inequality"),
    (r"\boxed{x \ge 3}", r"$x \geq 3$", True, "inequality"),
    (r"\boxed{x > 3}", r"$x \ge 3$", False, "inequality"),
    (r"\boxed{x \le -2}", r"$x \leq -2$", True, "inequality"),
    (r"\boxed{x < 5}", r"$x > 5$", False, "inequality"),
    (r"\boxed{x < 5}", r"$5 > x$", True, "inequality"),
    # an interval asked for is not answered by an inequality (Math-Verify's rule), while an
    # inequality asked for is answered by its interval
    (r"\boxed{x \geq 3}", r"$[3, \infty)$", False, "inequality"),
    (r"\boxed{[3, \infty)}", r"$x \geq 3$", True, "inequality"),
    (r"\boxed{x < 2}", r"$(-\infty, 2)$", False, "inequality"),
    (r"\boxed{(-\infty, 2)}", r"$x < 2$", True, "inequality"),
    (r"\boxed{(-\infty, 2]}", r"$x < 2$", False, "inequality"),
    (r"\boxed{x < 2}", r"$(-\infty, 2]$", False, "inequality"),
    (r"\boxed{x > 3}", r"$[3, \infty)$", False, "inequality"),
    (r"\boxed{-2 < x \le 5}", r"$(-2, 5]$", False, "inequality"),
    (r"\boxed{(-2, 5]}", r"$-2 < x \le 5$", True, "inequality"),
    (r"\boxed{[-2, 5]}", r"$-2 < x \le 5$", False, "inequality"),
    (r"\boxed{-2 \le x \le 5}", r"$(-2, 5]$", False, "inequality"),
    (r"\boxed{x \ge 3}", r"$3 \le x$", True, "inequality"),
    (r"\boxed{x \ge -3}", r"$x \ge 3$", False, "inequality"),
    (r"\boxed{x \leq \frac{1}{2}}", r"$x \le 0.5$", True, "inequality"),
    (r"\boxed{f(2) < f(1) < f(4)}", r"$f(2) < f(1) < f(4)$", True, "inequality-chain"),
    (r"\boxed{f(4) > f(1) > f(2)}", r"$f(2) < f(1) < f(4)$", True, "inequality-chain"),
    (r"\boxed{f(1) < f(2) < f(4)}", r"$f(2) < f(1) < f(4)$", False, "inequality-chain"),
    (r"\boxed{a < b < c}", r"$c > b > a$", True, "inequality-chain"),
    (r"\boxed{a < c < b}", r"$a < b < c$", False, "inequality-chain"),
    (r"\boxed{a \le b < c}", r"$a < b < c$", False, "inequality-chain"),
    (r"\boxed{c < a < b}", r"$c<a<b$", True, "inequality-chain"),
    (r"\boxed{b < a < c}", r"$c<a<b$", False, "inequality-chain"),
    (r"\boxed{b > a > c}", r"$c<a<b$", True, "inequality-chain"),
    # equations
    (r"\boxed{x = 3}", "3", True, "equation"),
    (r"\boxed{3}", r"$x = 3$", True, "equation"),
    (r"\boxed{x=3}", r"$x = 3$", True, "equation"),
    (r"\boxed{2x = 6}", r"$x = 3$", True, "equation"),
    (r"\boxed{y = 2x+1}", r"$y=1+2x$", True, "equation"),
    (r"\boxed{x = -3}", r"$x = 3$", False, "equation"),
    (r"\boxed{k = 5}", "5", True, "equation"),
    (r"\boxed{k = 5}", "6", False, "equation"),
    (r"\boxed{y = -2x + 3}", r"$y=3-2x$", True, "equation"),
    (r"\boxed{y = 2x + 3}", r"$y=3-2x$", False, "equation"),
    (r"\boxed{4x - 2y + 6z = 14}", r"$2x - y + 3z = 7$", True, "equation"),
    (r"\boxed{2x - y + 3z - 7 = 0}", r"$2x - y + 3z = 7$", True, "equation"),
    (r"\boxed{2x - y + 3z = 8}", r"$2x - y + 3z - 7 = 0$", False, "equation"),
    (r"\boxed{x^2 + y^2 = 4}", r"$x^2+y^2-4=0$", True, "equation"),
    (r"\boxed{(x-1)^2 + y^2 = 4}", r"$x^2 - 2x + y^2 = 3$", True, "equation"),
    (r"\boxed{x^2 + y^2 = 4}", r"$x^2 + y^2 = 2$", False, "equation"),
    (r"\boxed{3 = x}", r"$x = 3$", True, "equation"),
    (r"\boxed{f(x) = 2x + 1}", r"$2x+1$", True, "equation"),
    (r"\boxed{2x = 6}", r"$x = 6$", False, "equation"),
    (r"\boxed{y = 2x + 1}", r"$y = x + 1$", False, "equation"),
    (r"\boxed{x + 2y = 5}", r"$2y + x = 5$", True, "equation"),
    # matrices and vectors
    (rf"\boxed{{{_P12}}}", r"$\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}$", True, "matrix"),
    (
        r"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}}",
        f"${_P12}$",
        False,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}}",
        f"${_P12}$",
        False,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} \frac{1}{2} \\ 3 \end{pmatrix}}",
        r"$\begin{pmatrix} 0.5 \\ 3 \end{pmatrix}$",
        True,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}",
        r"$\begin{pmatrix} 2 \\ 1 \end{pmatrix}$",
        False,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} -\frac{3}{5} \\ \frac{4}{5} \end{pmatrix}}",
        r"$\begin{pmatrix} -0.6 \\ 0.8 \end{pmatrix}$",
        True,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} \frac{3}{5} \\ \frac{4}{5} \end{pmatrix}}",
        r"$\begin{pmatrix} -3/5 \\ 4/5 \end{pmatrix}$",
        False,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} \frac{\sqrt{2}}{2} \\ \frac{1}{\sqrt{2}} \end{pmatrix}}",
        r"$\begin{pmatrix} 1/\sqrt{2} \\ \sqrt{2}/2 \end{pmatrix}$",
        True,
        "matrix",
    ),
    (
        r"\boxed{\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}}",
        r"$\begin{pmatrix} 2 & 0 \\ 0 & -2 \end{pmatrix}$",
        False,
        "matrix",
    ),
    (
        r"$$\begin{pmatrix} 7 \\ -1 \\ 4 \end{pmatrix}$$",
        r"$\begin{pmatrix} 7 \\ -1 \\ 4 \end{pmatrix}$",
        True,
        "matrix",
    ),
    (
        r"\boxed{\begin{bmatrix} 0 & 1 \\ -1 & 0 \end{bmatrix}}",
        r"$\begin{pmatrix} 0 & 1 \\ -1 & 0 \end{pmatrix}$",
        True,
        "matrix",
    ),
    # identities (sympy)
    (r"\boxed{2\sin b \cos a}", r"$\sin (a + b) - \sin (a - b)$", True, "trig-identity"),
    (r"\boxed{\sin^2 x + \cos^2 x}", r"$1$", True, "trig-identity"),
    (r"\boxed{2\sin x\cos x}", r"$\sin 2x$", True, "trig-identity"),
    (r"\boxed{\cos^2 x - \sin^2 x}", r"$\cos 2x$", True, "trig-identity"),
    (r"\boxed{\sin 2x}", r"$2\sin x$", False, "trig-identity"),
    (r"\boxed{\frac{\sin x}{\cos x}}", r"$\tan x$", True, "trig-identity"),
    (r"\boxed{2\cos a \sin b}", r"$\sin (a + b) + \sin (a - b)$", False, "trig-identity"),
    (r"\boxed{\cos a\cos b + \sin a \sin b}", r"$\cos (a + b)$", False, "trig-identity"),
    (r"\boxed{\cos a\cos b - \sin a \sin b}", r"$\cos (a + b)$", True, "trig-identity"),
    (r"\boxed{\sin^2 x - \cos^2 x}", r"$1$", False, "trig-identity"),
    (r"\boxed{1 - \cos^2 x}", r"$\sin^2 x$", True, "trig-identity"),
    (r"\boxed{(x+1)^2}", r"$x^2+2x+1$", True, "algebraic-identity"),
    (r"\boxed{\frac{x^2-1}{x-1}}", r"$x+1$", True, "algebraic-identity"),
    (r"\boxed{x^2+1}", r"$x^2-1$", False, "algebraic-identity"),
    (r"\boxed{(x-2)(x+3)}", r"$x^2+x-6$", True, "algebraic-identity"),
    (r"\boxed{(x-2)(x+3)}", r"$x^2-x-6$", False, "algebraic-identity"),
    (r"\boxed{\frac{1}{x} + \frac{1}{y}}", r"$\frac{x+y}{xy}$", True, "algebraic-identity"),
    (r"\boxed{2(a+b)}", r"$2a+2b$", True, "algebraic-identity"),
    (r"\boxed{(x-2)(x^2+2x+4)}", r"$x^3-8$", True, "algebraic-identity"),
    (r"\boxed{(x-2)(x^2-2x+4)}", r"$x^3-8$", False, "algebraic-identity"),
    (r"\boxed{(a-b)(a+b)}", r"$a^2 - b^2$", True, "algebraic-identity"),
    (r"\boxed{3x^2 + 2y}", r"$3x^2+2x$", False, "algebraic-identity"),
    (r"\boxed{-\frac{1}{2}x + 3}", r"$3 - \frac{x}{2}$", True, "algebraic-identity"),
    (r"\boxed{x^{2}-4x+4}", r"$(x-2)^2$", True, "algebraic-identity"),
    (r"\boxed{x^{2}-4x-4}", r"$(x-2)^2$", False, "algebraic-identity"),
    (r"\boxed{\frac{x+1}{x}}", r"$1+\frac1x$", True, "algebraic-identity"),
    # text answers
    (r"\boxed{\text{Evelyn}}", "Evelyn", True, "text-answer"),
    (r"\boxed{\text{(C)}}", "C", True, "text-answer"),
    (r"\boxed{(C)}", "(D)", False, "text-answer"),
    (r"The answer is $\text{Monday}$.", r"$\text{Monday}$", True, "text-answer"),
    (r"\boxed{\text{odd}}", r"$\text{even}$", False, "text-answer"),
    (r"\boxed{\text{EVEN}}", r"$\text{even}$", True, "text-answer"),
    (r"\boxed{\text{neither}}", "neither", True, "text-answer"),
    ("Evelyn.", r"$\text{Evelyn}$", True, "text-answer"),
    (r"\boxed{\text{ Evelyn }}", "Evelyn", True, "text-answer"),
    (r"\boxed{\text{Evelin}}", "Evelyn", False, "text-answer"),
    (r"\boxed{\text{Tuesday}}", r"$\text{Monday}$", False, "text-answer"),
    (r"\boxed{\text{(A)}}", r"$\text{(B)}$", False, "text-answer"),
    (r"\boxed{(C)}", r"$\text{(C)}$", True, "text-answer"),
    (r"The function is $\boxed{\text{odd}}$.", r"$\text{odd}$", True, "text-answer"),
    (r"\boxed{B}", r"$\text{(B)}$", True, "text-answer"),
    (r"\boxed{\text{yes}}", r"$\text{no}$", False, "text-answer"),
    # worked solutions
    (DIVISORS, "24", True, "long-solution"),
    (DIVISORS, "23", False, "long-solution"),
    (DIVISORS, r"$360$", False, "long-solution"),
    (RATIO, r"$\frac12$", True, "long-solution"),
    (RATIO, r"$-\frac12$", False, "long-solution"),
    (RATIO, r"$\frac14$", False, "long-solution"),
    (MINIMUM, r"$4$", True, "long-solution"),
    (MINIMUM, r"$3$", False, "long-solution"),
    (SUM, "12", True, "long-solution"),
    (SUM, "5", False, "long-solution"),
    (SUM, "7", False, "long-solution"),
    (DOMAIN, r"$[2,5)$", True, "long-solution"),
    (DOMAIN, r"$[2,5]$", False, "long-solution"),
    (MINERVA, r"$\frac{2}{9}$", True, "long-solution"),
    (MINERVA, r"$\frac{5}{9}$", False, "long-solution"),
    (POINT, r"$(2,-1)$", True, "long-solution"),
    (POINT, r"$(-1,2)$", False, "long-solution"),
    (TEXT_SOLUTION, r"$\text{odd}$", True, "long-solution"),
    (TEXT_SOLUTION, r"$\text{even}$", False, "long-solution"),
    # traps: all False
    (r"\boxed{5 \text{ or } 6}", "6", False, "trap-hedge"),
    (r"\boxed{5 \text{ or } 6}", "5", False, "trap-hedge"),
    ("The answer is either 5 or 6.", "5", False, "trap-hedge"),
    ("either 5 or 6", "5", False, "trap-hedge"),
    (r"\boxed{5 or 6}", r"$6$", False, "trap-hedge"),
    ("The answer is 5 or 6.", "6", False, "trap-hedge"),
    (r"\boxed{3 \text{ or } -3}", r"$3$", False, "trap-hedge"),
    (r"\boxed{\frac{1}{2} \text{ or } \frac{1}{3}}", r"$\frac12$", False, "trap-hedge"),
    ("The answer is $x=2$ or $x=3$.", "2", False, "trap-hedge"),
    ("The password is AZYUK2A", "2", False, "trap-substring"),
    (r"\boxed{AZYUK2A}", "2", False, "trap-substring"),
    (r"\boxed{12}", "123", False, "trap-substring"),
    (r"\boxed{123}", "12", False, "trap-substring"),
    (r"\boxed{21}", "2", False, "trap-substring"),
    ("Call code X12Y to confirm", "12", False, "trap-substring"),
    (r"\boxed{\text{Eve}}", r"$\text{Evelyn}$", False, "trap-substring"),
    (r"\boxed{2x}", "2", False, "trap-substring"),
    (r"\boxed{-2}", "2", False, "trap-substring"),
    (r"\boxed{0.2}", "2", False, "trap-substring"),
    (r"\boxed{x=3}", r"$y=3$", False, "trap-name"),
    (r"\boxed{y = 3}", r"$x = 3$", False, "trap-name"),
    (r"\boxed{a = 5}", r"$b = 5$", False, "trap-name"),
    (r"\boxed{y = 2t + 1}", r"$y = 2x + 1$", False, "trap-name"),
    (r"\boxed{x > 3}", r"$y > 3$", False, "trap-name"),
    (r"\boxed{3x^2}", r"$3y^2$", False, "trap-name"),
    (r"\boxed{12 \text{ minus } 3}", "9", False, "trap-words"),
    ("#### 12 minus 3", "12", False, "trap-words"),
    ("The answer is 12 minus 3.", "9", False, "trap-words"),
    ("The answer is 12 minus 3.", "12", False, "trap-words"),
    (r"\boxed{12 plus 3}", "15", False, "trap-words"),
    # more MATH forms: logarithm bases, repeating decimals, factorials, binomials, i
    (r"\boxed{\log_2 8}", "$3$", True, "log-base"),
    (r"\boxed{\log_{3} 81}", "$4$", True, "log-base"),
    (r"\boxed{\log_2 8}", "$4$", False, "log-base"),
    (r"\boxed{0.\overline{3}}", r"$\frac13$", True, "repeating-decimal"),
    (r"\boxed{1.2\overline{36}}", r"$\frac{68}{55}$", True, "repeating-decimal"),
    (r"\boxed{0.\overline{6}}", r"$\frac13$", False, "repeating-decimal"),
    (r"\boxed{10!}", "$3628800$", True, "factorial"),
    (r"\boxed{5!}", "$121$", False, "factorial"),
    (r"\boxed{\binom{5}{2}}", "$10$", True, "binomial"),
    (r"\boxed{\binom{6}{2}}", "$10$", False, "binomial"),
    (r"\boxed{\sqrt{-1}}", "$i$", True, "complex"),
    (r"\boxed{1+i}", "$i+1$", True, "complex"),
    (r"\boxed{(1+i)^2}", "$2i$", True, "complex"),
    (r"\boxed{1-i}", "$1+i$", False, "complex"),
    (r"\boxed{\text{Monday}}", r"$\text{Tuesday}$", False, "text-answer"),
    (r"\boxed{\$1,\!000}", r"$\$1000$", True, "thousands"),
    (r"\boxed{2^{10}}", "$1024$", True, "exp-power"),
    (r"\boxed{\exp(2)}", r"$\exp(1)^2$", True, "exp-power"),
    (r"\boxed{\exp(\ln 5)}", "$5$", True, "exp-power"),
    (r"\boxed{e^{x}e^{x}}", "$e^{2x}$", True, "exp-power"),
    (r"\boxed{\exp(x)\exp(x)}", r"$\exp(2x)$", True, "exp-power"),
    (r"\boxed{\exp(\exp(2))}", r"$\exp(\exp(1)^2)$", True, "exp-power"),
    (r"\boxed{\sqrt{2}^{4}}", "$4$", True, "exp-power"),
    (r"\boxed{\exp(-1000)}", r"$\frac{1}{\exp(1000)}$", True, "exp-power"),
    (r"\boxed{\exp(3)}", r"$\exp(2)$", False, "exp-power"),
    (r"\boxed{\exp(\exp(\exp(100)))}", "$5$", False, "exp-power"),  # refused, not evaluated
    (r"\boxed{\pi^{\pi^{\pi^{9}}}}", r"$\pi$", False, "exp-power"),
]


def _ids(cases):
    seen: dict[str, int] = {}
    ids = []
    for *_, rule in cases:
        seen[rule] = seen.get(rule, 0) + 1
        ids.append(f"{rule}-{seen[rule]}")
    return ids


IDS = _ids(CASES)


@pytest.mark.parametrize("prediction, reference, expected, rule", CASES, ids=IDS)
def test_math_answer_verdict(prediction, reference, expected, rule):
    assert verify_answer(prediction, reference) is expected, rule


@pytest.mark.parametrize("prediction, reference, expected, rule", CASES, ids=IDS)
def test_swapped_never_raises(prediction, reference, expected, rule):
    assert isinstance(verify_answer(reference, prediction), bool)


def test_table_shape():
    assert len(CASES) >= 320
    assert sum(not expected for _, _, expected, _ in CASES) >= 0.35 * len(CASES)
    assert len(set(IDS)) == len(IDS)
    for prediction, reference, expected, rule in CASES:
        assert isinstance(prediction, str) and isinstance(reference, str)
        assert isinstance(expected, bool) and rule


# ------------------------------------------------------------------ towers sympy cannot evaluate
# Short answers whose value has astronomically many digits: sympy's numeric test would need
# unbounded precision (issue: each variant cost a worker's deadline and a respawn).
TOWERS = [
    r"\exp(\exp(\exp(100)))",
    r"\exp(\exp(\exp(101)))",
    r"\exp(\exp(\exp(102)))",
    r"\pi^{\pi^{\pi^{9}}}",
    r"\left|\sin(\exp(\exp(100)))\right|",  # sympy evaluates while building this one
    r"\exp(\exp(\exp(x+100)))",  # huge at every test point
]
ORDINARY = [  # exp and powers that still compare equal
    (r"\exp(2)", r"\exp(1)^2"),
    ("2^{10}", "1024"),
    (r"e^{x}e^{x}", "e^{2x}"),
    (r"\exp(\exp(2))", r"\exp(\exp(1)^2)"),
    (r"\exp(23000)^{\frac{1}{2}}", r"\exp(11500)"),  # big, but within the bound
]


def test_towers_are_refused_in_process_well_under_the_deadline():
    """What a worker runs (``answers.settle``), run in a child interpreter so that a hang
    fails this test instead of stalling the suite: each tower is refused in milliseconds."""
    code = (
        "import json, sys, time\n"
        "from r1jax.rewards import answers, symbolic\n"
        "symbolic.warm_sympy()\n"
        "out = []\n"
        "for pred, ref in json.loads(sys.argv[1]):\n"
        "    t0 = time.monotonic()\n"
        "    out.append((answers.settle(pred, ref), time.monotonic() - t0))\n"
        "print(json.dumps(out))\n"
    )
    pairs = [(t, "5") for t in TOWERS] + [(t, r"\exp(2)") for t in TOWERS] + ORDINARY
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(pairs)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    for (pred, ref), (verdict, seconds) in zip(pairs, got):
        assert verdict is ((pred, ref) in ORDINARY), (pred, ref)
        if (pred, ref) not in ORDINARY:  # refused before any evaluation: far from a deadline
            assert seconds < symbolic.DEADLINE_S / 3, (pred, ref, seconds)


def test_towers_cost_no_worker_deadline():
    from r1jax.rewards.free_form import FreeFormVerifier

    pool = symbolic.default_pool().start()  # start-up is not part of any deadline
    timeouts = pool.stats["timeouts"]
    for k in range(200, 204):  # variants the verdict cache has not seen
        t0 = time.monotonic()
        verdict = FreeFormVerifier().verify(f"<answer>\\exp(\\exp(\\exp({k})))</answer>", "5")
        assert verdict.has_answer and not verdict.answer_correct
        assert time.monotonic() - t0 < symbolic.DEADLINE_S, k
    assert pool.stats["timeouts"] == timeouts
