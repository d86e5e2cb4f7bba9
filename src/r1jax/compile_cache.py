"""JAX's persistent compilation cache, on by default for the command-line tools.

Compiling the RL iteration of a real model takes minutes on an accelerator; with the
cache a resumed run, a second evaluation or a restart after a crash loads the compiled
executables from disk instead (``r1jax-train --compile_cache=...``, ``r1jax-eval``).

Where: ``--compile_cache=PATH`` if given, else ``$R1JAX_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/r1jax/jax/<jax build>-<cpu fingerprint>`` (under ``~/.cache``). ``off``
(or an empty value) disables it. JAX keys entries on the program, the devices and the
compiler version; the default folder adds this machine's instruction set and the exact
jax/jaxlib build, because compiled CPU code is specific to both (XLA:CPU refuses, or
worse, an executable compiled for another CPU type). Delete the folder to reclaim space. Every compiled program is kept, however quickly it compiled (the many small
programs of a run add up), unless ``min_compile_seconds`` says otherwise.
"""

from __future__ import annotations

import os

ENV = "R1JAX_COMPILE_CACHE"
OFF = ("", "off", "none", "0", "false")

__all__ = ["ENV", "default_dir", "enable", "resolve"]


def _machine() -> str:
    """A short fingerprint of this machine's instruction set and the JAX build: compiled
    CPU code is specific to both, and a home folder may be shared by machines of several
    CPU types (an executable built with AVX-512 must never load on an AVX2 machine)."""
    import hashlib
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    try:
        from importlib.metadata import version

        build = f"jax-{version('jax')}-jaxlib-{version('jaxlib')}"
    except Exception:  # noqa: BLE001  (metadata missing: the key still has the CPU)
        build = "jax-unknown"
    digest = hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:12]
    return f"{build}-{platform.machine()}-{digest}"


def default_dir() -> str:
    """``$XDG_CACHE_HOME/r1jax/jax/<jax build>-<cpu fingerprint>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "r1jax", "jax", _machine())


def resolve(flag: str | None) -> str | None:
    """The cache folder for a ``--compile_cache`` value (``None``: not given), or ``None``
    when the cache is off."""
    value = flag if flag is not None else os.environ.get(ENV)
    if value is None:
        return default_dir()
    if value.strip().lower() in OFF:
        return None
    return os.path.abspath(os.path.expanduser(value))


def enable(flag: str | None = None, min_compile_seconds: float = 0.0) -> str | None:
    """Points JAX's persistent compilation cache at ``resolve(flag)`` (creating the
    folder); returns the folder, or ``None`` if the cache is off. Call it before the
    first compilation. A folder that cannot be created raises ``OSError``."""
    import jax

    path = resolve(flag)
    if path is None:  # off, also when JAX_COMPILATION_CACHE_DIR would turn it on
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
