"""Compiled per-packet paths (C extension modules), each with a pure-Python twin.

`load("_name")` gives `sfu.native._name` when it was compiled
(`python -m sfu.native.build`, run by the install) and is not older than its
source, else None, and the caller keeps its pure-Python path.  Setting
`VISITROOM_NATIVE=0` makes every `load` return None (to compare the two
paths, or to rule the compiled code out).  Nothing here does I/O.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from types import ModuleType

logger = logging.getLogger(__name__)
_CACHE: dict[str, ModuleType | None] = {}
_SET_UP: dict[tuple[str, str], bool] = {}


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


def configured(name: str, part: str, setup: Callable[[ModuleType], None]) -> ModuleType | None:
    """`load(name)` once `setup(module)` ran for `part` (once per process), else None.

    `setup` tells the module the Python classes whose slots it reads; if it
    refuses them (TypeError/AttributeError: a class changed under it), the
    compiled `part` is not used, logged once, and its caller keeps Python.
    """
    module = load(name)
    if module is None:
        return None
    key = (name, part)
    if key not in _SET_UP:
        try:
            setup(module)
            _SET_UP[key] = True
        except (TypeError, AttributeError) as exc:
            logger.warning("compiled %s of %s not used: %s", part, name, exc)
            _SET_UP[key] = False
    return module if _SET_UP[key] else None


def _import(name: str) -> ModuleType | None:
    from sfu.native.build import HERE, stale

    source = HERE / f"{name}.c"
    if source.exists() and stale(source):
        return None  # edited since it was compiled: never run old code silently
    try:
        return importlib.import_module(f"sfu.native.{name}")
    except ImportError:
        return None
