"""Step credit: what padding a correct answer with idle steps earns, what legitimate
solutions lose, and what the progress check costs per verify.

Three tables, from one run:

1. **Padding**: the total reward (default ``RewardConfig``, the trainer's reward path
   ``score_completions``) of a bare correct answer, one real step, and idle or fake steps
   before the answer (``1=1``, ``13*1=13``, ``1+1=2`` then ``2=2``, an answer written as
   an expression), on the default task, on GSM8K (``FreeFormVerifier``) and on the
   fractions domain. A step credit that can be farmed shows as a padded row above the
   bare answer's 0.66.
2. **Legitimate solutions without credit**: GSM8K gold solutions (``--data``, train and
   test) and ``--samples`` reference solutions per synthetic domain whose valid steps
   earn less than full credit (some step idle) or none (``credited_steps == 0``).
3. **Verify time**: best of ``--repeats`` over GSM8K gold, arithmetic references and
   hostile texts (20,000 lines of ``1=1``; 1,000 chained steps).

    python benchmarks/step_credit_bench.py [--data ../shared/data/gsm8k] [--samples 900]
"""

from __future__ import annotations

import collections
import json
import os
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("data", "../shared/data/gsm8k", "GSM8K folder (train.jsonl, test.jsonl).")
flags.DEFINE_integer("samples", 900, "Reference solutions per synthetic domain (3 levels).")
flags.DEFINE_integer("repeats", 5, "Timing repeats (the best is reported).")
FLAGS = flags.FLAGS

PADDING = {
    "arithmetic": [
        "#### 13",
        "6+7=13\n#### 13",
        "13=6+7\n#### 13",
        "1=1\n#### 13",
        "13*1=13\n#### 13",
        "13+2-2=13\n#### 13",
        "(13+13)/2=13\n#### 13",
        "1+1=2\n2=2\n#### 13",
        "1+1=2\n2+5=7\n#### 13",
        "6+7=13\n13-7=6\n#### 13",
    ],
    "gsm8k": [
        "The answer is \\boxed{13}.",
        "6 + 7 = 13 apples.\n#### 13",
        "So 13 + 0 = 13.\n#### 13",
        "1+1=2, 2=2. The answer is \\boxed{13}.",
        "1+1=2. The answer is \\boxed{2*13/2}.",
        "1+1=2\n<answer>26/2</answer>",
        "She has 16 - 3 = <<16-3=13>>13 eggs.\n#### 13",
    ],
    "fractions": ["#### 7/9", "1/9+6/9=7/9\n#### 7/9", "3+4=7\n#### 7/9", "1*7/9=7/9\n#### 7/9"],
}


def _padding_table(tasks):
    from r1jax.rewards import score_completions
    from r1jax.tasks import Problem

    print("| task | completion | total | answer_correct | steps | valid |")
    print("|---|---|---|---|---|---|")
    for name, texts in PADDING.items():
        if name not in tasks:
            continue
        answer = "7/9" if name == "fractions" else "13"
        p = Problem("q", answer, "", 1, 1)
        for text, row in zip(texts, score_completions(tasks[name], [p] * len(texts), texts)):
            shown = text.replace("\n", " / ").replace("|", "\\|")
            print(
                f"| {name} | `{shown}` | {row['total']:.3f} | {row['answer_correct']:.0f} "
                f"| {row['num_steps']:.0f} | {row['valid_steps']:.0f} |"
            )


def _count(verifier, pairs):
    c = collections.Counter()
    for text, ref in pairs:
        v = verifier.verify(text, ref)
        if v.valid_steps == 0:
            continue
        c["with valid steps"] += 1
        c["some valid step idle"] += v.credited_steps < v.valid_steps
        c["no step credited"] += v.credited_steps == 0
    return c


def _gsm8k_gold():
    pairs = []
    for split in ("train", "test"):
        with open(os.path.join(FLAGS.data, f"{split}.jsonl")) as f:
            for line in f:
                text = json.loads(line)["answer"]
                pairs.append((text, text.rsplit("####", 1)[-1].strip().replace(",", "")))
    return pairs


def _references(task, n, seed=0):
    rng = np.random.default_rng(seed)
    problems = [task.sample(rng, 1 + i % 3, "train") for i in range(n)]
    return [(p.solution, p.answer) for p in problems]


def _best_ms(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def main(argv):
    del argv
    from r1jax.rewards import FreeFormVerifier
    from r1jax.tasks import domains, get_task

    tasks = {"arithmetic": get_task("arithmetic"), "fractions": get_task("fractions")}
    have_gsm8k = os.path.isfile(os.path.join(FLAGS.data, "test.jsonl"))
    if have_gsm8k:
        tasks["gsm8k"] = get_task("gsm8k", path=FLAGS.data)
    print("## Padding a correct answer (default RewardConfig)\n")
    _padding_table(tasks)

    print("\n## Legitimate solutions without full step credit\n")
    print("| solutions | with valid steps | some valid step idle | no step credited |")
    print("|---|---|---|---|")
    rows = []
    if have_gsm8k:
        rows.append(("GSM8K gold (train + test)", FreeFormVerifier(), _gsm8k_gold()))
    for name in ("arithmetic", *domains.DOMAINS):
        task = get_task(name)
        rows.append((f"{name} references", task.verifier, _references(task, FLAGS.samples)))
    for label, verifier, pairs in rows:
        c = _count(verifier, pairs)
        print(
            f"| {label} | {c['with valid steps']} | {c['some valid step idle']} "
            f"| {c['no step credited']} |"
        )

    print(f"\n## Verify time (best of {FLAGS.repeats})\n")
    print("| input | ms |")
    print("|---|---|")
    arith = tasks["arithmetic"]
    refs = _references(arith, 200)
    hostile = "1=1\n" * 20_000 + "#### 2"
    chain = "\n".join(f"{i}+1={i + 1}" for i in range(1000)) + "\n#### 1000"
    ff = FreeFormVerifier()
    cases = [("200 arithmetic references", lambda: [arith.verifier.verify(*r) for r in refs])]
    if have_gsm8k:
        gold = _gsm8k_gold()[-300:]
        cases.append(("300 GSM8K gold solutions", lambda: [ff.verify(*g) for g in gold]))
    cases += [
        ("20,000 lines `1=1` (EquationVerifier)", lambda: arith.verifier.verify(hostile, "2")),
        ("20,000 lines `1=1` (FreeFormVerifier)", lambda: ff.verify(hostile, "2")),
        ("1,000 chained steps (EquationVerifier)", lambda: arith.verifier.verify(chain, "1000")),
    ]
    for label, fn in cases:
        print(f"| {label} | {_best_ms(fn, FLAGS.repeats):.1f} |")


if __name__ == "__main__":
    app.run(main)
