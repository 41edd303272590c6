// Pure helpers of the SDK, without a browser: `node --test web/tests/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addCameraTransceiver,
  Emitter,
  backoffDelay,
  formatClock,
  isResumableClose,
  mapSlots,
  precallSocketUrl,
  precallVerdict,
  roomSocketUrl,
  savedSession,
  setEncodingsActive,
  SIMULCAST_ENCODINGS,
  summarizeStats,
  TabSession,
  VisitRoom,
  videoSizesOf,
  VisitRoomError,
  WEAK_DOWNLINK_KBPS,
} from "../sdk/visitroom.js";

test("socket URLs follow the page's scheme and escape the room id", () => {
  assert.equal(roomSocketUrl("http://127.0.0.1:8080", "visit-1"), "ws://127.0.0.1:8080/v1/rooms/visit-1/ws");
  assert.equal(roomSocketUrl("https://v.example.org/x/y", "a b"), "wss://v.example.org/v1/rooms/a%20b/ws");
  assert.equal(precallSocketUrl("https://v.example.org"), "wss://v.example.org/v1/precall/ws");
});

test("backoff grows, stays jittered within bounds and is capped", () => {
  const low = () => 0;
  const high = () => 1;
  assert.equal(backoffDelay(0, { random: low }), 250);
  assert.equal(backoffDelay(0, { random: high }), 500);
  assert.equal(backoffDelay(3, { random: high }), 4000);
  assert.equal(backoffDelay(10, { random: high }), 5000);
  assert.equal(backoffDelay(10, { random: low }), 2500);
});

test("a socket closed after left, rejected, a refused hello or a too-big frame is final", () => {
  for (const code of [1000, 1008, 1009]) assert.equal(isResumableClose(code), false, String(code));
  for (const code of [1001, 1006, 1011, 1012, 1013]) assert.equal(isResumableClose(code), true, String(code));
});

test("formatClock is a zero-padded 24-hour HH:MM", () => {
  assert.equal(formatClock(new Date(2026, 10, 23, 9, 5)), "09:05");
  assert.equal(formatClock(new Date(2026, 10, 23, 21, 30)), "21:30");
});

test("slots map mids to participants and tracks", () => {
  const track = { id: "t1" };
  const slots = mapSlots(
    [
      { mid: "2", kind: "video", participant_id: "p_a", source: "screen" },
      { mid: 3, kind: "video", participant_id: null },
      { mid: "4", kind: "video", participant_id: "p_b" },
    ],
    new Map([["2", track]]),
  );
  assert.deepEqual(slots, [
    { mid: "2", kind: "video", participantId: "p_a", source: "screen", track },
    { mid: "3", kind: "video", participantId: null, source: null, track: null },
    { mid: "4", kind: "video", participantId: "p_b", source: null, track: null },
  ]);
});

const good = { rtt_ms: 20, loss: 0, jitter_ms: 2, bitrate_kbps: 600 };

test("a healthy pre-call test passes every check", () => {
  const v = precallVerdict({ hasCamera: true, hasMicrophone: true, framesDecoded: 50, audioPacketsReceived: 100, stats: [good] });
  assert.equal(v.overall, "ok");
  for (const key of ["camera", "microphone", "connection", "bitrate"]) assert.equal(v[key].status, "ok", key);
});

test("no camera, or no echoed video, fails the camera check", () => {
  const base = { hasMicrophone: true, audioPacketsReceived: 10, stats: [good] };
  assert.equal(precallVerdict({ ...base, hasCamera: false, framesDecoded: 0 }).camera.status, "fail");
  assert.equal(precallVerdict({ ...base, hasCamera: true, framesDecoded: 0 }).camera.status, "fail");
  assert.equal(precallVerdict({ ...base, hasCamera: true, framesDecoded: 0 }).overall, "fail");
});

test("connection and bandwidth are graded ok, poor or fail", () => {
  const measure = (stats) => precallVerdict({ hasCamera: true, hasMicrophone: true, framesDecoded: 1, audioPacketsReceived: 1, stats });
  assert.equal(measure([{ ...good, loss: 0.05 }]).connection.status, "poor");
  assert.equal(measure([{ ...good, rtt_ms: 1200 }]).connection.status, "fail");
  assert.equal(measure([]).connection.status, "fail");
  assert.equal(measure([{ ...good, bitrate_kbps: 120 }]).bitrate.status, "poor");
  assert.equal(measure([{ ...good, bitrate_kbps: 20 }]).bitrate.status, "fail");
  assert.equal(measure([{ ...good, bitrate_kbps: 20 }, { ...good, bitrate_kbps: 400 }]).bitrate.status, "ok");
  assert.equal(measure([{ ...good, loss: 0.05 }]).overall, "poor");
});

