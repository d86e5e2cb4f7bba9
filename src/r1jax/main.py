"""Command-line entry points `r1jax-train` and `r1jax-eval` (thin absl wrappers).

  r1jax-train [--workdir=runs/arith_tiny] [--config=experiments/arith_tiny.py[:smoke]]
              [--config.rl.algo=grpo ...]
  r1jax-eval --workdir=W [--step=N] [--k=8] [--num_problems=N] [--output=PATH]
  r1jax-eval --hf_checkpoint=DIR [--task=gsm8k] [--data_dir=DIR] [--num_problems=N] [--k=8]
             [--chat] [--output=PATH]   # accuracy (greedy pass@1), maj@k, pass@k

Bad flags or config values print a message naming the problem and exit with code 2.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import sys

from absl import flags, logging
from ml_collections import config_flags

from r1jax import cli_errors, cpu_threads, distributed, host_memory
from r1jax.errors import ConfigError, RewardError, RunError

# The embedded default lives inside the package so an installed r1jax runs with no files.
_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "arith_tiny.py")
EXIT_USAGE = 2


def _fail(msg: str, code: int = EXIT_USAGE):
    """One line `error: ...` on stderr, then exit (2: bad input). With --debug the
    traceback of the exception being handled is printed first."""
    if _debug():
        import traceback

        traceback.print_exc()
    print(f"error: {' '.join(str(msg).split())}", file=sys.stderr)
    _exit(code)


def _exit(code: int):
    """`sys.exit(code)`; in a multi-process job an immediate exit instead, so that a
    process failing on its own does not leave the others waiting (`distributed.exit_now`)."""
    if distributed.is_multi_process():
        distributed.exit_now(code)
    sys.exit(code)


def _debug() -> bool:
    try:
        return bool(flags.FLAGS["debug"].value)
    except (KeyError, AttributeError, flags.Error):
        return "--debug" in sys.argv


_TRAIN_USAGE = """usage: r1jax-train [--workdir=runs/arith_tiny] [--config=FILE.py[:variant]]
                   [--config.FIELD=VALUE ...] [--compile_only]

