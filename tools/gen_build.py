"""Regenerates BUILD: one py_library per module, one py_test per test file.

  python tools/gen_build.py

Deps come from each file's real imports (every `import` / `from ... import` statement,
read with `ast`, function-level ones included): first-party modules as `:r1jax_*`
targets, third-party packages as `requirement(...)` by their PyPI names (`THIRD_PARTY`).
An import of a third-party package that `THIRD_PARTY` does not know is an error, so a
new dependency is declared on purpose. `tests/build_test.py` regenerates the text and
fails when BUILD differs (a missing or stale dep).
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Top-level import name -> PyPI requirement name.
THIRD_PARTY = {
    "absl": "absl-py",
    "etils": "etils",
    "flax": "flax",
    "jax": "jax",
    "jinja2": "jinja2",
    "jraph": "jraph",
    "matplotlib": "matplotlib",
    "ml_collections": "ml-collections",
    "ml_dtypes": "ml-dtypes",
    "mpmath": "mpmath",
    "numpy": "numpy",
    "optax": "optax",
    "orbax": "orbax-checkpoint",
    "pytest": "pytest",
    "safetensors": "safetensors",
    "sympy": "sympy",
    "tensorboardX": "tensorboardX",
    "tokenizers": "tokenizers",
    "torch": "torch",
    "transformers": "transformers",
    "hypothesis": "hypothesis",
    "filelock": "filelock",
}
FIRST_PARTY = "r1jax"
LOCAL_TEST_HELPERS = {"conftest"}  # tests/ modules imported by tests (not packages)


def _files(top: str, pred) -> list[str]:
    out = []
    for d, _, names in os.walk(os.path.join(ROOT, top)):
        if "__pycache__" in d:
            continue
        out += [os.path.relpath(os.path.join(d, n), ROOT) for n in names if pred(n)]
    return sorted(out)


def _target(module_path: str) -> str:
    name = module_path[len("src/r1jax/") : -3].replace("/", "_").replace("__init__", "init")
    return ("r1jax_" + name).replace("__", "_")


def _module_file(dotted: str, libs: dict[str, str]) -> str | None:
    parts = dotted.split(".")
    for cand in ("src/" + "/".join(parts) + ".py", "src/" + "/".join(parts) + "/__init__.py"):
        if cand in libs:
            return cand
    return None


def imports_of(path: str, libs: dict[str, str]) -> tuple[set[str], set[str]]:
    """(first-party BUILD targets, third-party requirement names) that `path` imports."""
    tree = ast.parse(open(os.path.join(ROOT, path)).read(), path)
    first, third = set(), set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for dotted in names:
            top = dotted.split(".")[0]
            if top == FIRST_PARTY:
                f = _module_file(dotted, libs)
                if f is not None and f != path:
                    first.add(libs[f])
            elif top in THIRD_PARTY:
                third.add(THIRD_PARTY[top])
            elif top not in sys.stdlib_module_names and top not in LOCAL_TEST_HELPERS:
                raise SystemExit(
                    f"{path}: imports {top!r}, unknown to tools/gen_build.py THIRD_PARTY: add "
                    "its PyPI name there (and to pyproject.toml)"
                )
    return first, third


def _deps(first, third) -> str:
    items = [f'":{d}"' for d in sorted(first)] + [f'requirement("{r}")' for r in sorted(third)]
    return "[" + ", ".join(items) + "]"


def compute() -> str:
    """The BUILD text for the current tree."""
    mods = _files("src/r1jax", lambda n: n.endswith(".py"))
    tests = _files("tests", lambda n: n.endswith("_test.py"))
    libs = {m: _target(m) for m in mods}
    out = [
        "# Bazel targets: one py_library per module, one py_test per test file; deps from",
        "# the real imports (tools/gen_build.py). tests/build_test.py fails on drift.",
        'load("@rules_python//python:defs.bzl", "py_library", "py_test")',
        'load("@pip//:requirements.bzl", "requirement")',
        "",
        'package(default_visibility = ["//visibility:public"])',
        "",
    ]
    for m in mods:
        first, third = imports_of(m, libs)
        out += [
            "py_library(",
            f'    name = "{libs[m]}",',
            f'    srcs = ["{m}"],',
            '    imports = ["src"],',
            f"    deps = {_deps(first, third)},",
            ")",
            "",
        ]
    for t in tests:
        first, third = imports_of(t, libs)
        out += [
            "py_test(",
            f'    name = "{t[len("tests/") : -3].replace("/", "_")}",',
            f'    srcs = ["{t}"],',
            f'    main = "{t}",',
            f"    deps = {_deps(first, third | {'pytest'})},",
            ")",
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    with open(os.path.join(ROOT, "BUILD"), "w") as f:
        f.write(compute())
