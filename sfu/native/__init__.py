"""Compiled per-packet paths (C extension modules), each with a pure-Python twin.

`load("_name")` gives `sfu.native._name` when it was compiled
(`python -m sfu.native.build`, run by the install) and is not older than its
source, else None, and the caller keeps its pure-Python path.  Setting
`VISITROOM_NATIVE=0` makes every `load` return None (to compare the two
paths, or to rule the compiled code out).  Nothing here does I/O.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_CACHE: dict[str, ModuleType | None] = {}


def enabled() -> bool:
    return os.environ.get("VISITROOM_NATIVE", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def load(name: str) -> ModuleType | None:
    """The compiled module `sfu.native.<name>`, or None (not built, stale, or turned off)."""
    if not enabled():
        return None
    if name not in _CACHE:
        _CACHE[name] = _import(name)
    return _CACHE[name]


def _import(name: str) -> ModuleType | None:
    from sfu.native.build import HERE, stale

    source = HERE / f"{name}.c"
    if source.exists() and stale(source):
        return None  # edited since it was compiled: never run old code silently
    try:
        return importlib.import_module(f"sfu.native.{name}")
    except ImportError:
        return None
