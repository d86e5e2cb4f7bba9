r"""r1jax-verify: checks final answers in a JSONL file against references.

  r1jax-verify --input=solutions.jsonl [--output=verdicts.jsonl]
               [--prediction_field=prediction] [--reference_field=reference]
  cat solutions.jsonl | r1jax-verify --input=-
  r1jax-verify --input=solutions.jsonl --task=arithmetic [--task_kwargs='{"solution_style": "r1"}']

Each input line is one JSON object holding the model's solution (any format: GSM8K
'#### 72', 'The answer is 72.', '\boxed{...}', '<answer>...</answer>',
'Answer: 72') and the reference (a bare answer or a full solution). Each output line is
the input object plus "correct" (bool, from r1jax.rewards.verify_answer) and
"extracted" (the prediction's final answer that was compared, or null). Blank input
lines are skipped; output lines keep the input order. A summary goes to stderr.

With --task=NAME the solutions are scored the way the trainer scores that task's
completions (its own verifier, ``r1jax.rewards.score_completions``): "correct" is the
task's answer verdict, "extracted" the answer its verifier read, and "reward" holds every
reward part under the default weights (total, correctness, efficiency, novelty (0 here),
format, subgoal, answer_correct, num_steps, valid_steps, has_answer). --task_kwargs (a
JSON object) builds the task, e.g. '{"path": "DIR"}' for gsm8k.

Numbers are checked in this process; symbolic answers ('2(x+1)', '\sqrt{2}') in
worker processes with a hard deadline. The whole input is read and checked before
anything is written, and a file is written to a temporary name and renamed: a run that
fails leaves no partial output. Bad flags, an unreadable input, a line that is not a JSON
object or lacks a field print a message naming the problem and the fix, and exit with
code 2.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import flags

EXIT_USAGE = 2
FLAGS = flags.FlagValues()  # our own registry: no clash with other absl entry points
flags.DEFINE_string(
    "input", None, "JSONL file to check, or - to read standard input.", flag_values=FLAGS
)
flags.DEFINE_string(
    "output", "-", "Where to write the JSONL verdicts; - is standard output.", flag_values=FLAGS
)
flags.DEFINE_string(
    "prediction_field", "prediction", "Field holding the model's solution.", flag_values=FLAGS
)
flags.DEFINE_string(
    "reference_field", "reference", "Field holding the reference answer.", flag_values=FLAGS
)
flags.DEFINE_string(
    "task",
    None,
    "Score with this registered task's verifier and reward parts (as the trainer does).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "task_kwargs", "{}", "JSON object of arguments that build --task.", flag_values=FLAGS
)
flags.DEFINE_string(
    "task_module",
    "",
    "Module that registers --task (a .py path or a dotted name), for your own task.",
    flag_values=FLAGS,
)
_HELP = ("-h", "-help", "--help", "--helpshort", "--helpfull", "-?")


class UsageError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


def _fail(msg: str):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(
            f"cannot read --input={path}: {e}. Pass an existing UTF-8 JSONL file, or - to "
            "read standard input."
        ) from None


def load_records(lines: list[str], pred_field: str, ref_field: str) -> list[dict]:
    """Parses and checks every line; ``UsageError`` names the first bad one."""
    records = []
    example = json.dumps({pred_field: "... #### 72", ref_field: "72"})
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise UsageError(
                f"--input line {number} is not valid JSON ({e}). Each line must be one JSON "
                f"object, e.g. {example}"
            ) from None
        if not isinstance(record, dict):
            raise UsageError(
                f"--input line {number} is a JSON {type(record).__name__}, not an object. "
                f"Each line must be one JSON object, e.g. {example}"
            )
        for field, flag in ((pred_field, "prediction_field"), (ref_field, "reference_field")):
            if field not in record:
                raise UsageError(
                    f'--input line {number} has no "{field}" field (it has: '
                    f"{', '.join(sorted(record)) or 'none'}). Set --{flag} to the field that "
                    "holds it."
                )
            if not isinstance(record[field], str):
                raise UsageError(
                    f'--input line {number}: field "{field}" is a JSON '
                    f"{type(record[field]).__name__}, expected a string."
                )
        records.append(record)
    return records


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".r1jax-verify-", suffix=".tmp")
    except OSError as e:
        raise UsageError(
            f"cannot write --output={path}: {e}. Pass a path in an existing, writable "
            "directory, or - for standard output."
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise UsageError(f"cannot write --output={path}: {e}.") from None
        raise


def build_task(name: str, kwargs_json: str = "{}", module: str = ""):
    """The registered task ``name`` (registered by ``module`` if given) built from a JSON
    object of arguments."""
    from r1jax.tasks import get_task, import_task_module, parse_task_kwargs

    try:
        import_task_module(module)
    except ValueError as e:
        raise UsageError(f"--task_module={module}: {e}") from None

    try:
        kwargs = parse_task_kwargs(kwargs_json)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        return get_task(name, **kwargs)
    except (ValueError, TypeError) as e:
        raise UsageError(
            f"--task={name}: {e}. Pass its arguments as --task_kwargs='{{...}}' (JSON)"
        ) from None


def _task_rows(task, pairs):
    """(correct, extracted, reward dict) per pair, scored by the task's verifier."""
    from r1jax.rewards.scoring import TaskScorer, rows_as_dicts

    from r1jax.rewards.answers import extract_answer

    # A reference written as a solution ("... #### 72") is scored against its final answer.
    refs = [extract_answer(r, fallback=True) or r for _, r in pairs]
    with TaskScorer(task) as scorer:
        rows = rows_as_dicts(scorer.score_items([(p, r, ()) for (p, _), r in zip(pairs, refs)]))
        parse = getattr(scorer.verifier, "parse", None)
        extracted = [parse(p).answer if parse else None for p, _ in pairs]
    return [(bool(r["answer_correct"]), x, r) for r, x in zip(rows, extracted)]


