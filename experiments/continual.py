"""Continual learning over ten reasoning domains: naive fine-tuning, EWC, online EWC and
progressive networks, same seeds and budget per task (`r1jax.train.continual`). Every
method has the task id (naive and EWC through a LoRA adapter per task beside the shared
trunk, `adapter_rank`); `--override=adapter_rank=0` trains one shared model without it,
where experience replay (`replay`, `ewc_replay`) runs too.

  python experiments/continual.py --workdir=runs/continual              # the measured run
  python experiments/continual.py --workdir=/tmp/cl --smoke             # seconds per method
  python experiments/continual.py --workdir=W --methods=naive,ewc --seeds=0,1 \
      --lambdas=1,10 --override=steps_per_task=100
  python experiments/continual.py --workdir=W --methods=naive,ewc,online_ewc \
      --override=adapter_rank=8        # with the task id: a LoRA adapter per task
  python experiments/continual.py --workdir=W --plan   # what would run, what is done

Writes `W/continual.json`: per method the accuracy matrix `R` (row i = after task i,
column j = task j; the mean over seeds), `acc`, `bwt`, `forgetting`, `retention`,
`params`, `seconds`, the per-seed results, and for the EWC methods the λ sweep
(`sweep`, every λ's figures) with the λ reported (`lambda`, chosen by `--select`).
Also `W/R_<method>.png` (heat maps) and a table on stdout. Finished cells (method, λ,
seed) are kept in `W/cells/` and skipped when the command is run again; a cell stopped
midway resumes after its last finished task (a checkpoint per task: params, EWC Fisher
and anchor, the rows of R so far), so an interrupted experiment continues where it
stopped with the numbers it would have had. Every file is replaced atomically (a
temporary file, then a rename): an error mid-run (a full disk) prints one `error:` line
and leaves each file complete or absent, so rerunning the command continues. --workdir
is a local path (for a bucket, a gcsfuse mount), as for `r1jax-train`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile

from absl import app, flags, logging

from r1jax import host_memory  # no JAX import: the flag's help

flags.DEFINE_string("workdir", None, "Output directory (continual.json, heat maps).")
flags.DEFINE_list(
    "methods",
    [],
    "Methods to run (default: naive, ewc, online_ewc, progressive; with "
    "--override=adapter_rank=0 also replay; ewc_replay: EWC on replay's batches).",
)
flags.DEFINE_list("seeds", ["0"], "Seeds (model init, data); R is averaged over them.")
flags.DEFINE_list(
    "lambdas",
    [],
    "EWC λ sweep of ewc, online_ewc and ewc_replay (default 0.1,1,10 with the task "
    "adapters; 0.03,0.3,3 with --override=adapter_rank=0, one shared model).",
)
flags.DEFINE_bool("smoke", False, "Tiny model, 2 steps per task, 8 held-out problems.")
flags.DEFINE_bool(
    "plan",
    False,
    "Print the cells (method, λ, seed) the command would compute and which of them are "
    "already finished in --workdir, then exit without training or writing anything.",
)
flags.DEFINE_enum(
    "select", "acc", ["acc", "retention"], "Which λ of the sweep is reported as the method's."
)
flags.DEFINE_multi_string(
    "override", [], "A config field as key=value (r1jax/configs/continual.py), repeatable."
)
flags.DEFINE_bool(
    "debug", False, "Print the Python traceback of an error before its one-line message."
)
flags.DEFINE_bool("reuse_cpu_buffers", True, host_memory.FLAG_HELP)
FLAGS = flags.FLAGS


def _usage(msg: str):
    """One line `error: ...` on stderr and exit code 2, as `r1jax-train` does."""
    print(f"error: {' '.join(str(msg).split())}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
    """absl's flag parsing with `r1jax-train`'s answer to a bad flag (unknown, malformed,
    missing value): one line and exit code 2, not absl's FATAL and exit code 1."""
    from r1jax import cli_errors

    try:
        return FLAGS(argv)
    except flags.Error as e:
        _usage(f"{cli_errors.flag_error(e, argv)}: drop it or use a flag --helpfull lists")


