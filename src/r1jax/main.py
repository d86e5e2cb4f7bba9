"""Command-line entry points `r1jax-train` and `r1jax-eval` (thin absl wrappers).

  r1jax-train [--workdir=runs/arith_tiny] [--config=experiments/arith_tiny.py[:smoke]]
              [--config.rl.algo=grpo ...]
  r1jax-eval --workdir=W [--step=N]

Bad flags or config values print a message naming the problem and exit with code 2.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from r1jax.errors import ConfigError

# The embedded default lives inside the package so an installed r1jax runs with no files.
_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "arith_tiny.py")
EXIT_USAGE = 2


def _fail(msg: str):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _parse(argv_flags):
    """Runs absl flag parsing; turns flag errors into exit code 2 with the message."""
    try:
        return flags.FLAGS(argv_flags)
    except flags.Error as e:
        _fail(f"{e}\nRun with --helpfull to list flags.")


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


def train_entry(argv=None):
    argv = list(sys.argv if argv is None else argv)
    try:
        # config_flags reads `--config.*` overrides from sys.argv while defining the flag, so
        # both definition and parsing can raise on a bad override.
        flags.DEFINE_string(
            "workdir",
            "runs/arith_tiny",
            "Output directory: checkpoints, metrics.jsonl, summary.json, plots. "
            "An existing run there is resumed.",
        )
        config_flags.DEFINE_config_file(
            "config", _DEFAULT_CONFIG, "Experiment config file (path[:variant]).", lock_config=True
        )
        flags.DEFINE_bool(
            "compile_only",
            False,
            "Lower and compile the SFT step and the RL iteration for the configured mesh, "
            "print memory per device as JSON, and exit without training or writing files.",
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
        _parse(argv)
        config = flags.FLAGS.config
        list(config.keys())  # the file is loaded lazily: force it here
    except (ValueError, KeyError, AttributeError, TypeError, OSError, SyntaxError) as e:
        _fail(
            f"bad --config or --config.* override: {e}\nValid fields are listed in "
            f"{_DEFAULT_CONFIG}."
        )
    _setup_logging()
    # Before anything touches JAX: joins the other processes of a multi-host job (no-op for
    # one process). Only process 0 logs progress, prints and writes files.
    from r1jax import distributed

    try:
        distributed.initialize(
            flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id
        )
    except ConfigError as e:
        _fail(str(e))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
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
        summary = train(config, flags.FLAGS.workdir)
    except ConfigError as e:
        _fail(str(e))
    if main:
        _print_summary(summary, flags.FLAGS.workdir)


def _print_summary(s: dict, workdir: str):
    print()
    print(f"{'checkpoint':<12}{'accuracy':>10}{'mean_steps':>12}{'problems':>10}")
    for name in ("sft", "rl"):
        r = s[name]
        print(f"{name:<12}{r['accuracy']:>10.3f}{r['mean_steps']:>12.2f}{r['num_problems']:>10d}")
    gain = 100 * (s["rl"]["accuracy"] - s["sft"]["accuracy"])
    fewer = 100 * (1 - s["rl"]["mean_steps"] / max(s["sft"]["mean_steps"], 1e-9))
    print(
        f"RL vs SFT: {gain:+.1f} accuracy points, {fewer:+.0f}% fewer steps, "
        f"{s['wall_seconds']:.0f} s wall"
    )
    print(
        f"wrote {os.path.join(workdir, 'summary.json')}, metrics.jsonl, tensorboard/, "
        f"reward_accuracy.png"
    )


def eval_entry(argv=None):
    argv = list(sys.argv if argv is None else argv)
    flags.DEFINE_string("workdir", None, "Workdir of a run made by r1jax-train.")
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
    _parse(argv)
    if not flags.FLAGS.workdir:
        _fail("--workdir is required (the directory r1jax-train wrote)")
    from r1jax.evaluate import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(flags.FLAGS.workdir, flags.FLAGS.step)
    except (FileNotFoundError, ConfigError) as e:
        _fail(str(e))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    train_entry()