test("an error during the test is the connection's verdict", () => {
  const v = precallVerdict({ hasCamera: true, hasMicrophone: true, framesDecoded: 0, audioPacketsReceived: 0, stats: [], error: "The video server is not available right now." });
  assert.equal(v.connection.status, "fail");
  assert.equal(v.connection.detail, "The video server is not available right now.");
});

test("stats are summarized per stream with who sends them", () => {
  const report = new Map([
    ["a", { type: "inbound-rtp", kind: "video", mid: "3", framesDecoded: 40, packetsReceived: 90, packetsLost: 1, bytesReceived: 5000, jitter: 0.004, frameWidth: 640, frameHeight: 480, framesPerSecond: 20 }],
    ["b", { type: "inbound-rtp", kind: "audio", mid: "10", packetsReceived: 200, bytesReceived: 9000 }],
    ["c", { type: "outbound-rtp", kind: "video", mid: "1", bytesSent: 7000, packetsSent: 20, framesEncoded: 30 }],
    ["d", { type: "candidate-pair", nominated: true, state: "succeeded", currentRoundTripTime: 0.012, availableOutgoingBitrate: 1500000 }],
    ["e", { type: "candidate-pair", nominated: false, state: "failed", currentRoundTripTime: 9 }],
  ]);
  const s = summarizeStats(report, new Map([["3", "p_x"]]), new Map([["1", "camera"]]));
  assert.deepEqual(s.inbound.map((i) => [i.mid, i.participantId, i.framesDecoded]), [["3", "p_x", 40], ["10", null, 0]]);
  assert.equal(s.inbound[0].jitterMs, 4);
  assert.equal(s.outbound[0].role, "camera");
  assert.equal(s.roundTripTimeMs, 12);
  assert.equal(s.availableOutgoingKbps, 1500);
  assert.equal(s.path, null, "a pair whose candidates are not in the report has no path");
});

