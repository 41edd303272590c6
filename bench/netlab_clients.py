"""Browsers of the network lab: participants joined through the reference SDK in a
page of the server's origin, and a getStats sampler in each measured page.

Every participant is a host token of its own (it joins without the lobby). A
publisher sends the fake camera at the size asked (the SDK publishes simulcast
where it does); a viewer may publish a small camera and microphone of its own
(a 1:1 visit) and receives `video_slots` videos. The sampler reads, every
SAMPLE_MS, the inbound video and audio of one publisher (by participant id)
and the SFU's last `downlink` estimate (null until the server sends one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from netlab_metrics import Sample
from playwright.sync_api import Page

SAMPLE_MS = 300

JOIN = """async ([roomId, token, o]) => {
  const { VisitRoom } = await import("/sdk/visitroom.js");
  const room = new VisitRoom({ roomId, token, resume: false });
  window.__estimate = null;
  window.__estimates = [];
  room.on("downlink", (m) => {  // the server's message (issue 13), null until it sends one
    window.__estimate = m.estimate_kbps;
    window.__estimates.push([performance.now(), m.estimate_kbps]);
  });
  window.__publishLayers = [];  // the server's publish_layers messages (issue 13)
  room.on("publish_layers", (m) => window.__publishLayers.push([performance.now(), m.active]));
  room.media.on("tracks", (slots) => {  // play what arrives (decoding and playout stats)
    for (const s of slots) {
      if (!s.track) continue;
      const id = `slot-${s.mid}`;
      let el = document.getElementById(id);
      if (!el) {
        el = document.createElement(s.kind === "video" ? "video" : "audio");
        el.id = id;
        el.autoplay = true;
        el.muted = s.kind === "video";
        el.style.display = "inline-block";
        document.body.append(el);
      }
      if (el.srcObject?.getTracks()[0] !== s.track) el.srcObject = new MediaStream([s.track]);
      if (s.kind !== "video") continue;
      // the stage publisher big, the others as thumbnails; the SDK reports the
      // rendered sizes to the SFU (`video_sizes`) where it can (observeSlot)
      const [w, h] = s.participantId === o.stage ? [o.stageWidth, o.stageHeight] : [320, 180];
      el.style.width = `${w}px`;
      el.style.height = `${h}px`;
      room.media.observeSlot?.(s.mid, el);
    }
  });
  await room.connect();
  let audio = null, video = null;
  if (o.width || o.audio) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: o.audio,
      video: o.width ? { width: o.width, height: o.height, frameRate: o.fps } : false,
    });
    audio = stream.getAudioTracks()[0] ?? null;
    video = stream.getVideoTracks()[0] ?? null;
  }
  await room.media.start({ audio, video, videoSlots: o.videoSlots, audioSlots: o.audioSlots });
  window.visit = room;
  return room.participantId;
}"""

BEGIN = (
    "(args) => { window.__join = ("
    + JOIN
    + """)(args).then((pid) => { window.__pid = pid; },
                  (e) => { window.__joinError = String(e); }); }"""
)

SAMPLER = """([pid, everyMs]) => {
  window.__samples = [];
  const t0 = performance.now();
  window.__t0 = t0;
  window.__sampler = setInterval(async () => {
    const media = window.visit.media;
    const mids = media.slots.filter((s) => s.participantId === pid).map((s) => String(s.mid));
    const report = await media.getStats();
    if (!report) return;
    let v = null, a = null;
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || !mids.includes(String(s.mid))) return;
      if (s.kind === "video") v = s; else if (s.kind === "audio") a = s;
    });
    window.__samples.push({
      t: (performance.now() - t0) / 1000,
      width: v?.frameWidth ?? null,
      fps: v?.framesPerSecond ?? null,
      frames: v?.framesDecoded ?? 0,
      received: v?.framesReceived ?? 0,
      packets: v?.packetsReceived ?? 0,
      dropped: v?.framesDropped ?? 0,
      jb_delay: v?.jitterBufferDelay ?? 0,
      jb_emitted: v?.jitterBufferEmittedCount ?? 0,
      freezes: v?.freezeCount ?? 0,
      freezes_s: v?.totalFreezesDuration ?? 0,
      bytes: v?.bytesReceived ?? 0,
      lost: v?.packetsLost ?? 0,
      nacks: v?.nackCount ?? 0,
      plis: v?.pliCount ?? 0,
      keyframes: v?.keyFramesDecoded ?? 0,
      concealed: a?.concealedSamples ?? 0,
      audio: a?.totalSamplesReceived ?? 0,
      estimate: window.__estimate,
    });
  }, everyMs);
  return t0;
}"""

SAMPLES = "() => window.__samples"
STOP = "() => { clearInterval(window.__sampler); return window.__samples; }"

# What a viewer received at the end: the videos it decoded (their widths) and the
# audio streams it played, to show both servers gave it the same streams.
RECEIVED = """async () => {
  const report = await window.visit.media.getStats();  // null: no connection right now
  if (!report) return null;
  const got = { videos: 0, widths: [], audios: 0 };
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video" && s.framesDecoded > 0) {
      got.videos += 1;
      got.widths.push(s.frameWidth ?? null);
    } else if (s.kind === "audio" && s.totalSamplesReceived > 0) got.audios += 1;
  });
  got.widths.sort((a, b) => b - a);
  return got;
}"""

# What the publisher sends, per encoding (to report the layers it really had).
OUTBOUND = """async () => {
  const report = await window.visit.media.getStats();
  const out = [{ publish_layers: window.__publishLayers, available_kbps: null }];
  report.forEach((s) => {  // the publisher's own send-side estimate
    if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate)
      out[0].available_kbps = Math.round(s.availableOutgoingBitrate / 1000);
  });
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") out.push({
      rid: s.rid ?? null, width: s.frameWidth ?? null, height: s.frameHeight ?? null,
      fps: s.framesPerSecond ?? null, bytes: s.bytesSent ?? 0,
      limit: s.qualityLimitationReason ?? null, frames: s.framesEncoded ?? 0,
      keyframes: s.keyFramesEncoded ?? 0, plis: s.pliCount ?? 0, firs: s.firCount ?? 0,
      nacks: s.nackCount ?? 0, active: s.active ?? null,
    });
  });
  return out;
}"""


@dataclass(frozen=True)
class Role:
    width: int = 0  # 0: no camera
    height: int = 0
    fps: int = 30
    audio: bool = True
    video_slots: int = 0
    audio_slots: int = 0

    def options(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "audio": self.audio,
            "videoSlots": self.video_slots,
            "audioSlots": self.audio_slots,
        }


FULL = (1280, 720)
PUBLISHER = Role(*FULL, fps=30, audio=True, video_slots=1, audio_slots=1)


def wait_decoding(page: Page, publisher: str, timeout_s: float = 30) -> None:
    page.wait_for_function(
        """(pid) => {
            const s = window.visit.media.slots.find(
                (x) => x.participantId === pid && x.kind === "video");
            const el = s && document.getElementById(`slot-${s.mid}`);
            return el && el.getVideoPlaybackQuality().totalVideoFrames > 10;
        }""",
        arg=publisher,
        timeout=timeout_s * 1000,
    )


def join(
    page: Page, site_url: str, room: str, token: str, role: Role, stage: str | None = None
) -> str:
    """Open a page of the server's origin, join `room` and start media; the participant
    id. The video of `stage` (a participant id) is drawn at FULL size, others at 320x180."""
    begin_join(page, site_url, room, token, role, stage)
    return joined(page)


def begin_join(
    page: Page, site_url: str, room: str, token: str, role: Role, stage: str | None = None
) -> None:
    """`join` without waiting for it (several pages join at once; then `joined`)."""
    page.set_viewport_size({"width": 1300, "height": 1200})  # the stage and 2 rows of 4 below
    page.goto(f"{site_url}/sdk/visitroom.js")  # any page of the origin: the SDK is imported
    options = role.options() | {"stage": stage, "stageWidth": FULL[0], "stageHeight": FULL[1]}
    page.evaluate(BEGIN, [room, token, options])


def joined(page: Page, timeout_s: float = 60) -> str:
    """The participant id once the page's `begin_join` is done (raises on its error)."""
    page.wait_for_function("() => window.__pid || window.__joinError", timeout=timeout_s * 1000)
    error = page.evaluate("() => window.__joinError ?? null")
    if error:
        raise RuntimeError(f"the page could not join: {error}")
    return str(page.evaluate("() => window.__pid"))


