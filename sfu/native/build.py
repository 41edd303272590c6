"""Compile sfu/native's C modules in place, with the interpreter's own compiler settings.

Each `sfu/native/_NAME.c` is one CPython extension module, `sfu.native._NAME`,
written next to its source (`_NAME.cpython-311-x86_64-linux-gnu.so`).  The
install (`scripts/install.sh`, through the hatchling hook in `hatch_build.py`)
runs this; so can a developer after editing a `.c` file:

    python -m sfu.native.build          # compile what is missing or older than its source
    python -m sfu.native.build --force  # compile everything again

It needs a C compiler and the interpreter's headers (Debian: `gcc`, and the
`-dev` package of the Python in use); without them nothing is built, a line
says so, and the media plane runs its pure-Python paths
(docs/media-plane.md, "Compiled per-packet paths").  This file imports
nothing of visitroom: the build hook loads it by path before the package is
installed.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
# -ffp-contract=off: no fused multiply-add, so floating point gives exactly what
# the same operations give in Python (the estimator's golden outputs rely on it).
FLAGS = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing", "-Wall"]


def sources(directory: Path = HERE) -> list[Path]:
    return sorted(directory.glob("_*.c"))


def target(source: Path) -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return source.with_name(source.stem + suffix)


def stale(source: Path) -> bool:
    """Is the compiled module missing or older than its source (or a header beside it)?"""
    out = target(source)
    if not out.exists():
        return True
    newest = max([source.stat().st_mtime] + [h.stat().st_mtime for h in source.parent.glob("*.h")])
    return out.stat().st_mtime < newest


def compiler() -> list[str]:
    cc = sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def build(source: Path) -> tuple[bool, str]:
    """Compile one module; (ok, what the compiler said)."""
    out = target(source)
    tmp = out.with_name(out.name + ".tmp")
    include = sysconfig.get_paths()["include"]
    command = [*compiler(), *FLAGS, f"-I{include}", str(source), "-o", str(tmp)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{command[0]}: {exc}"
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False, done.stderr.strip() or done.stdout.strip()
    tmp.replace(out)  # atomic: a running process keeps the file it mapped
    return True, done.stderr.strip()


def build_all(directory: Path = HERE, force: bool = False, quiet: bool = False) -> list[Path]:
    """Compile every stale module; the compiled files (all of them, built now or before)."""
    built = []
    for source in sources(directory):
        if force or stale(source):
            ok, said = build(source)
            if not ok:
                print(
                    f"sfu/native: {source.name} not compiled (pure-Python path used): {said}",
                    file=sys.stderr,
                )
                continue
            if said:
                print(said, file=sys.stderr)
            if not quiet:
                print(f"sfu/native: compiled {target(source).name}", file=sys.stderr)
        if target(source).exists() and not stale(source):
            built.append(target(source))
    return built


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    wanted = sources()
    built = build_all(force="--force" in args)
    return 0 if len(built) == len(wanted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