test("the selected pair says whether media is relayed, and over what", () => {
  const pair = { type: "candidate-pair", nominated: true, state: "succeeded", localCandidateId: "L", remoteCandidateId: "R" };
  const relayed = new Map([
    ["p", pair],
    ["L", { type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tls" }],
    ["R", { type: "remote-candidate", candidateType: "host", protocol: "udp" }],
  ]);
  assert.deepEqual(summarizeStats(relayed, new Map()).path, {
    localType: "relay", localProtocol: "udp", relayProtocol: "tls", remoteType: "host", remoteProtocol: "udp",
  });
  const direct = new Map([
    ["p", pair],
    ["L", { type: "local-candidate", candidateType: "host", protocol: "udp", relayProtocol: "udp" }],
    ["R", { type: "remote-candidate", candidateType: "host", protocol: "udp" }],
  ]);
  assert.equal(summarizeStats(direct, new Map()).path.relayProtocol, null);
});

test("a throwing listener does not stop the others", () => {
  const emitter = new Emitter();
  const seen = [];
  const original = console.error;
  console.error = () => undefined;
  try {
    emitter.on("x", () => {
      throw new Error("boom");
    });
    const off = emitter.on("x", (v) => seen.push(v));
    emitter.once("x", (v) => seen.push(`once ${v}`));
    emitter.emit("x", 1);
    emitter.emit("x", 2);
    off();
    emitter.emit("x", 3);
  } finally {
    console.error = original;
  }
  assert.deepEqual(seen, [1, "once 1", 2]);
});

test("a room needs an id, and a token or a name before it connects", async () => {
  assert.throws(() => new VisitRoom({}), TypeError);
  const room = new VisitRoom({ roomId: "visit-1", baseUrl: "http://127.0.0.1:1" });
  await assert.rejects(room.connect(), (e) => e instanceof VisitRoomError && e.code === "bad_request");
  assert.equal(room.state, "idle");
});

/** A Storage kept in memory (Node has no sessionStorage); optionally refusing every call. */
class MemoryStorage {
  constructor({ refuse = false } = {}) {
    this.items = new Map();
    this.refuse = refuse;
  }
  getItem(key) {
    if (this.refuse) throw new Error("SecurityError");
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    if (this.refuse) throw new Error("QuotaExceededError");
    this.items.set(key, String(value));
  }
  removeItem(key) {
    if (this.refuse) throw new Error("SecurityError");
    this.items.delete(key);
  }
}

const record = { resume: "tok", participantId: "p_1", role: "guest", name: "Pat", data: { cameraOn: false } };

test("a tab's session is kept per room and comes back whole", () => {
  const storage = new MemoryStorage();
  new TabSession("visit-1", storage).save(record);
  assert.deepEqual(savedSession("visit-1", storage), { participantId: "p_1", role: "guest", name: "Pat", data: { cameraOn: false } });
  assert.equal(savedSession("visit-2", storage), null);
  assert.equal(JSON.parse(storage.getItem("visitroom.session.visit-1")).resume, "tok");
});

test("a session without the server's window is left for the server to judge", () => {
  const storage = new MemoryStorage();
  const session = new TabSession("visit-1", storage);
  session.save(record);
  session.markDropped(1_000_000);
  assert.equal(session.load(1_000_000 + 3_600_000)?.resume, "tok");
});

test("a session dropped longer than the resume window ago is forgotten", () => {
  const storage = new MemoryStorage();
  const session = new TabSession("visit-1", storage);
  session.save({ ...record, windowMs: 30_000 });
  session.markDropped(1_000_000);
  assert.equal(session.load(1_000_000 + 30_000 - 2000)?.resume, "tok");
  assert.equal(session.load(1_000_000 + 30_000), null);
  assert.equal(storage.getItem("visitroom.session.visit-1"), null);
});

test("a damaged or foreign record is not resumed", () => {
  const storage = new MemoryStorage();
  for (const bad of ["{", "null", "[]", JSON.stringify({ ...record, v: 1, resume: 5, droppedAt: null })]) {
    storage.setItem("visitroom.session.visit-1", bad);
    assert.equal(savedSession("visit-1", storage), null, bad);
  }
});

test("refused storage is no session, and the session never goes to localStorage", () => {
  const refusing = new MemoryStorage({ refuse: true });
  const session = new TabSession("visit-1", refusing);
  session.save(record);
  session.markDropped();
  session.clear();
  assert.equal(session.load(), null);
  assert.equal(savedSession("visit-1", null), null);
  const local = new MemoryStorage();
  globalThis.localStorage = local;
  try {
    assert.throws(() => new VisitRoom({ roomId: "visit-1", storage: local }), TypeError);
  } finally {
    delete globalThis.localStorage;
  }
});

/** A WebSocket stand-in that plays a host's side of the conversation, for the SDK's framing. */
class ScriptedSocket {
  constructor() {
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.();
    });
  }

  send(text) {
    const message = JSON.parse(text);
    this.sent.push(message);
    if (message.type === "hello") {
      this.reply({ type: "welcome", participant_id: "p_host", role: "host", status: "joined", room: "visit-1", resume_token: "r", ice_servers: [] });
    } else if (message.id) {
      this.reply({ type: "ack", re: message.id });
    }
  }

  reply(message) {
    queueMicrotask(() => this.onmessage?.({ data: JSON.stringify(message) }));
  }

  close() {}
}

test("hosts see who was turned away and let them knock again by id or identity", async () => {
  const room = new VisitRoom({ roomId: "visit-1", token: "t", baseUrl: "http://127.0.0.1:1", WebSocket: ScriptedSocket });
  await room.connect();
  const seen = [];
  room.on("refusalschange", (list) => seen.push(list));
  ScriptedSocket.last.reply({ type: "refusals", participants: [{ id: "p_old", name: "Pat", reason: "rejected" }] });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(room.refusals, [{ id: "p_old", name: "Pat", reason: "rejected" }]);
  assert.equal(seen.length, 1);
  await room.allowKnock("p_old");
  await room.allowKnock({ identity: "pat" });
  const sent = ScriptedSocket.last.sent.filter((m) => m.type === "allow_knock");
  assert.deepEqual(
    sent.map(({ id: _id, ...rest }) => rest),
    [
      { type: "allow_knock", participant_id: "p_old" },
      { type: "allow_knock", identity: "pat" },
    ],
  );
});

