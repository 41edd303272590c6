"""Run a test on both twins of a compiled path: sfu/native's C module and the Python.

`gcc_twin` (a fixture: import it into the test module) runs the test twice,
with VISITROOM_NATIVE=0 (the pure-Python path) and =1 with `sfu.native._gcc`
loaded; objects built during the test pick their twin when constructed
(sfu.native.load), and the feedback parser's choice, made at import
(sfu.packet.rtcp._GCC), is switched too.  A missing compiled module fails the compiled run:
CI's install compiles it (python -m sfu.native.build).
"""

from __future__ import annotations

from types import ModuleType

import pytest

import sfu.native
import sfu.packet.rtcp


def compiled_gcc() -> ModuleType:
    """`sfu.native._gcc`, or the test fails (it must have been compiled)."""
    module = sfu.native.load("_gcc")
    if module is None:
        pytest.fail("sfu/native/_gcc.c is not compiled: run python -m sfu.native.build")
    return module


@pytest.fixture(params=["python", "compiled"])
def gcc_twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """'python' or 'compiled': the twin the objects made in this test use."""
    monkeypatch.setenv("VISITROOM_NATIVE", "0" if request.param == "python" else "1")
    if request.param == "compiled":
        monkeypatch.setattr(sfu.packet.rtcp, "_GCC", compiled_gcc())
    else:
        assert sfu.native.load("_gcc") is None
        monkeypatch.setattr(sfu.packet.rtcp, "_GCC", None)  # (chosen at import)
    return str(request.param)