def _check_workdir(path: str) -> None:
    """Exit 2 unless --workdir can hold the experiment: an existing directory (a rerun
    reuses its finished cells), or a path that can be made one. Checked before --plan
    reads it and before anything is written or trained."""
    from r1jax import cli_errors
    from r1jax.errors import ConfigError

    flag = f"--workdir={path}"
    if "://" in path:  # a URL: os.path would make a local folder named after its scheme
        _usage(cli_errors.remote_workdir_error(flag))
    if os.path.isdir(path):
        cells = os.path.join(path, "cells")
        if os.path.lexists(cells) and not os.path.isdir(cells):
            _usage(
                f"{flag}: {cells} is not a directory (the finished cells are kept there): "
                "move it away or pass another --workdir"
            )
        if not FLAGS.plan and not os.access(path, os.W_OK | os.X_OK):
            _usage(f"{flag} is not writable by this user: pass a directory you can write")
        return
    try:  # not a directory yet: r1jax-train's checks (a file, below a file, not writable;
        # --plan writes nothing, not even the writability probe, so it skips that one)
        cli_errors.check_workdir(path, probe_write=not FLAGS.plan)
    except ConfigError as e:
        _usage(str(e))


def _config():
    from r1jax.configs import continual as cfg_lib

    c = cfg_lib.get_config("smoke" if FLAGS.smoke else "")
    for item in FLAGS.override:
        key, sep, text = item.partition("=")
        if not sep or key not in c or isinstance(c[key], dict):
            _usage(f"--override={item!r}: give key=value with a top-level field of the config")
        old = c[key]
        try:
            value = text if isinstance(old, str) else json.loads(text)
            if isinstance(old, (list, tuple)):
                value = type(old)(value)
            elif isinstance(old, float) and isinstance(value, int):
                value = float(value)
            if type(value) is not type(old):
                raise TypeError
        except (ValueError, TypeError):
            _usage(f"--override={item!r}: {text!r} is not a {type(old).__name__}")
        c[key] = value
    try:
        cfg_lib.check_config(c)
    except ValueError as e:
        _usage(f"--override: {e}")
    return c


