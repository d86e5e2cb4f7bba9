"""Answer verification: r1jax (in-process and pooled) against Math-Verify on GSM8K pairs.

Pairs come from ``--data`` (default ``../shared/data/gsm8k``):

* ``example_model_solutions.jsonl``: four labelled model solutions per problem (each a
  dict with ``solution``, ending ``A: N``, and ``is_correct``), against the reference
  ``N`` that ends the line's ``ground_truth``;
* ``test.jsonl``: the gold solution (ending ``#### N``) against ``N``, which must be
  correct.

Every method scores the same pairs in one run: ``r1jax.rewards.verify_answer`` one pair
at a time; ``verify_answers`` (numbers in this process, the few symbolic pairs in the
worker pool); ``verify_answers(..., fast_path=False)`` (every pair in the pool's worker
processes, under the deadline); and Math-Verify (``math_verify.verify(parse(reference),
parse(solution))``, its documented use) one pair at a time. The pool is started and warmed
before timing; sympy verdicts and parsed answers are cached, so both caches are cleared
before each r1jax row.
The table gives pairs/s, the speed ratio to Math-Verify, agreement with the
``is_correct`` labels and the gold pairs judged correct; then every pair on which r1jax
and Math-Verify disagree is listed, so each difference can be explained.

A second table does the same on MATH-style LaTeX pairs: the table of
``tests/rewards/math_answers_test.py`` (each case a prediction, a reference and the
expected verdict; ``--math_repeat`` passes, default 1: caches make repeats cheap); it gives
pairs/s, the ratio to Math-Verify and agreement with the expected verdicts.

    pip install -e ".[bench]"   # math-verify, only for this benchmark
    python benchmarks/verifier_bench.py [--data ../shared/data/gsm8k] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def load_pairs(data: str, limit: int | None) -> list[dict]:
    """``[{"prediction", "reference", "label", "source"}]``; label None: not labelled."""
    pairs = []
    with open(os.path.join(data, "example_model_solutions.jsonl"), encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            d = json.loads(line)
            ref = d["ground_truth"].split("A:")[-1].strip()
            for key, v in d.items():
                if isinstance(v, dict) and "is_correct" in v:
                    row = {"prediction": v["solution"], "reference": ref, "source": f"{key}#{n}"}
                    pairs.append({**row, "label": bool(v["is_correct"])})
    with open(os.path.join(data, "test.jsonl"), encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            d = json.loads(line)
            ref = d["answer"].split("####")[-1].strip()
            pairs.append({"prediction": d["answer"], "reference": ref, "source": f"gold#{n}"})
    return pairs


def _math_verify(pairs: list[dict]) -> list[bool]:
    from math_verify import parse, verify

    out = []
    for p in pairs:
        try:
            out.append(bool(verify(parse(p["reference"]), parse(p["prediction"]))))
        except Exception:  # noqa: BLE001  (count a crash as "not verified")
            out.append(False)
    return out


def load_math_pairs(repeat: int) -> list[dict]:
    """The MATH-style cases of ``tests/rewards/math_answers_test.py`` as pairs with the
    expected verdict as their label, ``repeat`` times."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "tests", "rewards", "math_answers_test.py")
    spec = importlib.util.spec_from_file_location("math_answers_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pairs = [
        {"prediction": p, "reference": r, "label": bool(e), "source": rule}
        for p, r, e, rule in module.CASES
    ]
    return pairs * repeat


def _timed(fn, pairs):
    t0 = time.perf_counter()
    verdicts = fn(pairs)
    return verdicts, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/gsm8k", help="GSM8K directory.")
    parser.add_argument("--limit", type=int, default=None, help="Problems per file (all).")
    parser.add_argument("--show", type=int, default=50, help="Differences listed at most.")
    parser.add_argument("--math_repeat", type=int, default=1, help="Passes over the MATH table.")
    args = parser.parse_args()

    from r1jax.rewards import symbolic

    symbolic.default_pool().start()
    gsm8k = load_pairs(args.data, args.limit)
    print("GSM8K pairs")
    _compare(gsm8k, args.show)
    print("\nMATH-style LaTeX pairs (tests/rewards/math_answers_test.py)")
    _compare(load_math_pairs(args.math_repeat), args.show)
    symbolic.shutdown()


def _compare(pairs: list[dict], show: int) -> None:
    """Times every method on ``pairs`` and prints the table and the differences."""
    from r1jax.rewards import answers, symbolic

    pool = symbolic.default_pool()
    texts = [(p["prediction"], p["reference"]) for p in pairs]
    answers.verify_answers([("x+1", "1+x")] * 4, fast_path=False)  # warm the workers

    def one_at_a_time(_):
        return [answers.verify_answer(p, r) for p, r in texts]

    def batched(_):
        return answers.verify_answers(texts, pool)

    def all_in_pool(_):
        return answers.verify_answers(texts, pool, fast_path=False)

    rows = []
    for name, fn in (
        ("r1jax verify_answer, one at a time", one_at_a_time),
        ("r1jax verify_answers (pool for sympy)", batched),
        ("r1jax verify_answers, all in pool", all_in_pool),
        ("math-verify, one at a time", _math_verify),
    ):
        symbolic.cache_clear()
        answers.parse_cache_clear()
        verdicts, seconds = _timed(fn, pairs)
        rows.append((name, verdicts, seconds))

    labelled = [i for i, p in enumerate(pairs) if p.get("label") is not None]
    gold = [i for i, p in enumerate(pairs) if p.get("label") is None]
    mv_rate = len(pairs) / rows[-1][2]
    print(f"\n{len(pairs)} pairs ({len(labelled)} labelled model solutions, {len(gold)} gold)")
    print(f"{'method':<40}{'pairs/s':>10}{'x MV':>8}{'label agree':>16}{'gold ok':>14}")
    for name, verdicts, seconds in rows:
        agree = sum(verdicts[i] == pairs[i]["label"] for i in labelled)
        gold_ok = sum(verdicts[i] for i in gold)
        rate = len(pairs) / seconds
        print(
            f"{name:<40}{rate:>10.0f}{rate / mv_rate:>8.1f}"
            f"{f'{agree}/{len(labelled)}':>16}{f'{gold_ok}/{len(gold)}':>14}"
        )
    ours, theirs = rows[0][1], rows[-1][1]
    assert ours == rows[1][1] == rows[2][1], "r1jax paths disagree with each other"
    diffs = [i for i in range(len(pairs)) if ours[i] != theirs[i]]
    print(f"\n{len(diffs)} pairs where r1jax and math-verify differ:")
    from math_verify import parse

    for i in diffs[:show]:
        p = pairs[i]
        tail = p["prediction"].strip().splitlines()[-1][-90:]
        print(
            f"  {p['source']:<22} label={p.get('label')!s:<5} r1jax={ours[i]!s:<5} "
            f"mv={theirs[i]!s:<5} ref={p['reference']!r} "
            f"r1jax_extracted={answers.extract_answer(p['prediction'], fallback=True)!r} "
            f"mv_parsed={[str(x) for x in parse(p['prediction'])]!r} last_line={tail!r}"
        )


if __name__ == "__main__":
    main()
