"""Event-loop stall watch for `visitroom serve`, loaded as `sitecustomize` (bench only).

uvloop has no slow-callback log, so this measures from the side, cheaply:

- a thread asks the loop for a callback every `LOOPWATCH_PERIOD_MS` (10 ms)
  with `call_soon_threadsafe` and records how long it waited to run: the
  time a datagram arriving at that moment waits for the loop (the callback
  running then and those queued before it);
- `gc.callbacks` time every collection, per generation;
- a few named callbacks are wrapped and timed (the 200 ms tick, the fast
  beat, the consent clock, a read wake-up of the shared socket, ...).

Every second one JSON line (that second's figures, then reset) goes to
`$LOOPWATCH_OUT/<pid>.jsonl`.  It is active only in a process started as
`python -m signalling serve` with LOOPWATCH_OUT set (the benchmark puts this
folder first on the server's PYTHONPATH: `compare_janus.py --loop-watch`);
anything else that imports it is left alone.  Nothing of this is shipped.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# A wake-up of the shared socket's reader, or a probe's wait, at least this
# long is also logged on its own (its wall-clock time, length, datagrams read),
# to line the stalls up with what caused them (a key frame's burst, gc, ...).
LONG_MS = float(os.environ.get("LOOPWATCH_LONG_MS", "20"))
# Upper edges of the histogram buckets, milliseconds (the last one is open).
EDGES_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200)
WRAPPED = (
    ("sfu.routing.ticker", "Ticker", "tick"),
    ("sfu.routing.ticker", "Ticker", "fast_tick"),
    ("sfu.routing.probing", "Probing", "pump"),
    ("sfu.transport.consentclock", "ConsentClock", "_poll"),
    ("sfu.transport.udpmux", "UdpMux", "_readable"),
    ("sfu.transport.udpmux", "Egress", "_flush_soon"),
    ("sfu.local", "LocalMedia", "after_tick"),
    ("sfu.routing.layerclock", "LayerClock", "tick"),
    ("sfu.routing.layerclock", "LayerClock", "allocate_slice"),  # since the round is sliced
    ("sfu.routing.layering", "LayerControl", "finish"),
)


class Stat:
    """Count, total, max and a histogram of durations (seconds in, ms out)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.buckets = [0] * (len(EDGES_MS) + 1)

    def add(self, seconds: float) -> None:
        ms = seconds * 1000
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        for i, edge in enumerate(EDGES_MS):
            if ms <= edge:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1

    def dump(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total_ms": round(self.total, 3),
            "max_ms": round(self.max, 3),
            "buckets": self.buckets,
        }


class Watch:
    def __init__(self, out: str, period: float) -> None:
        self.out = os.path.join(out, f"{os.getpid()}.jsonl")
        self.period = period
        self.lock = threading.Lock()
        self.stats: dict[str, Stat] = {}
        self.gc_started = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        # (wall time at the start, ms, what) of every long event this second.
        self.long: list[tuple[float, float, str]] = []
        self.read_count = 0  # datagrams read in the current wake-up

    def stat(self, name: str) -> Stat:
        stat = self.stats.get(name)
        if stat is None:
            stat = self.stats[name] = Stat()
        return stat

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started = time.perf_counter()
        else:
            self.stat(f"gc{info['generation']}").add(time.perf_counter() - self.gc_started)

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.read_count = 0
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                self.stat(name).add(took)
                if took * 1000 >= LONG_MS:
                    what = f"{name} n={self.read_count}" if self.read_count else name
                    self.long.append((time.time() - took, took * 1000, what))

        return timed

    def counting(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`UdpMux.dispatch`: counts the datagrams of the current wake-up."""

        @functools.wraps(function)
        def counted(mux: Any, batch: Any) -> Any:
            self.read_count += len(batch)
            return function(mux, batch)

        return counted

    def answered(self, asked: float) -> None:
        waited = time.perf_counter() - asked
        self.stat("loop_wait").add(waited)
        if waited * 1000 >= LONG_MS:
            self.long.append((time.time() - waited, waited * 1000, "loop_wait"))

    def run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(self.period)
            loop = self.loop or self.find_loop()
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self.answered, time.perf_counter())
                except RuntimeError:  # closed
                    return
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                self.write()

    def find_loop(self) -> asyncio.AbstractEventLoop | None:
        for obj in gc.get_objects():
            if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
                self.loop = obj
                return obj
        return None

    def write(self) -> None:
        stats, self.stats = self.stats, {}
        long, self.long = self.long, []
        line: dict[str, Any] = {"t": time.time(), **{name: s.dump() for name, s in stats.items()}}
        line["long"] = [[round(t, 4), round(ms, 2), what] for t, ms, what in long]
        with open(self.out, "a") as out:
            out.write(json.dumps(line) + "\n")


def install() -> None:
    out = os.environ.get("LOOPWATCH_OUT")
    argv = getattr(sys, "orig_argv", [])
    if not out or "signalling" not in argv or "serve" not in argv:
        return
    period = float(os.environ.get("LOOPWATCH_PERIOD_MS", "10")) / 1000
    os.makedirs(out, exist_ok=True)  # else every write fails, silently, in the thread
    watch = Watch(out, period)
    gc.callbacks.append(watch.on_gc)
    import importlib

    for module_name, class_name, method in WRAPPED:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            function = getattr(cls, method)
        except (ImportError, AttributeError):
            continue  # an older tree (the A/B's base) lacks it
        setattr(cls, method, watch.wrap(f"{class_name}.{method}", function))
    try:
        from sfu.transport.udpmux import UdpMux

        UdpMux.dispatch = watch.counting(UdpMux.dispatch)  # type: ignore[method-assign]
    except ImportError:
        pass
    threading.Thread(target=watch.run, name="loopwatch", daemon=True).start()


install()
