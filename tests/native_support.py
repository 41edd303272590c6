"""Run a test on both twins of a compiled path: pure Python and sfu.native (C).

`native_path` is "python" (VISITROOM_NATIVE=0: every `sfu.native.load` says
None) or "compiled" (the module must be there: the install builds it, and a
test that silently ran Python twice would prove nothing).
"""

from __future__ import annotations

import pytest

from sfu import native

TWINS = ("python", "compiled")


@pytest.fixture(params=TWINS)
def native_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    kind: str = request.param
    monkeypatch.setenv("VISITROOM_NATIVE", "1" if kind == "compiled" else "0")
    if kind == "compiled":
        assert native.load("_fanout") is not None, "run `python -m sfu.native.build` first"
    return kind
