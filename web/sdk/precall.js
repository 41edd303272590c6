// The pre-call test of the visitroom SDK. Import from visitroom.js, which re-exports it.

import { CLOSE_NORMAL, PROTOCOL, precallSocketUrl, VisitRoomError } from "./core.js";
import { preferCodecs, waitForIceGathering } from "./media.js";

/**
 * Turn what a pre-call test measured into a verdict per check.
 * Each check is `ok`, `poor` or `fail`, with a human sentence in `detail`.
 * @param {{
 *   hasCamera: boolean, hasMicrophone: boolean,
 *   framesDecoded: number, audioPacketsReceived: number,
 *   stats: {rtt_ms: number|null, loss: number, jitter_ms: number|null, bitrate_kbps: number}[],
 *   error?: string|null
 * }} measured
 */
export function precallVerdict(measured) {
  const last = measured.stats.at(-1) ?? null;
  const camera = !measured.hasCamera
    ? check("fail", "No camera was found or it was blocked.")
    : measured.framesDecoded > 0
      ? check("ok", "Your camera works.")
      : check("fail", "No video from your camera reached the server and back.");
  const microphone = !measured.hasMicrophone
    ? check("fail", "No microphone was found or it was blocked.")
    : measured.audioPacketsReceived > 0
      ? check("ok", "Your microphone works.")
      : check("fail", "No sound from your microphone reached the server and back.");
  let connection;
  if (measured.error) connection = check("fail", measured.error);
  else if (last === null) connection = check("fail", "Could not connect to the video server.");
  else {
    const rtt = last.rtt_ms ?? 0;
    const loss = last.loss ?? 0;
    const value = `${Math.round(rtt)} ms round trip, ${(loss * 100).toFixed(1)}% loss`;
    if (loss < 0.03 && rtt < 300) connection = check("ok", `Good connection (${value}).`, rtt);
    else if (loss < 0.1 && rtt < 800) connection = check("poor", `Weak connection (${value}).`, rtt);
    else connection = check("fail", `Bad connection (${value}).`, rtt);
  }
  const kbps = measured.stats.length
    ? Math.max(...measured.stats.map((s) => Number(s.bitrate_kbps) || 0))
    : 0;
  let bitrate;
  if (kbps >= 250) bitrate = check("ok", `Enough bandwidth for video (${Math.round(kbps)} kbps).`, kbps);
  else if (kbps >= 80) bitrate = check("poor", `Low bandwidth: video may be blurry (${Math.round(kbps)} kbps).`, kbps);
  else bitrate = check("fail", `Too little bandwidth for video (${Math.round(kbps)} kbps).`, kbps);
  const all = [camera, microphone, connection, bitrate].map((c) => c.status);
  const overall = all.includes("fail") ? "fail" : all.includes("poor") ? "poor" : "ok";
  return { overall, camera, microphone, connection, bitrate };
}

/**
 * @param {"ok"|"poor"|"fail"} status
 * @param {string} detail
 * @param {number} [value]
 */
function check(status, detail, value) {
  return value === undefined ? { status, detail } : { status, detail, value };
}

/**
 * Run the server's pre-call test: send the camera and microphone to the SFU,
 * which echoes them back, for `durationMs`, then judge camera, microphone,
 * connection and bitrate (see `precallVerdict`).
 *
 * @param {{
 *   stream: MediaStream|null,
 *   baseUrl?: string,
 *   durationMs?: number,
 *   onProgress?: (progress: {elapsedMs: number, stats: object|null}) => void,
 *   signal?: AbortSignal,
 *   WebSocket?: typeof WebSocket,
 *   RTCPeerConnection?: typeof RTCPeerConnection,
 * }} options
 */
