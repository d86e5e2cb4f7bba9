"""One clear line for every bad command line: flag, config and workdir errors explained.

The entry points (`r1jax.main`) print `error: <one line>` and exit with code 2 for bad
input; the line names what the user wrote (`--config.rl.weight_decay=-5`,
`--workdir=...`) and the fix. Kept import-light (no JAX): it runs before the trainer.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import tempfile

from r1jax.errors import ConfigError

# What r1jax-train writes into a workdir (anything else there is the user's or another
# program's): a directory that has none of these markers but holds files is refused.
RUN_MARKERS = ("config.json", "checkpoints")
_IGNORED = (".", "_")  # hidden and private entries never make a directory "foreign"


def default_config_file() -> str:
    return os.path.join(os.path.dirname(__file__), "configs", "arith_tiny.py")


def default_leaves() -> dict:
    from r1jax.configs import arith_tiny

    out = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "task_kwargs":
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(arith_tiny.get_config().to_dict())
    return out


def overrides(argv) -> list[tuple[str, str]]:
    """(dotted field, raw value) of every `--config.FIELD=VALUE` in argv."""
    out = []
    for a in argv:
        if a.startswith("--config.") and "=" in a:
            name, _, value = a[len("--config.") :].partition("=")
            out.append((name, value))
    return out


def unknown_override(argv) -> str | None:
    """A message for the first `--config.FIELD` the embedded default does not have
    (`task_kwargs.*` belong to the task, which checks them), with the nearest field."""
    known = list(default_leaves())
    for name, _ in overrides(argv):
        if name in known or name.startswith("task_kwargs."):
            continue
        near = difflib.get_close_matches(name, known, n=1)
        hint = f": did you mean --config.{near[0]}?" if near else ": drop it"
        return (
            f"--config.{name} is not a config field{hint} (the fields and their meaning "
            f"are in {default_config_file()})"
        )
    return None


def _kind(default) -> str:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (tuple, list)):
        return "a tuple, e.g. (0.1, 0.8, 0.1)"
    return type(default).__name__


def flag_error(e: Exception, argv) -> str:
    """One line for an absl flag error: config overrides and config files explained."""
    text = str(e)
    m = re.match(r"flag --config\.([\w.]+)=(.*?): (.*)", text, re.DOTALL)
    if m:
        name, value, why = m.groups()
        default = default_leaves().get(name)
        if default is None:
            return f"--config.{name}={value}: {_last_line(why)}"
        return (
            f"--config.{name}={value} is invalid: must be {_kind(default)} "
            f"(the default is {default!r})"
        )
    m = re.match(r"flag --config=(.*?): (.*)", text, re.DOTALL)
    if m:
        return config_file_error(m.group(1), m.group(2))
    return _last_line(text) if "Traceback" in text else " ".join(text.split())


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else str(text)


def config_file_error(path: str, why: str) -> str:
    last = "file not found" if "No such file" in why else _last_line(why)
    return (
        f"--config={path} could not be loaded ({last}): pass an experiment config file "
        "(path[:variant]), e.g. --config=experiments/arith_tiny.py:smoke"
    )


def config_load_error(e: Exception, argv) -> str:
    """One line for an error raised while the config file and its overrides load."""
    unknown = unknown_override(argv)
    if unknown and isinstance(e, (KeyError, AttributeError)):
        return unknown
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
    given = [a[len("--config=") :] for a in argv if a.startswith("--config=")]
    given = given[-1] if given else None  # absl keeps the last
    if (
        "config file" in text
        or "earlier failure to load" in text
        or isinstance(e, (OSError, SyntaxError))
    ):
        return config_file_error(given or default_config_file(), text)
    if unknown:
        return unknown
    if isinstance(e, (KeyError, AttributeError)):
        task_arg = _unknown_task_kwarg(text, argv)
        if task_arg:
            return task_arg
    return (
        f"bad --config or --config.* override: {' '.join(_last_line(text).split())} "
        f"(the fields are in {default_config_file()})"
    )


def _unknown_task_kwarg(text: str, argv) -> str | None:
    """A message for a `--config.task_kwargs.NAME` override that the config file's
    `task_kwargs` lacks (ml_collections' KeyError text `'NAME'`, maybe with its "Did you
    mean" hint); None when `text` is about something else."""
    for name, _ in overrides(argv):
        key = name[len("task_kwargs.") :] if name.startswith("task_kwargs.") else ""
        if not key or not re.search(rf"'{re.escape(key)}\\?'", text):
            continue
        near = re.search(r'Did you mean "([^"]+)"', text)
        hint = f": did you mean --config.task_kwargs.{near.group(1)}?" if near else ""
        return (
            f"--config.{name} is not among the config file's task_kwargs{hint} (the task "
            "arguments a command line can set are the ones the config file lists; add "
            "others to its task_kwargs)"
        )
    return None


def as_written(e: ConfigError, argv) -> str:
    """The message of `e`, quoting the field as the user wrote it: `--config.FIELD` when
    it came from the command line."""
    msg = str(e)
    field = getattr(e, "field", None)
    if field and any(name == field for name, _ in overrides(argv)):
        msg = msg.replace(f"config.{field}", f"--config.{field}", 1)
    return msg


def check_can_create(path: str, flag: str, kind: str, *, probe_write: bool = True) -> str:
    """Raises ConfigError unless a `kind` ("directory", "file") can be made in the
    directory `path`: `path`, or its nearest existing parent (returned), must be a
    directory where this process can create entries. Permission bits are not the whole
    answer (root passes `os.access` everywhere, yet nothing can be made in /proc, /sys or
    on a read-only mount), so a hidden temporary entry is made there and removed;
    `probe_write=False` (a command that only reads, e.g. `--plan`) skips that write."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(
            f"{flag}: {probe} is a file, so no {kind} can be made below it: pass a {kind} path"
        )
    if not probe_write:
        return probe
    name = flag.split("=", 1)[0]
    made = None
    try:
        if kind == "directory":
            made = tempfile.mkdtemp(prefix=".r1jax-probe-", dir=probe)
        else:
            fd, made = tempfile.mkstemp(prefix=".r1jax-probe-", dir=probe)
            os.close(fd)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return probe  # a full disk is no bad command line: the run reports it
        there = kind == "directory" and probe == os.path.abspath(path)  # it exists already
        raise ConfigError(
            f"{flag}{': nothing can be written in it' if there else ' cannot be created'}: "
            f"{probe} refuses new entries ({e.strerror or e}): pass a {name} in a directory "
            "this user can write"
        ) from None
    finally:
        if made is not None:
            try:
                (os.rmdir if kind == "directory" else os.remove)(made)
            except OSError:
                pass  # e.g. an append-only directory: a hidden entry stays, harmless
    return probe


def remote_workdir_error(flag: str) -> str:
    """The message for a `--workdir` URL (gs://...): the run's files (config, metrics,
    results) are written through the local file system, which would make a local folder
    named after the URL's scheme (`gs:`) instead."""
    scheme = flag.partition("=")[2].partition("://")[0]
    return (
        f"{flag}: URLs are not supported (the files are written through the local file "
        f"system, which would make a local folder {scheme}:): pass a local directory, or "
        "mount the bucket (e.g. with gcsfuse) and pass the mount's path"
    )


def check_workdir(path: str, *, probe_write: bool = True) -> None:
    """Raises ConfigError unless `path` can hold an r1jax run: a new directory (its
    nearest existing parent writable), an empty one, or an earlier run's workdir.
    `probe_write=False`: writability is not tested (`check_can_create`)."""
    flag = f"--workdir={path}"
    if not path:
        raise ConfigError(f"{flag}: empty; pass a directory for the run's outputs")
    if "://" in path:
        raise ConfigError(remote_workdir_error(flag))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(
            f"{flag} is a file, not a directory: pass a directory path (created if missing)"
        )
    probe = check_can_create(path, flag, "directory", probe_write=probe_write)
    if probe != os.path.abspath(path):
        return  # the workdir does not exist yet
    entries = [n for n in os.listdir(path) if not n.startswith(_IGNORED) and not n.endswith(".log")]
    if not entries:
        return
    if not any(m in entries for m in RUN_MARKERS):
        shown = ", ".join(sorted(entries)[:3])
        raise ConfigError(
            f"{flag} holds files r1jax did not write ({shown}{', ...' if len(entries) > 3 else ''}): "
            "pass a new or empty directory, or the workdir of an r1jax-train run to resume it"
        )
    cfg = os.path.join(path, "config.json")
    if os.path.exists(cfg):
        try:
            with open(cfg) as f:
                data = json.load(f)
            ours = isinstance(data, dict) and "rl" in data and "task" in data
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise ConfigError(
                f"{flag}: its config.json is not an r1jax-train config (another program's "
                "files?): pass a new or empty directory, or an r1jax-train workdir"
            )
