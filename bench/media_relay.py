"""The naive alternative: an aiortc server relaying decoded frames (MediaRelay).

The publisher's tracks are decoded by aiortc's RTCRtpReceiver and every
subscriber's RTCRtpSender re-encodes them, which is what a Python server
built from aiortc's high-level API does.  The worker reads one JSON offer
per line on stdin ({"role": "publisher"|"subscriber", "sdp": ...}) and
writes one JSON answer per line.

    python bench/media_relay.py   (driven by bench/media_fanout.py)
"""

from __future__ import annotations

import asyncio
import json
import sys

import aioice.ice


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"]


async def worker() -> None:
    aioice.ice.get_host_addresses = _loopback_only
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    relay = MediaRelay()
    tracks: dict[str, object] = {}
    peers = []
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        request = json.loads(line)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.append(pc)
        if request["role"] == "publisher":
            pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
        if request["role"] == "subscriber":
            for transceiver in pc.getTransceivers():
                track = tracks.get(transceiver.kind)
                if track is not None:
                    transceiver.sender.replaceTrack(relay.subscribe(track))  # type: ignore[arg-type]
                    transceiver.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
    for pc in peers:
        await pc.close()


if __name__ == "__main__":
    asyncio.run(worker())
