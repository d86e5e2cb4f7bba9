"""BUILD declares one py_library per module and one py_test per test file (no drift)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(top, pred):
    out = set()
    for d, _, names in os.walk(os.path.join(ROOT, top)):
        if "__pycache__" in d:
            continue
        out |= {os.path.relpath(os.path.join(d, n), ROOT) for n in names if pred(n)}
    return out


def _build():
    with open(os.path.join(ROOT, "BUILD")) as f:
        return f.read()


def _srcs(text, rule):
    found = set()
    for m in re.finditer(rf"{rule}\((.*?)\n\)", text, re.S):
        found |= set(re.findall(r'srcs = \["([^"]+)"\]', m.group(1)))
    return found


def test_every_module_has_a_py_library():
    modules = _files("src/r1jax", lambda n: n.endswith(".py"))
    declared = _srcs(_build(), "py_library")
    assert modules - declared == set(), "modules missing from BUILD"
    assert declared - modules == set(), "BUILD names modules that do not exist"


def test_every_test_file_has_a_py_test():
    tests = _files("tests", lambda n: n.endswith("_test.py"))
    declared = _srcs(_build(), "py_test")
    assert tests - declared == set(), "test files missing from BUILD"
    assert declared - tests == set(), "BUILD names test files that do not exist"


def test_target_names_are_unique():
    names = re.findall(r'name = "([^"]+)"', _build())
    assert len(names) == len(set(names))
