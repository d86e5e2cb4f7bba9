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


def _gen_build():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_build", os.path.join(ROOT, "tools", "gen_build.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_deps_are_the_real_imports():
    """BUILD equals what tools/gen_build.py derives from every file's imports: a first-party
    import without its dep, or a third-party one without its requirement, fails here."""
    assert _build() == _gen_build().compute(), "BUILD is stale: run python tools/gen_build.py"


def test_deps_see_function_level_and_third_party_imports(tmp_path):
    gen = _gen_build()
    libs = {"src/r1jax/a.py": "r1jax_a", "src/r1jax/b/__init__.py": "r1jax_b_init"}
    src = tmp_path / "x.py"
    src.write_text(
        "import numpy as np\nimport r1jax.a\n\ndef f():\n    from r1jax.b import c\n"
        "    import orbax.checkpoint\n"
    )
    first, third = gen.imports_of(str(src), libs)
    assert first == {"r1jax_a", "r1jax_b_init"} and third == {"numpy", "orbax-checkpoint"}
    src.write_text("import r1jaxx\n")  # "jax" inside another name is not jax
    try:
        gen.imports_of(str(src), libs)
    except SystemExit as e:
        assert "r1jaxx" in str(e)
    else:
        raise AssertionError("an unknown third-party import must fail")