Trains a policy (SFT, then RL against the task's verifiable rewards) and writes
checkpoints, metrics.jsonl, summary.json and plots to --workdir; rerunning the same
command resumes the run there. Without flags: the embedded default (arith_tiny)."""

_EVAL_USAGE = """usage: r1jax-eval --workdir=W [--step=N] [--k=8] [--num_problems=N] [--output=PATH]
       r1jax-eval --hf_checkpoint=DIR [--task=gsm8k] [--data_dir=DIR] [--num_problems=N]
                  [--k=8] [--chat] [--output=PATH]

Evaluates a run's checkpoint (its own settings) or a Hugging Face checkpoint on a
registered task: accuracy (greedy pass@1), and with --k maj@k and pass@k."""

_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def _help(argv, usage: str, full_extra=None):
    """`--help` (`-h`, `--helpshort`): `usage` and this program's flags on stdout, exit 0;
    `--helpfull` adds absl's own flags and `full_extra()` (r1jax-train: every config
    field). Nothing else is parsed or loaded first, so help works beside other flags (a
    `--config.*` override that names no field is still reported: absl reads those
    while the flag is defined). A help flag that is another flag's value (`--workdir -h`)
    is that value."""
    asked, takes_value = [], False
    for a in argv[1:]:
        if takes_value:  # the value of the flag before it
            takes_value = False
            continue
        if a == "--":
            break
        name = a.lstrip("-").split("=", 1)[0]
        if a.split("=", 1)[0] in _HELP_FLAGS:
            asked.append(a)
        elif a.startswith("-") and "=" not in a and name in flags.FLAGS:
            takes_value = not flags.FLAGS[name].boolean
    if not asked:
        return
    try:
        _print_help(usage, full_extra, any(a.startswith("--helpfull") for a in asked))
    except BrokenPipeError:  # `r1jax-train --helpfull | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


def _print_help(usage: str, full_extra, full: bool):
    by_module = flags.FLAGS.flags_by_module_dict()
    ours = [m for m in by_module if not m.startswith("absl.")]
    print(usage.rstrip() + "\n")
    for m in ours + ([m for m in by_module if m.startswith("absl.")] if full else []):
        print(flags.FLAGS.module_help(m).strip() + "\n")
    if full and full_extra is not None:
        print(full_extra().rstrip())
    elif not full:
        more = ", every --config.* field" if full_extra is not None else ""
        print(f"--helpfull lists more (absl's logging flags{more})")
    sys.stdout.flush()


def _config_fields_help() -> str:
    """`r1jax-train --helpfull`'s list of config fields, with the embedded default's values."""
    lines = [
        (
            "config fields (override any with --config.FIELD=VALUE; shown with the values of "
            "the embedded default, r1jax/configs/arith_tiny.py, which a --config file may "
            "change):"
        )
    ]
    for k, v in sorted(cli_errors.default_leaves().items()):
        items = sorted(v.items()) if isinstance(v, dict) and v else [(None, v)]
        lines += [f"  --config.{k}{'' if sub is None else '.' + sub}={x!r}" for sub, x in items]
    return "\n".join(lines)


def _parse(argv_flags):
    """Runs absl flag parsing; turns flag errors into exit code 2 with one line."""
    try:
        return flags.FLAGS(argv_flags)
    except flags.Error as e:
        msg = cli_errors.flag_error(e, argv_flags)
        _fail(
            msg if msg.startswith("--config") else f"{msg}: drop it or use a flag --helpfull lists"
        )


def _setup_logging():
    """r1jax's own progress lines at INFO; library chatter (orbax, jax) at WARNING."""
    import logging as pylogging

    logging.set_verbosity(logging.WARNING)
    logger = pylogging.getLogger("r1jax")
    if not logger.handlers:
        handler = pylogging.StreamHandler()
        handler.setFormatter(pylogging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(pylogging.INFO)
    logger.propagate = False


def _retarget_task_kwargs(config, overrides: dict) -> None:
    """`--config.task=<other task>`: the config file's task_kwargs were written for the
    file's task; those the new task does not take are dropped, with a note naming them
    (the new task's defaults apply), so `r1jax-train --config.task=fractions` trains that
    domain on the embedded default's settings. Those it takes by name but refuses (the
    arithmetic file's `solution_style="plain"` for gsm8k, whose styles are "r1" and
    "gsm8k") are dropped too, with a note, when the task builds without them. Arguments
    given as `--config.task_kwargs.*` are the user's and always kept (the task checks
    them)."""
    if "task" not in overrides or not dict(config.task_kwargs):
        return
    from r1jax.tasks import get_task, import_task_module, task_parameters

    try:
        import_task_module(config.task_module)
    except ValueError:
        return  # validation reports the module
    takes = task_parameters(config.task)
    if takes is None:
        return
    given = {k.split(".", 1)[1] for k in overrides if k.startswith("task_kwargs.")}
    kwargs = dict(config.task_kwargs)
    dropped = sorted(k for k in kwargs if k not in takes and k not in given)
    if dropped:
        with config.unlocked():
            config.task_kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
        print(
            f"note: --config.task={config.task} does not take the config file's task_kwargs "
            f"{', '.join(dropped)}: dropped (set --config.task_kwargs.* for the new task's)",
            file=sys.stderr,
        )
    kwargs = dict(config.task_kwargs)
    from_file = sorted(k for k in kwargs if k not in given)
    if not from_file:
        return
    try:
        get_task(config.task, **kwargs)
        return  # the task takes them
    except Exception:  # noqa: BLE001 - the task's own code: validation reports any error
        try:  # without the file's: if it still fails, validation reports why
            get_task(config.task, **{k: v for k, v in kwargs.items() if k in given})
        except Exception:  # noqa: BLE001
            return
    with config.unlocked():
        config.task_kwargs = {k: v for k, v in kwargs.items() if k in given}
    shown = ", ".join(f"{k}={kwargs[k]!r}" for k in from_file)
    print(
        f"note: --config.task={config.task} refuses the config file's task_kwargs {shown}: "
        "dropped, the task's defaults apply (set --config.task_kwargs.* to change them)",
        file=sys.stderr,
    )


# `--config.task_kwargs.NAME=VALUE` (absl also takes a single dash).
_TASK_KWARG = re.compile(r"-{1,2}config\.task_kwargs\.([A-Za-z_]\w*)=(.*)", re.DOTALL)


def _config_spec(argv) -> str:
    """The `--config` value of `argv` (absl keeps the last), else the embedded default."""
    spec = _DEFAULT_CONFIG
    for i, a in enumerate(argv[1:], 1):
        if a == "--":
            break
        name, eq, value = a.partition("=")
        if name in ("--config", "-config"):
            spec = value if eq else (argv[i + 1] if i + 1 < len(argv) else spec)
    return spec


def _split_new_task_kwargs(argv) -> tuple[list, dict]:
    """`(argv without them, {NAME: VALUE})` of the `--config.task_kwargs.NAME=VALUE`
    overrides whose NAME the config file's task_kwargs lacks (the file is loaded to see).
    config_flags overrides only the fields a config file has, so `--config.task=gsm8k
    --config.task_kwargs.path=DIR` would be refused; these are set by `_set_new_task_kwargs`
    once the config's task is known. Nothing is taken out when the file does not load
    (absl's own parsing then reports it)."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = {i: m for i in range(1, end) if (m := _TASK_KWARG.fullmatch(argv[i]))}
    if not found:
        return list(argv), {}
    from ml_collections.config_flags.config_flags import ConfigFileFlagParser

    try:
        loaded = ConfigFileFlagParser("config", lock_config=False).parse(_config_spec(argv))
        kwargs = loaded.get("task_kwargs")
        have = set(kwargs.keys()) if kwargs is not None else set()
    except Exception:  # noqa: BLE001 - a config that does not load: absl's parse names it
        return list(argv), {}
    new = {i: m for i, m in found.items() if m.group(1) not in have}
    kept = [a for i, a in enumerate(argv) if i not in new]
    return kept, {m.group(1): m.group(2) for m in new.values()}


def _literal(text: str):
    """A command-line value as config_flags reads a field of no known type: a Python
    literal (`0.2`, `(0.5, 0.5)`, `true`), else the string itself (a path)."""
    try:
        return ast.literal_eval(text.capitalize() if text in ("true", "false") else text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _set_new_task_kwargs(config, new: dict, overrides: dict) -> None:
    """Sets the task arguments `_split_new_task_kwargs` took out of the command line in
    `config.task_kwargs` (values by `_literal`: `path=/data/gsm8k` is a string,
    `distractor_prob=0.2` a float) and records them in `overrides` as given. A NAME the
    config's task does not take (`tasks.task_parameters`) is refused (exit 2), naming
    the task's arguments."""
    if not new:
        return
    from r1jax.tasks import import_task_module, task_parameters

    try:
        import_task_module(config.task_module)
        takes = task_parameters(config.task)
    except ValueError:
        takes = None  # validation reports the module
    for name in new:
        if takes is not None and name not in takes:
            near = difflib.get_close_matches(name, sorted(takes), n=1)
            hint = f": did you mean --config.task_kwargs.{near[0]}?" if near else ""
            _fail(
                f"--config.task_kwargs.{name} is not among the arguments of task "
                f"{config.task!r}{hint} (it takes {', '.join(sorted(takes)) or 'none'})"
            )
    values = {name: _literal(text) for name, text in new.items()}
    with config.unlocked():
        config.task_kwargs = {**dict(config.get("task_kwargs") or {}), **values}
    overrides.update({f"task_kwargs.{name}": v for name, v in values.items()})


def _absolute_task_module(config) -> None:
    """A task module given as a file (a `.py` path or one with a path separator: how
    `tasks.import_task_module` tells a file from a dotted module name) is stored absolute,
    so the run's `config.json` finds it from any directory (`r1jax-eval --workdir`); a
    relative path was read from the current directory, as the import reads it. Dotted
    names are left as they are. A resume may change the path (`loop.RESUMABLE_CHANGES`)."""
    from r1jax.tasks import is_module_file

    spec = config.get("task_module")
    if is_module_file(spec) and not os.path.isabs(spec):
        with config.unlocked():
            config.task_module = os.path.abspath(spec)


def _with_values(config, values: dict):
    """A new ConfigDict: `config`'s resolved values (a field linked to another by a
    FieldReference gets its own value) with `values` (`{"a.b": v}`) set, locked like it."""
    import ml_collections

    d = config.to_dict()
    for field, v in values.items():
        *parents, leaf = field.split(".")
        node = d
        for part in parents:
            node = node[part]
        node[leaf] = v
    out = ml_collections.ConfigDict(d)
    if config.is_locked:
        out.lock()
    return out


def _reset_unused_file_settings(config, overrides: dict):
    """`config`, or a copy with some of the config file's settings reset: a `--config.*`
    override that switches a feature off (`--config.eval.curve_every=0`,
    `--config.rl.adaptive_clip=False`, `--config.rl.algo=grpo`) leaves the file's own
    settings of that feature unused. Validation refuses options that do nothing, so that
    nothing a user asks for is silently ignored; these the user did not ask for, so they
    take the embedded default's values, with a note naming them and the override that
    switched them off. Options given on the command line, and ones already unused in the
    file itself, are still refused by validation."""
    if not overrides:
        return config
    from r1jax import config as config_lib

    flag = flags.FLAGS["config"]

    def unused(c) -> dict:
        return {f: (v, d) for f, v, d, _ in config_lib.inert_fields(config_lib.complete(c))}

    try:
        in_file = flag.parser.parse(config_flags.get_config_filename(flag))
        before, now = unused(in_file), unused(config)
        reset = {f: vd for f, vd in now.items() if f not in before and f not in overrides}
        if not reset:
            return config
        # The overrides that switch them off: each alone on the file makes one unused.
        causes = [
            k
            for k, v in overrides.items()
            if set(unused(_with_values(in_file, {k: v}))) & set(reset)
        ]
        out = _with_values(config, {f: d for f, (_, d) in reset.items()})
    except Exception:  # noqa: BLE001 - a config that does not load or lacks a field:
        return config  # validation names the problem
    given = " ".join(f"--config.{k}={overrides[k]}" for k in causes or overrides)
    shown = ", ".join(f"{f}={v} (now {d})" for f, (v, d) in reset.items())
    print(
        f"note: with {given} the config file's {shown} would do nothing: reset to the "
        "embedded default's values",
        file=sys.stderr,
    )
    return out


_COMPILE_CACHE_HELP = (
    "Folder of JAX's persistent compilation cache, so a resumed run or a second evaluation "
    "skips compiling (default: $R1JAX_COMPILE_CACHE, else ~/.cache/r1jax/jax/<build>-<cpu>; 'off' "
    "disables it)."
)


def _reuse_cpu_buffers(enable: bool) -> None:
    """`r1jax.host_memory.reuse_cpu_buffers`, before JAX's backend starts."""
    import logging as pylogging

    done = host_memory.reuse_cpu_buffers(enable)
    pylogging.getLogger("r1jax").debug("CPU buffer reuse: %s", done)


def _enable_compile_cache(value) -> None:
    from r1jax import compile_cache

    try:
        compile_cache.enable(value)
    except OSError as e:
        _fail(
            f"--compile_cache={value if value is not None else compile_cache.resolve(None)}: "
            f"cannot create the folder ({e.strerror or e}): pass a writable folder, or "
            "--compile_cache=off"
        )


def train_entry(argv=None):
    argv = list(sys.argv if argv is None else argv)
    cpu_threads.pool_env()  # before JAX's CPU client exists (fake CPU devices)
    kept, new_task_kwargs = _split_new_task_kwargs(argv)
    try:
        # config_flags reads `--config.*` overrides from `kept` while defining the flag, so
        # both definition and parsing can raise on a bad override.
        flags.DEFINE_string(
            "workdir",
            "runs/arith_tiny",
            "Output directory: checkpoints, metrics.jsonl, summary.json, plots. "
            "An existing run there is resumed.",
        )
        config_flags.DEFINE_config_file(
            "config",
            _DEFAULT_CONFIG,
            "Experiment config file (path[:variant]).",
            lock_config=True,
            sys_argv=kept,
        )
        flags.DEFINE_bool(
            "compile_only",
            False,
            "Lower and compile the SFT step (if sft.steps > 0) and the RL iteration for the "
            "configured mesh, print memory per device as JSON, and exit without training or "
            "writing files.",
        )
        flags.DEFINE_string(
            "coordinator_address",
            None,
            "Multi-process runs: HOST:PORT of process 0, the same on every process. Default: "
            "$R1JAX_COORDINATOR; not needed on TPU VMs, under SLURM (srun) or Open MPI, "
            "where JAX detects the job.",
        )
        flags.DEFINE_integer(
            "num_processes",
            None,
            "Multi-process runs: the number of processes (default $R1JAX_NUM_PROCESSES, "
            "else detected; 1 process when nothing is set or detected).",
        )
        flags.DEFINE_integer(
            "process_id",
            None,
            "Multi-process runs: this process's id, 0..num_processes-1; 0 hosts the "
            "coordinator and writes the logs (default $R1JAX_PROCESS_ID, else detected).",
        )
        flags.DEFINE_bool(
            "debug", False, "Print the Python traceback of an error before its one-line message."
        )
        flags.DEFINE_string("compile_cache", None, _COMPILE_CACHE_HELP)
        flags.DEFINE_bool("reuse_cpu_buffers", True, host_memory.FLAG_HELP)
        _help(argv, _TRAIN_USAGE, _config_fields_help)
        _parse(kept)
        config = flags.FLAGS.config
        list(config.keys())  # the file is loaded lazily: force it here
    except (ValueError, KeyError, AttributeError, TypeError, OSError, SyntaxError) as e:
        _fail(cli_errors.config_load_error(e, argv))
    overrides = dict(config_flags.get_override_values(flags.FLAGS["config"]))
    _set_new_task_kwargs(config, new_task_kwargs, overrides)
    _retarget_task_kwargs(config, overrides)
    config = _reset_unused_file_settings(config, overrides)
    _absolute_task_module(config)
    workdir = flags.FLAGS.workdir
    if not flags.FLAGS.compile_only:
        try:
            cli_errors.check_workdir(workdir)
        except ConfigError as e:
            _fail(str(e))
    _setup_logging()
    if not flags.FLAGS.compile_only:  # --compile_only writes no files
        _enable_compile_cache(flags.FLAGS.compile_cache)
    # Before anything touches JAX: joins the other processes of a multi-host job (no-op for
    # one process). Only process 0 logs progress, prints and writes files.
    try:
        distributed.initialize(
            flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id
        )
    except ConfigError as e:
        _fail(str(e))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    _reuse_cpu_buffers(flags.FLAGS.reuse_cpu_buffers)
    main = distributed.is_main_process()
    if not main:
        import logging as pylogging

        pylogging.getLogger("r1jax").setLevel(pylogging.WARNING)
    from r1jax.train.loop import compile_report, train

    try:
        if flags.FLAGS.compile_only:
            report = compile_report(config)
            if main:
                print(json.dumps(report, indent=2))
            return
        summary = train(config, workdir)
    except ConfigError as e:
        _fail(cli_errors.as_written(e, argv))
    except RunError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        if _debug():
            import traceback

            traceback.print_exc()
        print(
            f"interrupted: rerun the same command to resume --workdir={workdir} from its "
            "newest complete checkpoint",
            file=sys.stderr,
        )
        _exit(130)
    except RewardError as e:
        _fail(str(e), code=1)
    except OSError as e:  # e.g. the disk filled up while writing metrics or a checkpoint
        where = e.filename or workdir
        _fail(
            f"--workdir={workdir}: writing {where} failed ({e.strerror or e}): free space or "
            f"fix permissions there, then rerun the same command: {_resume_note(workdir)}"
        )
    except Exception:
        if not distributed.is_multi_process():
            raise
        # An error in this process only: say so, then leave at once (not through JAX's
        # shutdown barrier, which would keep the others waiting in their next collective).
        import traceback

        import jax

        me = jax.process_index()
        if distributed.peer_lost(sys.exc_info()[1]):
            if _debug():
                traceback.print_exc()
            print(
                f"error: process {me} lost another process of the job mid-run (see the "
                "other processes' logs for why); stopping too. Rerun the same command to "
                "resume from the newest complete checkpoint",
                file=sys.stderr,
            )
        else:
            traceback.print_exc()
            print(
                f"error: process {me} failed (traceback above); stopping it so that the "
                "other processes stop too. Rerun the same command, once fixed, to resume "
                "from the newest complete checkpoint",
                file=sys.stderr,
            )
        distributed.exit_now(1)
    if main:
        _print_summary(summary, workdir)


def _resume_note(workdir: str) -> str:
    """What a rerun does: resume from a checkpoint, or start over when none was written."""
    from r1jax.train.loop import saved_checkpoints

    try:
        saved = saved_checkpoints(workdir)
    except OSError:
        saved = []
    if saved:
        return "the run resumes from its newest complete checkpoint"
    return "no checkpoint was written yet, so the run starts from the beginning"


def _print_summary(s: dict, workdir: str):
    print()
    print(f"{'checkpoint':<12}{'accuracy':>10}{'mean_steps':>12}{'problems':>10}")
    for name in ("sft", "rl"):
        r = s[name]
        print(f"{name:<12}{r['accuracy']:>10.3f}{r['mean_steps']:>12.2f}{r['num_problems']:>10d}")
    gain = 100 * (s["rl"]["accuracy"] - s["sft"]["accuracy"])
    sft_steps = s["sft"]["mean_steps"]
    if sft_steps > 0:
        change = 100 * (1 - s["rl"]["mean_steps"] / sft_steps)
        steps = f"{abs(change):.0f}% {'fewer' if change >= 0 else 'more'} steps"
    else:  # no parseable steps after SFT (e.g. the seconds-long smoke run)
        steps = "steps not comparable (SFT wrote none)"
    print(f"RL vs SFT: {gain:+.1f} accuracy points, {steps}, {s['wall_seconds']:.0f} s wall")
    print(
        f"wrote {os.path.join(workdir, 'summary.json')}, metrics.jsonl, tensorboard/, "
        f"reward_accuracy.png"
    )


# Flags of --hf_checkpoint mode only: a run's checkpoint is evaluated with its own settings.
_HF_ONLY = ("task", "task_module", "max_prompt_len", "chat", "dtype")


def _define_eval_flags():
    flags.DEFINE_string(
        "workdir",
        None,
        "Workdir of a run made by r1jax-train: its checkpoint is evaluated on its task with "
        "the run's own config (any registered task; greedy accuracy per level, mean steps, "
        "format rate; with --k, maj@k and pass@k).",
    )
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
    flags.DEFINE_string(
        "hf_checkpoint",
        None,
        "A Hugging Face Qwen2/Llama checkpoint directory (config.json, *.safetensors, "
        "tokenizer.json) to evaluate on --task (default gsm8k, its test set).",
    )
    flags.DEFINE_string("task", "gsm8k", "Registered task of --hf_checkpoint mode.")
    flags.DEFINE_string(
        "task_module",
        "",
        "Module that registers --task (a .py path or a dotted name), for your own task.",
    )
    flags.DEFINE_string(
        "task_kwargs",
        None,
        "JSON object of task arguments (with --workdir: overrides of the run's).",
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "The task's data directory (its task_kwargs path), e.g. GSM8K's directory with "
        "train.jsonl and test.jsonl.",
    )
    flags.DEFINE_alias("gsm8k_dir", "data_dir")
    flags.DEFINE_integer(
        "num_problems",
        None,
        "Evaluate the first N problems of the evaluation set (default: the run's "
        "eval.num_problems with --workdir; the whole test set with --hf_checkpoint).",
    )
    flags.DEFINE_integer(
        "k",
        None,
        "Samples per problem for maj@k / pass@k (default 0 with --workdir, 8 with "
        "--hf_checkpoint; 0 = greedy only).",
    )
    flags.DEFINE_float("temperature", 0.6, "Sampling temperature of the k samples.")
    flags.DEFINE_float("top_p", 0.95, "Nucleus top-p of the k samples (1 = off).")
    flags.DEFINE_integer(
        "max_new_tokens",
        None,
        "Completion tokens per answer (default: the run's; 512 with --hf_checkpoint).",
    )
    flags.DEFINE_integer(
        "max_prompt_len", None, "Prompt tokens (default: the longest prompt, rounded up to 64)."
    )
    flags.DEFINE_integer(
        "batch_size", None, "Rows per decoding batch (default: the run's; 32 with --hf_checkpoint)."
    )
    flags.DEFINE_integer("seed", 0, "PRNG seed of the k samples.")
    flags.DEFINE_bool(
        "chat", False, "Prompt through the tokenizer's chat template (instruction-tuned models)."
    )
    flags.DEFINE_enum(
        "dtype", "float32", ["float32", "bfloat16", "float16"], "Weights and compute dtype."
    )
    flags.DEFINE_bool("records", False, "Add per-problem completions and verdicts to the JSON.")
    flags.DEFINE_bool(
        "debug", False, "Print the Python traceback of an error before its one-line message."
    )
    flags.DEFINE_string(
        "output", None, "Also write the JSON here (atomically: a temporary file, then rename)."
    )
    flags.DEFINE_string("compile_cache", None, _COMPILE_CACHE_HELP)
    flags.DEFINE_bool("reuse_cpu_buffers", True, host_memory.FLAG_HELP)


def _write_json_atomic(path: str, text: str):
    import tempfile

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have made
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _check_output(path: str) -> None:
    """Fails (exit 2) unless ``--output=path`` can be written: not a directory, and its
    nearest existing parent a writable directory. Checked before the evaluation runs."""
    if os.path.isdir(path):
        _fail(f"--output={path} is a directory: give a file path, e.g. {path}/eval.json")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        cli_errors.check_can_create(parent, f"--output={path}", "file")
    except ConfigError as e:
        _fail(str(e))


# The evaluation library's integer arguments (`checkpoint_eval._check_int`), named as
# r1jax-eval's flags are.
_EVAL_ARGS = ("max_new_tokens", "max_prompt_len", "num_problems", "batch_size", "k")


def _as_eval_flags(e: ConfigError) -> str:
    """The message of a library error about one argument (``e.field``, which it starts
    with), that name spelt as the flag: `k must ...` -> `--k must ...`."""
    return f"--{e}" if e.field in _EVAL_ARGS else str(e)


def _task_kwargs(F) -> dict:
    """--task_kwargs (a JSON object), with --data_dir as its "path"."""
    from r1jax.tasks import parse_task_kwargs

    kwargs = {}
    if F.task_kwargs:
        try:
            kwargs = parse_task_kwargs(F.task_kwargs)
        except ValueError as e:
            _fail(str(e))
    if F.data_dir:
        kwargs["path"] = F.data_dir
    return kwargs


def _eval_hf(F) -> dict:
    from r1jax.checkpoint_eval import evaluate_hf

    if F.step is not None:
        _fail("--step applies to --workdir checkpoints, not to --hf_checkpoint")
    if not os.path.isdir(F.hf_checkpoint):
        _fail(f"--hf_checkpoint={F.hf_checkpoint}: directory not found")
    return evaluate_hf(
        F.hf_checkpoint,
        F.task,
        _task_kwargs(F),
        task_module=F.task_module,
        num_problems=F.num_problems,
        k=8 if F.k is None else F.k,
        temperature=F.temperature,
        top_p=F.top_p,
        max_new_tokens=512 if F.max_new_tokens is None else F.max_new_tokens,
        max_prompt_len=F.max_prompt_len,
        batch_size=32 if F.batch_size is None else F.batch_size,
        seed=F.seed,
        chat=F.chat,
        dtype=F.dtype,
        records=F.records,
    )


def _eval_workdir(F) -> dict:
    from r1jax.checkpoint_eval import evaluate_workdir

    given = [f"--{name}" for name in _HF_ONLY if F[name].present]
    if given:
        _fail(f"{', '.join(given)}: a run's checkpoint is evaluated with its own settings")
    return evaluate_workdir(
        F.workdir,
        F.step,
        num_problems=F.num_problems,
        k=F.k or 0,
        temperature=F.temperature,
        top_p=F.top_p,
        max_new_tokens=F.max_new_tokens,
        batch_size=F.batch_size,
        seed=F.seed,
        records=F.records,
        task_kwargs=_task_kwargs(F),
    )


def eval_entry(argv=None):
    argv = list(sys.argv if argv is None else argv)
    cpu_threads.pool_env()  # before JAX's CPU client exists (fake CPU devices)
    _define_eval_flags()
    _help(argv, _EVAL_USAGE)
    _parse(argv)
    F = flags.FLAGS
    if F.hf_checkpoint and F.workdir:
        _fail("--hf_checkpoint and --workdir are mutually exclusive: pass one of them")
    if not F.hf_checkpoint and not F.workdir:
        _fail(
            "--workdir is required (the directory r1jax-train wrote), or "
            "--hf_checkpoint=DIR for a Hugging Face checkpoint on --task (default gsm8k)"
        )
    if F.output:
        _check_output(F.output)
    _setup_logging()
    _enable_compile_cache(F.compile_cache)
    _reuse_cpu_buffers(F.reuse_cpu_buffers)
    try:
        result = _eval_hf(F) if F.hf_checkpoint else _eval_workdir(F)
    except ConfigError as e:
        _fail(_as_eval_flags(e))
    except (FileNotFoundError, RunError) as e:
        _fail(str(e))
    text = json.dumps(result, sort_keys=True)
    print(text, flush=True)  # first: a failed write below does not lose the result
    if F.output:
        try:
            _write_json_atomic(F.output, text + "\n")
        except OSError as e:
            _fail(f"cannot write --output={F.output}: {e}; the result is printed above")


if __name__ == "__main__":
    train_entry()