/** A guest's side: the server answers `hello` with a waiting `welcome` and never acks `leave`. */
class LobbySocket extends ScriptedSocket {
  send(text) {
    const message = JSON.parse(text);
    this.sent.push(message);
    if (message.type === "hello") {
      this.reply({ type: "welcome", participant_id: "p_g", role: "guest", status: "waiting", room: "visit-1", resume_token: "r", ice_servers: [], resume_window_s: 12, limits: { name: 80, hold_message: 1000 } });
    }
  }
}

test("close() rejects every pending request at once with a `closed` error", async () => {
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1", WebSocket: LobbySocket, requestTimeoutMs: 5000 });
  await room.connect();
  const pending = room.request({ type: "lobby" });
  room.close();
  await assert.rejects(pending, (e) => e instanceof VisitRoomError && e.code === "closed");
  assert.equal(room._pending.size, 0);
});

test("media.start() before the host lets me in rejects with `not_admitted` and starts nothing", async () => {
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1", WebSocket: LobbySocket });
  await room.connect();
  assert.equal(room.state, "waiting");
  await assert.rejects(room.media.start({}), (e) => e instanceof VisitRoomError && e.code === "not_admitted");
  assert.equal(room.media.pc, null);
  assert.deepEqual(LobbySocket.last.sent.map((m) => m.type), ["hello"]);
  room.close();
});

test("the resume window comes from the server's welcome and is kept with the tab's session", async () => {
  const storage = new MemoryStorage();
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1", WebSocket: LobbySocket, storage });
  await room.connect();
  const session = new TabSession("visit-1", storage);
  session.markDropped(1_000_000);
  assert.equal(session.load(1_000_000 + 12_000 - 2000)?.resume, "r");
  assert.equal(session.load(1_000_000 + 12_000), null);
  room.close();
});

test("the server's limits reach the front end as room.limits", async () => {
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1", WebSocket: LobbySocket });
  assert.deepEqual(room.limits, {});
  await room.connect();
  assert.deepEqual(room.limits, { name: 80, hold_message: 1000 });
  room.close();
});

test("the slots message's publishers say who sends a live camera, and nothing is known without it", () => {
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1" });
  const media = room.media;
  const seen = [];
  media.on("tracks", () => seen.push(media.publishers));
  room._onSlots({ type: "slots", slots: [] });
  assert.equal(media.publishers, null);
  assert.equal(media.publishes("p_a", "camera"), null, "an older server does not say");
  room._onSlots({ type: "slots", slots: [], publishers: { p_a: ["audio", "camera"], p_b: ["audio"] } });
  assert.equal(media.publishes("p_a", "camera"), true);
  assert.equal(media.publishes("p_b", "camera"), false, "camera off");
  assert.equal(media.publishes("p_c", "audio"), false, "nothing live");
  assert.equal(seen.length, 2, "a change of publishers alone is a `tracks` event");
  room.close();
});

/** A host's socket whose network dies after `welcome`: it never answers again. */
class DyingSocket extends ScriptedSocket {
  static opened = [];

  constructor() {
    super();
    DyingSocket.opened.push(this);
  }

  send(text) {
    const message = JSON.parse(text);
    this.sent.push(message);
    const first = DyingSocket.opened[0] === this;
    if (message.type === "hello") {
      this.reply({ type: "welcome", participant_id: "p_host", role: "host", status: "joined", room: "visit-1", resume_token: first ? "r1" : "r2", ice_servers: [], resume_window_s: 30 });
    } else if (message.id && !first) {
      this.reply({ type: "ack", re: message.id });
    }
  }
}

test("a socket that stops answering is given up after a ping and the session resumes on a new one", async () => {
  const room = new VisitRoom({ roomId: "visit-1", token: "t", baseUrl: "http://127.0.0.1:1", WebSocket: DyingSocket, heartbeatMs: 200 });
  await room.connect();
  let guard;
  const reconnected = new Promise((resolve) => room.on("reconnected", () => resolve(true)));
  const gaveUp = new Promise((resolve) => (guard = setTimeout(() => resolve(false), 5000)));
  assert.equal(await Promise.race([reconnected, gaveUp]), true, "no resume within 5 s");
  clearTimeout(guard);
  const [dead, fresh] = DyingSocket.opened;
  assert.deepEqual(dead.sent.map((m) => m.type), ["hello", "ping"]);
  assert.deepEqual(fresh.sent[0], { type: "hello", resume: "r1" });
  assert.equal(room.state, "joined");
  assert.equal(await room.checkConnection(500), true);
  room.close();
});