def start_sampler(page: Page, publisher_id: str) -> float:
    """Start sampling what `page` receives from `publisher_id`; the page's time origin (ms)."""
    return float(page.evaluate(SAMPLER, [publisher_id, SAMPLE_MS]))


def samples(raw: list[dict[str, Any]], offset_s: float = 0.0) -> list[Sample]:
    """The page's readings as Samples (times shifted by `offset_s`)."""
    return [
        Sample(
            t=float(r["t"]) + offset_s,
            width=int(r["width"]) if r["width"] else None,
            fps=float(r["fps"]) if r["fps"] is not None else None,
            frames_decoded=int(r["frames"]),
            freeze_count=int(r["freezes"]),
            freezes_s=float(r["freezes_s"]),
            concealed=int(r["concealed"]),
            audio_samples=int(r["audio"]),
            estimate_kbps=int(r["estimate"]) if r["estimate"] is not None else None,
        )
        for r in raw
    ]


def camera_file(
    path: Path,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 2.0,
    bounce: bool = False,
) -> Path:
    """A y4m clip for Chromium's `--use-file-for-fake-video-capture`, with motion an
    encoder must spend bits on (the built-in fake camera is a nearly still drawing
    that VP8 codes in a few hundred kbit/s): a blocky textured background panning
    2 px a frame and a bright square crossing it. No fresh noise: a clip no encoder
    can predict makes libvpx drop frames at simulcast's per-layer rates. Looped: at
    each loop the picture jumps back (a scene cut every `seconds`: every layer's
    encoder overshoots, then skips frames); `bounce` plays it forward then backward
    (twice as long, no jump)."""
    rng = np.random.default_rng(13)
    tile = rng.integers(60, 196, (height // 16 + 16, width // 16 + 16), dtype=np.uint8)
    texture = np.kron(tile, np.ones((16, 16), dtype=np.uint8))  # 16x16 blocks
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    frames = int(fps * seconds)
    side = height // 4
    order = [*range(frames), *range(frames - 1, -1, -1)] if bounce else range(frames)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in order:
            shift = (2 * i) % 128
            luma = texture[shift // 2 : shift // 2 + height, shift : shift + width].copy()
            x = (width - side) * i // frames
            luma[height // 3 : height // 3 + side, x : x + side] = 235
            out.write(b"FRAME\n")
            out.write(luma.tobytes())
            out.write(chroma.tobytes())
            out.write(chroma.tobytes())
    return path


def camera_args(folder: Path, bounce: bool = False) -> list[str]:
    """Chromium flags for a fake camera that plays `camera_file` (written into `folder`)."""
    clip = camera_file(folder / "camera.y4m", bounce=bounce)
    return [f"--use-file-for-fake-video-capture={clip}"]
