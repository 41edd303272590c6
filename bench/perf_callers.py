"""Who spends a server's CPython time: a perf profile with call graphs, by caller.

`perf report --sort dso` says how much of a process's CPU is in libpython, not
on whose behalf.  This reads a `perf record -g --call-graph dwarf` profile
(`perf script`), and for every sample whose innermost frame is in libpython
walks out to the first frame that is not: a function of one of our compiled
modules (`sfu/native/_*.so`, e.g. `forward_plain` reading a consumer's ints)
or, when the interpreter's eval loop comes first, "(interpreted Python)" (for
which py-spy says which Python).  Inlined frames belong to the library of the
function they were inlined into; build the modules with `-g` for their
static helpers to show by name (it does not change the code gcc makes at -O2).

    perf record -g --call-graph dwarf,16384 -e cpu-clock -F 999 -p PID -o out.perf -- sleep 20
    python bench/perf_callers.py out.perf

docs/benchmarks.md, "The meeting's CPython time by caller", has how it was used.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence

Frame = tuple[str, str]  # (symbol, library file name)

FRAME = re.compile(r"\s*[0-9a-f]+ (.*) \((.*)\)$")
OURS = ("_fanout", "_ingress", "_recv", "_rtp", "_stats", "_gcc")
INTERPRETED = "(interpreted Python)"
# Small helpers whose callers say more than they do.
HELPERS = frozenset(
    {
        *("as_ll", "Py_DECREF", "Py_XDECREF", "Py_INCREF", "Py_XINCREF", "slot_add"),
        *("slot_set_long", "call1", "call2", "call3", "done", "bump", "needed", "less"),
    }
)


def library(path: str) -> str:
    """A short name: kernel, libpython, or the file's stem (`_fanout`, `libc`, ...)."""
    if path.startswith("[kernel"):
        return "kernel"
    name = path.rsplit("/", 1)[-1]
    if name.startswith("libpython"):
        return "libpython"
    return name.split(".")[0]


def parse(lines: Iterable[str]) -> list[list[Frame]]:
    """`perf script -F ip,sym,dso` output: one list of frames per sample, innermost first,
    an inlined frame given the library of the frame it was inlined into."""
    samples: list[list[Frame]] = []
    current: list[Frame] = []
    for line in lines:
        match = FRAME.match(line)
        if match:
            current.append((match.group(1), match.group(2)))
        elif not line.strip() and current:
            samples.append(current)
            current = []
    if current:
        samples.append(current)
    for frames in samples:
        outer = "?"
        for i in range(len(frames) - 1, -1, -1):
            symbol, where = frames[i]
            if where == "inlined":
                frames[i] = (symbol, outer)
            else:
                outer = where
    return samples


def caller(frames: Sequence[Frame]) -> str:
    """For a sample in libpython: the first frame outside it, or INTERPRETED."""
    for symbol, where in frames:
        lib = library(where)
        if lib == "libpython":
            if symbol.startswith("_PyEval_EvalFrameDefault"):
                return INTERPRETED
            continue
        return f"{lib}:{symbol}"
    return "?"


def named_caller(frames: Sequence[Frame]) -> str:
    """Like `caller`, past our small helpers to the function that called them."""
    ours: list[str] = []
    for symbol, where in frames:
        lib = library(where)
        if lib == "libpython" and symbol.startswith("_PyEval_EvalFrameDefault") and not ours:
            return INTERPRETED
        if lib in OURS:
            ours.append(f"{lib}:{symbol}")
    named = [f for f in ours if f.split(":", 1)[1] not in HELPERS]
    return named[0] if named else (ours[0] if ours else caller(frames))


def report(samples: list[list[Frame]], top: int) -> str:
    total = len(samples) or 1
    out = [f"{len(samples)} samples"]

    def table(title: str, counts: Counter[str]) -> None:
        out.append(f"\n{title}")
        out.extend(f"{100 * n / total:5.1f}%  {what}" for what, n in counts.most_common(top))

    in_python = [s for s in samples if s and library(s[0][1]) == "libpython"]
    table("share of all samples by library", Counter(library(s[0][1]) for s in samples if s))
    table("libpython, by its nearest caller", Counter(caller(s) for s in in_python))
    table(
        "libpython, by the compiled function behind it (helpers skipped)",
        Counter(named_caller(s) for s in in_python),
    )
    inclusive: Counter[str] = Counter()
    for frames in samples:
        inclusive.update({f"{library(w)}:{sym}" for sym, w in frames if library(w) in OURS})
    table("compiled functions on the stack (inclusive)", inclusive)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("perf_data")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    script = subprocess.run(
        ["perf", "script", "-i", args.perf_data, "-F", "ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    )
    print(report(parse(script.stdout.splitlines()), args.top))


if __name__ == "__main__":
    main()