test("video_sizes bodies hold whole device pixels from 0 to 8192 for every slot", () => {
  const sizes = { 1: [639.6, 359.5], 2: [0, 0], 3: [20000, -4], 4: [NaN, 10] };
  assert.deepEqual(videoSizesOf(["1", "2", "3", "4"], (mid) => sizes[mid]), {
    1: { width: 640, height: 360 },
    2: { width: 0, height: 0 },
    3: { width: 8192, height: 0 },
    4: { width: 0, height: 10 },
  });
});

test("the camera is offered as q, h, f lowest first with L1T3, then without modes, then as one encoding", () => {
  assert.deepEqual(SIMULCAST_ENCODINGS.map((e) => [e.rid, e.scaleResolutionDownBy, e.scalabilityMode]), [
    ["q", 4, "L1T3"],
    ["h", 2, "L1T3"],
    ["f", 1, "L1T3"],
  ]);
  // A browser that refuses what it cannot do, as addTransceiver does (OperationError).
  const browser = (accepts) => ({
    calls: [],
    addTransceiver(kind, init) {
      this.calls.push(init.sendEncodings ?? null);
      if (!accepts(init.sendEncodings)) throw new Error("OperationError");
      return { kind, init };
    },
  });
  const noModes = browser((encodings) => !encodings?.some((e) => e.scalabilityMode));
  assert.equal(addCameraTransceiver(noModes, true).init.sendEncodings.length, 3);
  assert.deepEqual(noModes.calls.map((c) => c && c.map((e) => e.scalabilityMode ?? null)), [
    ["L1T3", "L1T3", "L1T3"],
    [null, null, null],
  ]);
  const noSimulcast = browser((encodings) => !encodings);
  assert.equal(addCameraTransceiver(noSimulcast, true).init.sendEncodings, undefined);
  assert.equal(noSimulcast.calls.length, 3);
  const off = browser(() => true);
  addCameraTransceiver(off, false);
  assert.deepEqual(off.calls, [null], "simulcast: false asks for one encoding only");
});

test("publish_layers turns encodings on and off by rid and leaves a single encoding alone", async () => {
  const sender = {
    params: { encodings: [{ rid: "q", active: true }, { rid: "h", active: true }, { rid: "f", active: true }] },
    set: 0,
    getParameters() {
      return structuredClone(this.params);
    },
    async setParameters(params) {
      this.set += 1;
      this.params = params;
    },
  };
  assert.equal(await setEncodingsActive(sender, ["q", "h"]), true);
  assert.deepEqual(sender.params.encodings.map((e) => e.active), [true, true, false]);
  assert.equal(await setEncodingsActive(sender, ["q", "h"]), false, "no change: no setParameters");
  assert.equal(sender.set, 1);
  sender.params = { encodings: [{ active: true }] };
  assert.equal(await setEncodingsActive(sender, []), false);
  assert.equal(sender.params.encodings[0].active, true);
});

test("the server's downlink estimate becomes a media `downlink` event that says when it is weak", () => {
  const room = new VisitRoom({ roomId: "visit-1", name: "Pat", baseUrl: "http://127.0.0.1:1" });
  const seen = [];
  room.media.on("downlink", (event) => seen.push(event));
  room._handle({ type: "downlink", estimate_kbps: 2400 });
  room._handle({ type: "downlink", estimate_kbps: WEAK_DOWNLINK_KBPS - 1 });
  room._handle({ type: "downlink", estimate_kbps: "fast" });
  assert.deepEqual(seen, [
    { estimateKbps: 2400, weak: false },
    { estimateKbps: WEAK_DOWNLINK_KBPS - 1, weak: true },
  ]);
  assert.equal(room.media.downlinkKbps, WEAK_DOWNLINK_KBPS - 1);
  room.close();
});

/**
 * An RTCPeerConnection stand-in that keeps the spec's rule: an operation still pending
 * when its connection closes never settles. `hold` makes the next createOffer wait.
 */