export async function runPrecallTest({
  stream,
  baseUrl = globalThis.location?.origin ?? "",
  durationMs = 7000,
  onProgress,
  signal,
  WebSocket: WS = globalThis.WebSocket,
  RTCPeerConnection: PC = globalThis.RTCPeerConnection,
}) {
  const audio = stream?.getAudioTracks().find((t) => t.readyState === "live") ?? null;
  const video = stream?.getVideoTracks().find((t) => t.readyState === "live") ?? null;
  const measured = {
    hasCamera: Boolean(video),
    hasMicrophone: Boolean(audio),
    framesDecoded: 0,
    audioPacketsReceived: 0,
    stats: [],
    error: null,
  };
  const session = new PrecallSocket(precallSocketUrl(baseUrl), WS);
  let pc = null;
  try {
    const welcome = await session.open();
    pc = new PC({ iceServers: welcome.ice_servers ?? [], bundlePolicy: "max-bundle" });
    for (const [kind, track] of [["audio", audio], ["video", video]]) {
      const transceiver = pc.addTransceiver(track ?? kind, { direction: "sendrecv" });
      preferCodecs(transceiver, kind);
    }
    session.onStats = (stats) => measured.stats.push(stats);
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, 2500);
    const answer = await session.request({ type: "offer", sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const started = Date.now();
    while (Date.now() - started < durationMs && !signal?.aborted && !session.ended) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      Object.assign(measured, await echoCounters(pc));
      onProgress?.({ elapsedMs: Date.now() - started, stats: measured.stats.at(-1) ?? null });
    }
  } catch (error) {
    measured.error = precallErrorText(error);
  } finally {
    session.close();
    pc?.close();
  }
  return { ...precallVerdict(measured), measured };
}

/** @param {RTCPeerConnection} pc */
async function echoCounters(pc) {
  const counters = { framesDecoded: 0, audioPacketsReceived: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") counters.framesDecoded += s.framesDecoded ?? 0;
    if (s.kind === "audio") counters.audioPacketsReceived += s.packetsReceived ?? 0;
  });
  return counters;
}

/** @param {unknown} error */
function precallErrorText(error) {
  if (error instanceof VisitRoomError) {
    if (error.code === "unavailable") return "The video server is not available right now.";
    if (error.code === "rate_limited") return "Too many tests from your network; try again in a minute.";
    return `The test could not run (${error.message}).`;
  }
  return "Could not connect to the video server.";
}

/** The pre-call socket: hello, one offer/answer, then `precall_stats` until it ends. */
class PrecallSocket {
  /** @param {string} url @param {typeof WebSocket} WS */
  constructor(url, WS) {
    this.url = url;
    this.WS = WS;
    this.ws = null;
    this.ended = false;
    this.onStats = null;
    this._waiters = new Map();
    this._welcome = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new this.WS(this.url, PROTOCOL);
      this.ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({ type: "hello" }));
      ws.onerror = () => reject(new VisitRoomError("disconnected", "could not reach the server"));
      ws.onclose = () => {
        this.ended = true;
        reject(new VisitRoomError("disconnected", "the test connection closed"));
        for (const waiter of this._waiters.values()) waiter.reject(new VisitRoomError("disconnected", "closed"));
      };
      ws.onmessage = (event) => {
        const m = JSON.parse(event.data);
        if (m.type === "welcome") resolve(m);
        else if (m.type === "precall_stats") this.onStats?.(m);
        else if (m.type === "precall_ended") this.ended = true;
        else if (m.type === "error" && m.re == null) reject(new VisitRoomError(m.code, m.message));
        if (m.re != null && this._waiters.has(String(m.re))) {
          const waiter = this._waiters.get(String(m.re));
          this._waiters.delete(String(m.re));
          if (m.type === "error") waiter.reject(new VisitRoomError(m.code, m.message));
          else waiter.resolve(m);
        }
      };
    });
  }

  request(message) {
    const id = "t1";
    return new Promise((resolve, reject) => {
      this._waiters.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  close() {
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify({ type: "leave" }));
      this.ws.close(CLOSE_NORMAL);
    }
  }
}