def _replace_atomically(path: str, write) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path` in
    one rename: a failure (a full disk) leaves `path` as it was and no temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _write_json(path: str, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    _replace_atomically(path, write)


def _heatmap(path: str, title: str, R, names) -> None:
    from matplotlib.figure import Figure  # no pyplot: the Agg canvas savefig picks

    n = len(R)
    fig = Figure(figsize=(1 + 0.62 * n, 0.8 + 0.55 * n))
    ax = fig.subplots()
    im = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{R[i][j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if R[i][j] < 0.6 else "black",
            )
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"after {x}" for x in names], fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    _replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def main(argv):
    if len(argv) > 1:
        _usage(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        _usage("--workdir is required: the directory to write continual.json to")
    _check_workdir(FLAGS.workdir)
    # The command line is checked (and --plan answered) before JAX is imported.
    from r1jax.configs import continual as cfg_lib

    bad = [m for m in FLAGS.methods if m not in cfg_lib.METHODS]
    if bad:
        _usage(f"--methods: unknown {bad}; use some of {','.join(cfg_lib.METHODS)}")
    c = _config()
    # Each setting's defaults: with the task id (adapters) every method but replay's, and
    # the λ range that spans free to stiff there; one shared model: replay too.
    methods = FLAGS.methods or ["naive", "ewc", "online_ewc", "progressive"] + (
        [] if c.adapter_rank else ["replay"]
    )
    try:
        seeds = [int(s) for s in FLAGS.seeds]
        lambdas = [float(x) for x in FLAGS.lambdas] or (
            [0.1, 1.0, 10.0] if c.adapter_rank else [0.03, 0.3, 3.0]
        )
    except ValueError as e:
        _usage(f"--seeds are integers and --lambdas numbers ({e})")
    if not seeds or min(lambdas) < 0:
        _usage("give at least one seed, and λ values >= 0")
    try:
        cfg_lib.check_adapters(c, methods)
    except ValueError as e:
        _usage(f"--methods / --override: {e}")
    try:  # before anything trains: a run would fail at its first evaluation or Fisher
        ewc = any(m in cfg_lib.EWC_METHODS for m in methods)
        warning = cfg_lib.check_lengths(c, fisher_seeds=seeds if ewc else [])
    except ValueError as e:
        _usage(f"--override: {e}")
    if warning and not FLAGS.smoke:  # the smoke setting halves the decode on purpose
        print(f"warning: {warning}", file=sys.stderr)
    plan = [
        (method, lam, seed)
        for method in methods
        for lam in (lambdas if method in cfg_lib.EWC_METHODS else [None])
        for seed in seeds
    ]

    def cell_path(method, lam, seed):
        """``(config, result JSON, checkpoint dir)`` of one cell."""
        c_run = c.copy_and_resolve_references()
        if lam is not None:
            c_run.ewc_lambda = lam
        # The config's hash in the name: a changed setting never reuses another's cells.
        digest = hashlib.blake2b(
            json.dumps(c_run.to_dict(), sort_keys=True).encode(), digest_size=4
        ).hexdigest()
        name = f"{method}-seed{seed}" + ("" if lam is None else f"-lambda{lam:g}") + f"-{digest}"
        stem = os.path.join(FLAGS.workdir, "cells", name)
        return c_run, stem + ".json", stem + ".ckpt"  # a checkpoint after each task

    if FLAGS.plan:
        print(f"adapter_rank {c.adapter_rank}: {len(plan)} cells")
        print(f"{'method':<12} {'lambda':>7} {'seed':>5}  state     cell")
        for method, lam, seed in plan:
            _, path, ckpt_dir = cell_path(method, lam, seed)
            done, started = os.path.isfile(path), os.path.isdir(ckpt_dir)
            state = "done" if done else "partial" if started else "pending"
            lam_s = "-" if lam is None else f"{lam:g}"
            print(f"{method:<12} {lam_s:>7} {seed:>5}  {state:<8}  {os.path.basename(path)}")
        return
    try:
        os.makedirs(os.path.join(FLAGS.workdir, "cells"), exist_ok=True)
    except OSError as e:  # what the checks above cannot see (a read-only mount, a race)
        _usage(f"--workdir={FLAGS.workdir}: cannot create {e.filename or 'it'} ({e.strerror or e})")

    buffers = host_memory.reuse_cpu_buffers(FLAGS.reuse_cpu_buffers)  # before JAX computes
    now = {"doing": "starting"}  # what the experiment is doing, for an error's message
    try:
        _run(c, methods, seeds, lambdas, cell_path, now, buffers)
    except BaseException as e:  # noqa: BLE001 - _failed re-raises what it cannot explain
        _failed(e, now["doing"])


class _CellError(Exception):
    """A finished cell that cannot be reused; the message says which and the fix."""


_RERUN = (
    "rerun the same command: the finished cells are reused and a cell stopped midway "
    "resumes after its last finished task"
)


# What "free space or fix permissions there" can mend; other OSErrors (a broken pipe, a
# timeout, a missing input file) keep their traceback.
_DISK_ERRNOS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO)
)


def _failed(e: BaseException, doing: str):
    """One `error:` line for an experiment stopped by `e` while `doing`, then exit 1 (130
    for Ctrl-C): the files it writes are replaced atomically, so nothing is half-written
    and a rerun continues. Anything else (a bug) is re-raised with its traceback."""
    from r1jax.checkpoint import UnreadableCheckpoint
    from r1jax.errors import ConfigError, RunError

    workdir = f"--workdir={FLAGS.workdir}"
    if isinstance(e, KeyboardInterrupt):
        msg, code = f"interrupted while {doing}: {_RERUN}", 130
    elif isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        where = f" ({e.filename})" if e.filename and str(e.filename) not in doing else ""
        msg = (
            f"{workdir}: {doing} failed{where}: {e.strerror or e}; free space or fix "
            f"permissions there, then {_RERUN}"
        )
        code = 1
    elif isinstance(e, (RunError, ConfigError)):  # a checkpoint's save or restore
        msg, code = f"{workdir}: {doing} failed: {e}", 1
    elif isinstance(e, UnreadableCheckpoint):
        msg = (
            f"{workdir}: {doing} failed: its last checkpoint is unreadable ({e}): delete "
            "that cell's .ckpt directory and rerun the same command (the cell starts over)"
        )
        code = 1
    elif isinstance(e, _CellError):
        msg, code = f"{workdir}: {e}", 1
    else:
        raise e
    if FLAGS.debug:
        import traceback

        traceback.print_exception(e)
    print(f"error: {' '.join(msg.split())}", file=sys.stderr)
    sys.exit(code)


def _run(c, methods, seeds, lambdas, cell_path, now, buffers) -> None:
    """Computes (or reuses) every cell, writes continual.json and the heat maps, and prints
    the table; `now["doing"]` says what it is doing, for an error's message; `buffers`:
    what `host_memory.reuse_cpu_buffers` did, recorded in the JSON."""
    import numpy as np

    from r1jax.train import continual

    bases = {}

    def base(seed):  # the shared base model of a seed, pretrained once per process
        if seed not in bases:
            now["doing"] = f"pretraining the base model of seed {seed}"
            bases[seed] = continual.pretrain_base(c, seed)
        return bases[seed]

    def cell(method, lam, seed):
        c_run, path, ckpt_dir = cell_path(method, lam, seed)
        if os.path.isfile(path):
            now["doing"] = f"reading the finished cell {path}"
            try:
                with open(path) as f:
                    return json.load(f)
            except ValueError as e:  # not what _write_json wrote (edited, or another tool's)
                raise _CellError(
                    f"the finished cell {path} is not readable JSON ({e}): delete it and rerun "
                    "the same command (that cell is computed again)"
                ) from e
        start = base(seed)
        now["doing"] = f"computing the cell {os.path.basename(path)[:-5]}"
        res = continual.run_method(c_run, method, seed, base=start, ckpt_dir=ckpt_dir)
        now["doing"] = f"writing {path}"
        _write_json(path, res)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return res

    def summary(runs):
        R = np.mean([r["R"] for r in runs], axis=0)
        out = {"R": R.tolist(), **continual.forgetting_metrics(R)}
        out["params"] = runs[0]["params"]
        out["stored_floats"] = runs[0]["stored_floats"]
        if "memory_examples" in runs[0]:  # replay: problems kept at the end
            out["memory_examples"] = runs[0]["memory_examples"]
        out["seconds"] = float(sum(r["seconds"] for r in runs))
        out["per_seed"] = [
            {k: r[k] for k in ("R", "acc", "diag", "bwt", "forgetting", "retention", "seconds")}
            | {"seed": s}
            for s, r in zip(seeds, runs)
        ]
        return out

    results = {
        "config": c.to_dict(),
        "seeds": seeds,
        "domains": list(c.domains),
        "select": FLAGS.select,
        "cpu_buffers": buffers,  # "on": XLA:CPU's step buffers reused (same numbers)
    }
    out_path = os.path.join(FLAGS.workdir, "continual.json")
    rows = []
    for method in methods:
        if method in continual.EWC_METHODS:
            sweep = []
            for lam in lambdas:
                s = summary([cell(method, lam, seed) for seed in seeds])
                sweep.append({"lambda": lam, **s})
            best = max(sweep, key=lambda s: (s[FLAGS.select], s["acc"]))
            best = dict(best, sweep_seconds=float(sum(s["seconds"] for s in sweep)))
            results[method] = {
                **best,
                "sweep": [
                    {
                        k: s[k]
                        for k in ("lambda", "acc", "bwt", "forgetting", "retention", "seconds")
                    }
                    | {"diag_mean": float(np.mean(np.diag(s["R"])))}
                    for s in sweep
                ],
            }
            rows += [(method, s["lambda"], s) for s in sweep]
        else:
            results[method] = summary([cell(method, None, seed) for seed in seeds])
            rows.append((method, None, results[method]))
        now["doing"] = f"writing {out_path}"
        _write_json(out_path, results)
        png = os.path.join(FLAGS.workdir, f"R_{method}.png")
        now["doing"] = f"writing {png}"
        _heatmap(
            png,
            f"{method}: accuracy after each task (seeds {','.join(map(str, seeds))})",
            results[method]["R"],
            list(c.domains),
        )
    header = (
        f"{'method':<12} {'lambda':>7} {'acc':>6} {'bwt':>7} {'forget':>7} {'retain':>7} "
        f"{'diag':>6} {'params':>9} {'seconds':>8}"
    )
    print(header)
    for method, lam, s in rows:
        chosen = "*" if lam is not None and results[method].get("lambda") == lam else " "
        print(
            f"{method:<12} {'' if lam is None else f'{lam:g}':>6}{chosen} {s['acc']:6.3f} "
            f"{s['bwt']:7.3f} {s['forgetting']:7.3f} {s['retention']:7.3f} "
            f"{s['diag']:6.3f} {s['params']:9d} {s['seconds']:8.1f}"
        )
    now["doing"] = "printing the table"
    print(f"wrote {out_path}")


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main, flags_parser=_parse_flags)