def run(
    input_path: str, output_path: str, pred_field: str, ref_field: str, task=None
) -> tuple[int, int]:
    """Checks ``input_path`` and writes verdicts; returns (pairs, correct). ``task``:
    score with that task's verifier (module doc)."""
    from r1jax.rewards import answers

    records = load_records(_read_lines(input_path), pred_field, ref_field)
    pairs = [(r[pred_field], r[ref_field]) for r in records]
    out, verdicts = [], []
    if task is not None:
        for record, (correct, extracted, reward) in zip(records, _task_rows(task, pairs)):
            row = {**record, "correct": correct, "extracted": extracted, "reward": reward}
            out.append(json.dumps(row, ensure_ascii=False) + "\n")
            verdicts.append(correct)
    else:
        verdicts = answers.verify_answers(pairs)
        for record, (prediction, _), correct in zip(records, pairs, verdicts):
            extracted = answers.extract_answer(prediction, fallback=True)
            row = {**record, "correct": correct, "extracted": extracted}
            out.append(json.dumps(row, ensure_ascii=False) + "\n")
    _write(output_path, "".join(out))
    return len(records), sum(verdicts)


def main(argv: list[str] | None = None) -> int:
    """The ``r1jax-verify`` entry point; ``argv[0]`` is the program name."""
    argv = list(sys.argv if argv is None else argv)
    if any(arg in _HELP for arg in argv[1:]):
        print(__doc__)
        print("Flags:")
        print(FLAGS.get_help())
        return 0
    FLAGS.unparse_flags()  # defaults again: main() may run more than once in a process
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        _fail(f"{e}\nRun r1jax-verify --help for the flags.")
    if len(rest) > 1:
        _fail(f"unexpected argument {rest[1]!r}; pass the input as --input=PATH (or - for stdin).")
    if not FLAGS.input:
        _fail(
            "--input is required: a JSONL file with one object per line holding "
            f'"{FLAGS.prediction_field}" and "{FLAGS.reference_field}", or - for stdin.'
        )
    try:
        task = build_task(FLAGS.task, FLAGS.task_kwargs, FLAGS.task_module) if FLAGS.task else None
        n, correct = run(
            FLAGS.input, FLAGS.output, FLAGS.prediction_field, FLAGS.reference_field, task
        )
    except UsageError as e:
        _fail(str(e))
    where = "standard output" if FLAGS.output == "-" else FLAGS.output
    share = f" ({100.0 * correct / n:.1f}%)" if n else ""
    print(f"r1jax-verify: {correct}/{n} correct{share}; wrote {where}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
