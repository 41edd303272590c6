"""Time to first decoded frame: direct UDP against TURN over UDP, TCP and TLS.

A real coturn and a real Chromium in a network namespace (tests/netlab.py,
tests/coturn.py: the same lab the TURN tests use; root needed); the host is a
Chromium outside it, publishing its fake camera. For each path the namespace's
iptables leave only that way to the server (direct: nothing blocked), and a
guest joins N times: it knocks, the host lets it in, and the clock runs from
the host's click to the first frame the guest's video element has decoded from
the host (requestAnimationFrame polling, ~16 ms).

    python bench/turn_join.py --joins 20 --json results/turn_join.json
    python bench/turn_join.py --quick          # 5 joins per path
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from media_clients import percentile  # noqa: E402
from playwright.sync_api import BrowserContext, Page  # noqa: E402

from tests.test_web_media import own_id  # noqa: E402
from tests.turnlab import PATHS, only_through, turn_lab  # noqa: E402
from tests.web_support import WebServer, host_joins, knock  # noqa: E402


def one_join(site: WebServer, room: str, host: Page, guests: BrowserContext, name: str) -> float:
    guest = guests.new_page()
    try:
        knock(guest, site, room, name)
        host_id = own_id(host)
        started = time.perf_counter()
        host.get_by_test_id("btn-knock-let-in").click()  # the only one waiting
        guest.wait_for_function(
            """(pid) => {
                const tile = `[data-testid=video-tile][data-kind=video]`
                    + `[data-participant-id='${pid}']`;
                const v = document.querySelector(`${tile} video`);
                return v && v.getVideoPlaybackQuality().totalVideoFrames > 0;
            }""",
            arg=host_id,
            polling="raf",
            timeout=30000,
        )
        return (time.perf_counter() - started) * 1000
    finally:
        guest.close()


def run(joins: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    with tempfile.TemporaryDirectory(prefix="turn-join-") as name, turn_lab(Path(name)) as lab:
        room = lab.site.schedule()
        host = lab.host.new_page()
        host_joins(host, lab.site, room)
        for round_index in range(joins):
            for path in PATHS:  # alternating, so drift hits every path alike
                only_through(lab, path)
                ms = one_join(lab.site, room, host, lab.guest, f"Pat {path} {round_index}")
                times[path].append(ms)
                print(f"{path:6} join {round_index + 1}: {ms:7.0f} ms", flush=True)
        lab.lab.flush_rules()
    return {
        "benchmark": "turn_join",
        "joins_per_path": joins,
        "ttff_ms": {
            p: {
                "p50": statistics.median(v),
                "p95": percentile(v, 0.95),
                "min": min(v),
                "max": max(v),
                "all": v,
            }
            for p, v in times.items()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"time to first decoded frame, {result['joins_per_path']} joins per path")
    print(f"{'path':10} {'p50 ms':>8} {'p95 ms':>8} {'min':>8} {'max':>8}")
    for path, t in result["ttff_ms"].items():
        print(f"{path:10} {t['p50']:>8.0f} {t['p95']:>8.0f} {t['min']:>8.0f} {t['max']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 joins per path")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(5 if args.quick else args.joins)
    result["command"] = " ".join(["python", *sys.argv])
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
