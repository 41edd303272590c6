"""The impaired viewer's bottleneck, read while a scenario runs: the tbf qdisc's counters.

`LinkSampler` reads `tc -s -j qdisc show dev LINK` (the host's end of the lab's
veth, where the downlink cap is) every `every_s` in a thread of its own and
keeps `[t, bytes sent, packets sent, drops, backlog bytes]` rows, `t` in s on the
caller's clock (monotonic, minus `start`).  The counters restart when the qdisc
is replaced (a cap change), so `deltas` turns them into per-interval amounts
that never go negative.  What a freeze was (bench/netlab_trace.py) needs the
drops: a key frame overflowing the tbf queue is dropped there, not in the SFU.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from types import TracebackType
from typing import Any

__all__ = ["LinkSampler", "deltas", "read_qdisc"]


def read_qdisc(link: str) -> tuple[int, int, int, int] | None:
    """(bytes, packets, drops, backlog bytes) of `link`'s root qdisc; None if unreadable."""
    try:
        out = subprocess.run(
            ["tc", "-s", "-j", "qdisc", "show", "dev", link],
            capture_output=True,
            text=True,
            check=True,
            timeout=2,
        ).stdout
        rows = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    root = next((r for r in rows if r.get("root")), None)
    if root is None:
        return None
    return (
        int(root.get("bytes", 0)),
        int(root.get("packets", 0)),
        int(root.get("drops", 0)),
        int(root.get("backlog", 0)),
    )


class LinkSampler:
    """Samples `link`'s root qdisc every `every_s` until closed (module doc)."""

    def __init__(self, link: str, start: float, every_s: float = 0.1) -> None:
        self.link = link
        self.start = start
        self.every_s = every_s
        self.rows: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netlab-link", daemon=True)

    def __enter__(self) -> LinkSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            read = read_qdisc(self.link)
            if read is not None:
                self.rows.append([round(time.monotonic() - self.start, 3), *read])
            self._stop.wait(self.every_s)


def deltas(rows: list[list[float]]) -> list[dict[str, Any]]:
    """Per interval between two readings: `t` (its end), kbit/s sent, packets dropped and
    the backlog at its end; a counter that went down (the qdisc was replaced) counts
    from zero."""
    out: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(rows):
        span = max(1e-3, after[0] - before[0])
        sent = after[1] - before[1] if after[1] >= before[1] else after[1]
        dropped = after[3] - before[3] if after[3] >= before[3] else after[3]
        out.append(
            {
                "t": after[0],
                "kbps": round(sent * 8 / span / 1000),
                "drops": int(dropped),
                "backlog": int(after[4]),
            }
        )
    return out