class SpecPeerConnection {
  constructor() {
    this.signalingState = "stable";
    this.iceGatheringState = "complete";
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.remoteDescription = null;
    this.localDescription = null;
    this.closed = false;
    SpecPeerConnection.made.push(this);
  }

  addTransceiver(kind, init) {
    return { kind, direction: init?.direction, sender: { replaceTrack: async () => undefined } };
  }

  addEventListener() {}
  removeEventListener() {}

  _op(value) {
    if (this.closed) return Promise.reject(new Error("InvalidStateError"));
    if (SpecPeerConnection.hold) {
      SpecPeerConnection.hold = false;
      return new Promise(() => undefined); // released only by a close that never comes
    }
    return Promise.resolve(value);
  }

  createOffer() {
    return this._op({ type: "offer", sdp: `v=0 pc${SpecPeerConnection.made.indexOf(this)}` });
  }

  async setLocalDescription(description) {
    await this._op();
    this.localDescription = description;
    this.signalingState = description.type === "rollback" ? "stable" : "have-local-offer";
  }

  async setRemoteDescription(description) {
    await this._op();
    this.remoteDescription = description;
    this.signalingState = "stable";
  }

  getStats() {
    return Promise.resolve(new Map());
  }

  close() {
    this.closed = true;
  }
}
SpecPeerConnection.made = [];

/** A host's side that answers offers, or refuses the next `refuse` of them as `unavailable`. */
class OfferSocket extends ScriptedSocket {
  send(text) {
    const message = JSON.parse(text);
    if (message.type !== "offer") return super.send(text);
    this.sent.push(message);
    if (OfferSocket.refuse > 0) {
      OfferSocket.refuse -= 1;
      this.reply({ type: "error", re: message.id, code: "unavailable", message: "no media server is available; try again" });
    } else {
      this.reply({ type: "answer", re: message.id, sdp: "v=0 answer" });
    }
  }
}
OfferSocket.refuse = 0;

async function until(check, timeoutMs = 3000) {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("a second media_closed while the first re-offer waits on its connection still ends in a new offer", async () => {
  SpecPeerConnection.made = [];
  const room = new VisitRoom({ roomId: "visit-1", token: "t", baseUrl: "http://127.0.0.1:1", WebSocket: OfferSocket, RTCPeerConnection: SpecPeerConnection });
  await room.connect();
  await room.media.start({ videoSlots: 1, audioSlots: 1 });
  const offers = () => ScriptedSocket.last.sent.filter((m) => m.type === "offer");
  assert.equal(offers().length, 1);
  SpecPeerConnection.hold = true; // the first re-offer's createOffer is still pending when its pc closes
  room._handle({ type: "media_closed", reason: "worker_lost" });
  await until(() => SpecPeerConnection.made.length === 2); // the re-offer is under way
  room._handle({ type: "media_closed", reason: "worker_lost" });
  await until(() => offers().length === 2);
  assert.equal(SpecPeerConnection.made.length, 3);
  assert.equal(offers()[1].sdp, "v=0 pc2", "the offer comes from the newest connection");
  await until(() => room.media.pc?.remoteDescription !== null);
  assert.equal(room.media.pc, SpecPeerConnection.made[2]);
  room.close();
});

test("a re-offer refused as `unavailable` (every media server restarting) is sent again", async () => {
  SpecPeerConnection.made = [];
  const room = new VisitRoom({ roomId: "visit-1", token: "t", baseUrl: "http://127.0.0.1:1", WebSocket: OfferSocket, RTCPeerConnection: SpecPeerConnection });
  await room.connect();
  await room.media.start({ videoSlots: 1, audioSlots: 1 });
  const errors = [];
  room.media.on("error", (error) => errors.push(error.code));
  OfferSocket.refuse = 2;
  room._handle({ type: "media_closed", reason: "worker_lost" });
  const offers = () => ScriptedSocket.last.sent.filter((m) => m.type === "offer");
  await until(() => offers().length === 4, 5000);
  await until(() => room.media.pc?.remoteDescription !== null);
  assert.deepEqual(errors, ["unavailable", "unavailable"]);
  assert.equal(SpecPeerConnection.made.length, 2, "the same connection offers again");
  room.close();
});
