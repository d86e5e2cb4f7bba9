"""Regenerates BUILD: one py_library per module, one py_test per test file.

  python tools/gen_build.py

Deps are read from each file's r1jax imports; tests/build_test.py checks the result.
"""

import os, re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
mods = []
tests = []
for d, _, ns in os.walk(ROOT + "/src/r1jax"):
    if "__pycache__" in d:
        continue
    mods += [os.path.relpath(os.path.join(d, n), ROOT) for n in ns if n.endswith(".py")]
for d, _, ns in os.walk(ROOT + "/tests"):
    if "__pycache__" in d:
        continue
    tests += [os.path.relpath(os.path.join(d, n), ROOT) for n in ns if n.endswith("_test.py")]


def name(p, strip):
    p = p[len(strip) : -3].replace("/", "_")
    return p


deps_ext = {"jax": 'requirement("jax")'}
out = [
    "# Bazel targets: one py_library per module, one py_test per test file.",
    "# tests/build_test.py fails if this file and the tree drift apart.",
    'load("@rules_python//python:defs.bzl", "py_library", "py_test")',
    'load("@pip//:requirements.bzl", "requirement")',
    "",
    'package(default_visibility = ["//visibility:public"])',
    "",
]
EXT = ['requirement("jax")', 'requirement("flax")', 'requirement("optax")', 'requirement("numpy")']
libnames = {}
for m in sorted(mods):
    n = "r1jax_" + name(m, "src/r1jax/")
    n = n.replace("___init__", "_init")
    libnames[m] = n


def imports_of(path):
    src = open(os.path.join(ROOT, path)).read()
    found = set()
    for mm in re.findall(r"^\s*(?:from|import) (r1jax[\w.]*)", src, re.M):
        parts = mm.split(".")
        cand = "src/" + "/".join(parts) + ".py"
        cand2 = "src/" + "/".join(parts) + "/__init__.py"
        for c in (cand, cand2):
            if c in libnames and c != path:
                found.add(libnames[c])
    for mm in re.findall(r"^\s*from (r1jax[\w.]*) import ([\w, ()\n]+)", src, re.M):
        base, names = mm
        for nm in re.findall(r"\w+", names):
            c = "src/" + "/".join(base.split(".") + [nm]) + ".py"
            if c in libnames and c != path:
                found.add(libnames[c])
    return sorted(found)


for m in sorted(mods):
    deps = [f'":{d}"' for d in imports_of(m)]
    out.append("py_library(")
    out.append(f'    name = "{libnames[m]}",')
    out.append(f'    srcs = ["{m}"],')
    out.append('    imports = ["src"],')
    out.append(
        "    deps = ["
        + ", ".join(
            deps + ['requirement("jax")'] if "jax" in open(os.path.join(ROOT, m)).read() else deps
        )
        + "],"
    )
    out.append(")")
    out.append("")
for t in sorted(tests):
    n = name(t, "tests/")
    deps = [f'":{d}"' for d in imports_of(t)]
    out.append("py_test(")
    out.append(f'    name = "{n}",')
    out.append(f'    srcs = ["{t}"],')
    out.append(f'    main = "{t}",')
    out.append("    deps = [" + ", ".join(deps + ['requirement("pytest")']) + "],")
    out.append(")")
    out.append("")
open(ROOT + "/BUILD", "w").write("\n".join(out))
