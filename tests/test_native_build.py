"""sfu/native's build: real compiles with this interpreter's compiler, staleness, the switch."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

import sfu.native
from sfu.native import build

SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *twice(PyObject *self, PyObject *arg) {
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(2 * v);
}
static PyMethodDef methods[] = {{"twice", twice, METH_O, "2 * v"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit__probe(void) { return PyModule_Create(&module); }
"""


def test_a_module_is_compiled_with_this_interpreters_compiler_and_runs(tmp_path: Path) -> None:
    (tmp_path / "_probe.c").write_text(SOURCE)
    built = build.build_all(tmp_path, quiet=True)
    assert built == [build.target(tmp_path / "_probe.c")]
    spec = importlib.util.spec_from_file_location("_probe", built[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.twice(21) == 42
    with pytest.raises(TypeError):
        module.twice("x")


def test_an_edited_source_is_stale_until_compiled_again(tmp_path: Path) -> None:
    source = tmp_path / "_probe.c"
    source.write_text(SOURCE)
    assert build.stale(source)
    build.build_all(tmp_path, quiet=True)
    assert not build.stale(source)
    earlier = time.time() - 10  # the source edited after its module was compiled
    os.utime(build.target(source), (earlier, earlier))
    assert build.stale(source)
    assert build.build_all(tmp_path, quiet=True) == [build.target(source)]
    assert not build.stale(source)


def test_a_source_that_does_not_compile_is_reported_and_nothing_is_left(tmp_path: Path) -> None:
    (tmp_path / "_broken.c").write_text("this is not C;\n")
    assert build.build_all(tmp_path, quiet=True) == []
    assert not build.target(tmp_path / "_broken.c").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_every_module_of_the_package_is_compiled_and_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The install (scripts/install.sh, hatch_build.py) compiled each sfu/native/_*.c."""
    monkeypatch.setenv("VISITROOM_NATIVE", "1")  # also when the suite runs the pure twins
    for source in build.sources():
        assert not build.stale(source), f"{source.name}: run python -m sfu.native.build"
        assert sfu.native.load(source.stem) is not None, source.name


def test_visitroom_native_0_turns_every_module_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISITROOM_NATIVE", "0")
    assert not sfu.native.enabled()
    for source in build.sources():
        assert sfu.native.load(source.stem) is None
    monkeypatch.setenv("VISITROOM_NATIVE", "1")
    assert sfu.native.enabled()


def test_a_part_whose_setup_is_refused_stays_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """`configured`: a setup that raises (a class changed under the C code) gives None, once."""
    monkeypatch.setenv("VISITROOM_NATIVE", "1")
    monkeypatch.setattr(sfu.native, "_SET_UP", {})
    calls: list[str] = []

    def refuse(module: object) -> None:
        calls.append("refuse")
        raise TypeError("Consumer: _seq is no longer a slot")

    def accept(module: object) -> None:
        calls.append("accept")

    assert sfu.native.configured("_gcc", "probe-part", refuse) is None
    assert sfu.native.configured("_gcc", "probe-part", refuse) is None
    assert sfu.native.configured("_gcc", "other-part", accept) is sfu.native.load("_gcc")
    assert sfu.native.configured("_gcc", "other-part", accept) is sfu.native.load("_gcc")
    assert calls == ["refuse", "accept"]  # each setup ran once
