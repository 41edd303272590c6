"""Does a key frame request on a low simulcast layer freeze the top layer's viewer?

One Chromium, three pages (tests/test_sfu_browser.py's `serving`, in-process SFU on
loopback): alice publishes a fake camera at 1280x720 in simulcast q/h/f (by default the
network lab's moving clip, whose key frames cost the encoder; Chromium's built-in drawing
is nearly still and cheap to key), bob watches her at 1280x720 (the top layer), carol's
slot is hidden.  Every 1.5 s the SFU asks the
lowest layer for a key frame, as another viewer's switch to it would.  Over 24 s: bob's
freezes (getStats freezeCount and totalFreezesDuration, and 250 ms samples with no
frame decoded), f's frames encoded (its longest run under 12 fps), key frames per layer
and the SFU's requests per layer.

    python bench/keyframe_switch.py --mode per-layer --json out.json   # the answer with
                                                                       # x-google-per-layer-pli=1
    python bench/keyframe_switch.py --mode shared ...                  # without (as before)

Run it under `flock /tmp/bench.lock` (it starts a Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from netlab_clients import camera_args  # noqa: E402

from tests.sfu_live import eventually  # noqa: E402
from tests.test_sfu_browser import serving  # noqa: E402
from tests.test_sfu_simulcast_browser import PAGE  # noqa: E402
from tests.web_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

INBOUND = """async () => { const stats = await window.pc.getStats(); let o = null;
  stats.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video")
    o = [r.framesDecoded || 0, r.freezeCount || 0, r.totalFreezesDuration || 0,
         r.frameWidth || 0]; });
  return o; }"""
ENCODED = """async () => { const stats = await window.pc.getStats(); const o = {};
  stats.forEach((r) => { if (r.type === "outbound-rtp" && r.kind === "video")
    o[r.rid] = [r.framesEncoded || 0, r.keyFramesEncoded || 0,
                r.encoderImplementation || null]; });
  return o; }"""
SECONDS = 24.0
EVERY_S = 1.5


async def measure(per_layer: bool, clip: bool = True) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with (
        serving(PAGE, per_layer_keyframes=per_layer) as (url, media),
        async_playwright() as pw,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            camera = camera_args(Path(tmp)) if clip else []
            browser = await pw.chromium.launch_persistent_context(
                str(Path(tmp) / "profile"),
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS, *camera],
                headless=True,
            )
            try:
                pages = {n: await browser.new_page() for n in ("alice", "bob", "carol")}
                for page in pages.values():
                    await page.goto(url)
                await pages["alice"].evaluate("join('alice', true)")
                for name in ("bob", "carol"):
                    await pages[name].evaluate(f"join('{name}', false)")
                track = next(iter(media.participants["alice"].producers.values()))
                await eventually(lambda: all(x.frame_size for x in track.layers), timeout=30)
                for name, size in (("bob", [1280, 720]), ("carol", [0, 0])):
                    mid = next(iter(media.participants[name].consumers))
                    await media.video_sizes(name, {mid: size})
                await asyncio.sleep(6)  # settle: bob on f
                keyframes = [x.keyframes for x in track.layers]
                requests = [x.keyframe_requests for x in track.layers]
                bob0 = await pages["bob"].evaluate(INBOUND)
                enc0 = await pages["alice"].evaluate(ENCODED)
                samples: list[tuple[float, list[Any], dict[str, Any]]] = []
                asked, start = 0, time.monotonic()
                due = start + EVERY_S
                while time.monotonic() - start < SECONDS:
                    if time.monotonic() >= due:  # as another viewer's switch to q would
                        asked += track.layers[0].request_keyframe(time.monotonic())
                        due += EVERY_S
                    bob = await pages["bob"].evaluate(INBOUND)
                    encoded = await pages["alice"].evaluate(ENCODED)
                    samples.append((time.monotonic() - start, bob, encoded))
                    await asyncio.sleep(0.25)
                bob1 = await pages["bob"].evaluate(INBOUND)
                enc1 = await pages["alice"].evaluate(ENCODED)
            finally:
                await browser.close()
    return {
        "mode": "per-layer" if per_layer else "shared",
        "camera": "clip" if clip else "built-in",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "q_requests_asked": asked,
        "seconds": round(samples[-1][0], 1),
        "bob_width": bob1[3],
        "bob_frames": bob1[0] - bob0[0],
        "bob_freezes": bob1[1] - bob0[1],
        "bob_freeze_s": round(bob1[2] - bob0[2], 2),
        "bob_stalled_samples": sum(1 for a, b in itertools.pairwise(samples) if b[1][0] == a[1][0]),
        "samples": len(samples),
        "f_longest_under_12fps_s": longest_skip(samples),
        "keyframes_in": [x.keyframes - n for x, n in zip(track.layers, keyframes, strict=True)],
        "requests_out": [
            x.keyframe_requests - n for x, n in zip(track.layers, requests, strict=True)
        ],
        "encoded": {r: [enc1[r][0] - enc0[r][0], enc1[r][1] - enc0[r][1]] for r in enc1},
        "implementation": enc1["f"][2],
    }


def longest_skip(samples: list[tuple[float, list[Any], dict[str, Any]]]) -> float:
    """The longest run of samples in which f encoded at most 3 frames per 250 ms."""
    longest = run = 0.0
    for a, b in itertools.pairwise(samples):
        run = run + b[0] - a[0] if b[2]["f"][0] - a[2]["f"][0] <= 3 else 0.0
        longest = max(longest, run)
    return round(longest, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("per-layer", "shared"), default="per-layer")
    parser.add_argument(
        "--camera",
        choices=("clip", "built-in"),
        default="clip",
        help="the network lab's moving clip (netlab_clients.camera_file) or Chromium's drawing",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(measure(args.mode == "per-layer", args.camera == "clip"))
    result["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
