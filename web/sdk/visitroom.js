/**
 * visitroom JS SDK: a dependency-free ES module for the visitroom wire protocol
 * (docs/protocol.md) and its media (one RTCPeerConnection per participant).
 *
 *   import { VisitRoom } from "https://visits.example.org/sdk/visitroom.js";
 *   const room = new VisitRoom({ roomId: "visit-1", name: "Pat Doe" });
 *   room.on("lobby_status", ({ status, message }) => ...);
 *   room.on("admitted", async () => { await room.media.start({ audio, video }); });
 *   await room.connect();
 *
 * Everything the server sends is emitted under its `type` (`knock`, `lobby`,
 * `roster`, `slots`, ...); derived events (`statechange`, `rosterchange`,
 * `lobbychange`, `reconnecting`, `reconnected`, `disconnected`, `tracks`)
 * keep a UI in step without re-implementing the bookkeeping. See docs/sdk.md.
 *
 * @module visitroom
 */

export const PROTOCOL = "visitroom.v1.json";
export const REJECTED_TEXT =
  "The host did not grant you access. If you were invited to this room, " +
  "please contact the person who invited you.";
export const LEFT_TEXT = "You've left the room";
/** The server keeps a dropped participant's place this long (VISITROOM_RESUME_WINDOW). */
export const RESUME_WINDOW_MS = 30000;
export const MAX_PUBLISHED = Object.freeze({ audio: 1, video: 2 });

const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;
const CLOSE_TOO_BIG = 1009;
/** Close codes after which the session is over and must not be resumed. */
const FINAL_CLOSE_CODES = new Set([CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG]);

/**
 * A refused request or a refused session.
 * `code` is a protocol error code (`unauthorized`, `outside_join_window`, ...)
 * or `disconnected` / `timeout` for local failures; `details` holds extra
 * fields of the server's error (`opens_at`, `closes_at`).
 */
export class VisitRoomError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Record<string, unknown>} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "VisitRoomError";
    this.code = code;
    this.details = details;
  }
}

/** A minimal event emitter: `on` returns a function that unsubscribes. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * @param {string} type
   * @param {(detail: any) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** @param {string} type @param {Function} listener */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /**
   * @param {string} type
   * @param {(detail: any) => void} listener
   * @returns {() => void}
   */
  once(type, listener) {
    const off = this.on(type, (detail) => {
      off();
      listener(detail);
    });
    return off;
  }

  /** @param {string} type @param {unknown} [detail] */
  emit(type, detail) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(detail);
      } catch (error) {
        // One broken listener must not stop the others or the protocol loop.
        console.error(`visitroom: a "${type}" listener failed`, error);
      }
    }
  }
}

// --- pure helpers (exported for tests and for front ends) -------------------------------

/**
 * The WebSocket URL of a room.
 * @param {string} baseUrl  http(s) origin of the server, e.g. "https://visits.example.org"
 * @param {string} roomId
 */
export function roomSocketUrl(baseUrl, roomId) {
  const url = new URL(`/v1/rooms/${encodeURIComponent(roomId)}/ws`, baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** @param {string} baseUrl */
export function precallSocketUrl(baseUrl) {
  const url = new URL("/v1/precall/ws", baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential with jitter, capped.
 * @param {number} attempt
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options]
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 5000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Whether a socket closed with `code` may be resumed.
 * @param {number} code
 */
export function isResumableClose(code) {
  return !FINAL_CLOSE_CODES.has(code);
}

/**
 * "HH:MM" in the local time zone of `date` (24-hour clock).
 * @param {Date} date
 */
export function formatClock(date) {
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** @param {number} n */
function clampSlots(n) {
  return Math.max(0, Math.min(8, Math.floor(Number(n) || 0)));
}

/**
 * Merge a `slots` message into the tracks of receive transceivers. `source`
 * (`audio`, `camera` or `screen`) says which of the sender's tracks fills the
 * slot when the server tells (a presenter fills two video slots); else null.
 * @param {{mid: string, kind: string, participant_id: string|null, source?: string}[]} slots
 * @param {Map<string, MediaStreamTrack>} tracksByMid
 * @returns {{mid: string, kind: string, participantId: string|null, source: string|null, track: MediaStreamTrack|null}[]}
 */
export function mapSlots(slots, tracksByMid) {
  return slots.map((slot) => ({
    mid: String(slot.mid),
    kind: slot.kind,
    participantId: slot.participant_id ?? null,
    source: slot.participant_id ? (slot.source ?? null) : null,
    track: tracksByMid.get(String(slot.mid)) ?? null,
  }));
}

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

// --- the room ------------------------------------------------------------------------

/**
 * @typedef {{id: string, name: string, role: "host"|"guest"}} Person
 * @typedef {{id: string, name: string, status: "waiting"|"on_hold", message?: string, knocked_at: number}} WaitingGuest
 * @typedef {{id: string, name: string, participant_ids: string[]}} BreakoutRoom
 * @typedef {"idle"|"connecting"|"waiting"|"joined"|"reconnecting"|"left"|"rejected"|"closed"} RoomState
 */

/**
 * One participant's connection to one room.
 *
 * Events (`room.on(type, fn)`): every server message by its type, and
 * `statechange` ({state}), `rosterchange` (Person[]), `lobbychange`
 * (WaitingGuest[]), `reconnecting` ({attempt, delayMs}), `reconnected`,
 * `disconnected` ({code, reason}), `message` (every raw server message).
 */
export class VisitRoom extends Emitter {
  /**
   * @param {{
   *   roomId: string,
   *   token?: string|null,
   *   name?: string|null,
   *   baseUrl?: string,
   *   resume?: boolean,
   *   requestTimeoutMs?: number,
   *   WebSocket?: typeof WebSocket,
   *   RTCPeerConnection?: typeof RTCPeerConnection,
   * }} options
   */
  constructor(options) {
    super();
    if (!options || !options.roomId) throw new TypeError("VisitRoom needs a roomId");
    this.roomId = options.roomId;
    this.baseUrl = options.baseUrl ?? globalThis.location?.origin ?? "";
    this.resumeEnabled = options.resume ?? true;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    // Kept in memory only: never persisted, never put in a URL.
    this._token = options.token ?? null;
    this._name = options.name ?? null;
    this._resumeToken = null;
    /** @type {WebSocket|null} */
    this._ws = null;
    this._nextId = 1;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    this._droppedAt = 0;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._final = false;

    /** @type {RoomState} */
    this.state = "idle";
    /** @type {string|null} */
    this.participantId = null;
    /** @type {"host"|"guest"|null} */
    this.role = null;
    /** @type {{status: "waiting"|"on_hold", message: string|null}} */
    this.lobbyStatus = { status: "waiting", message: null };
    /** @type {Map<string, Person>} joined participants of the place I am in */
    this.participants = new Map();
    /** @type {Map<string, WaitingGuest>} guests in the lobby (hosts only) */
    this.waiting = new Map();
    /** @type {{rooms: BreakoutRoom[], main_participant_ids: string[], ends_at: string|null}|null} */
    this.breakouts = null;
    /** @type {{room: {id: string, name: string}|null, ends_at: string|null}} */
    this.breakout = { room: null, ends_at: null };
    /** @type {string|null} */
    this.activeSpeaker = null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** @type {MediaSession|null} */
    this._media = null;
  }

  /** True once the host let me in (or I am a host). */
  get isJoined() {
    return this.state === "joined";
  }

  get isHost() {
    return this.role === "host";
  }

  /** Give the token later (e.g. received by postMessage) before `connect()`. */
  setToken(token) {
    this._token = token;
  }

  /** Give the display name later, before `connect()` (guests without a token). */
  setName(name) {
    this._name = name;
  }

  /**
   * Open the socket and say hello. Resolves with `welcome`; rejects with a
   * VisitRoomError (e.g. `outside_join_window` with `details.opens_at`).
   * @returns {Promise<Record<string, any>>}
   */
  connect() {
    if (this.state !== "idle" && this.state !== "closed") {
      return Promise.reject(new VisitRoomError("bad_state", `already ${this.state}`));
    }
    if (!this._token && !this._name) {
      return Promise.reject(new VisitRoomError("bad_request", "give a token or a name"));
    }
    this._final = false;
    this._setState("connecting");
    const hello = { type: "hello" };
    if (this._token) hello.token = this._token;
    else hello.name = this._name;
    return this._open(hello);
  }

  /** @param {Record<string, any>} hello */
  _open(hello) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new this._WebSocket(roomSocketUrl(this.baseUrl, this.roomId), PROTOCOL);
      this._ws = ws;
      ws.onopen = () => ws.send(JSON.stringify(hello));
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!settled) {
          if (message.type === "welcome") {
            settled = true;
            this._handle(message);
            resolve(message);
            return;
          }
          if (message.type === "error") {
            settled = true;
            const { code, message: text, type: _t, re: _r, ...details } = message;
            this._final = true;
            reject(new VisitRoomError(code, text, details));
            return;
          }
        }
        this._handle(message);
      };
      ws.onclose = (event) => {
        if (this._ws !== ws) return;
        this._ws = null;
        if (!settled) {
          settled = true;
          reject(new VisitRoomError("disconnected", "the connection to the server failed"));
        }
        this._closed(event.code);
      };
    });
  }

  /** @param {number} code */
  _closed(code) {
    this._failPending(new VisitRoomError("disconnected", "the connection dropped"));
    const canResume =
      !this._final &&
      this.resumeEnabled &&
      this._resumeToken &&
      isResumableClose(code) &&
      (this.state === "joined" || this.state === "waiting" || this.state === "reconnecting");
    if (canResume) {
      if (!this._droppedAt) this._droppedAt = Date.now();
      this._scheduleResume();
      return;
    }
    const wasFinal = this._final;
    if (!["left", "rejected"].includes(this.state)) this._setState("closed");
    this._media?.close();
    if (!wasFinal) this.emit("disconnected", { code, reason: "closed" });
  }

  _scheduleResume() {
    const elapsed = Date.now() - this._droppedAt;
    const delayMs = backoffDelay(this._attempt);
    if (elapsed + delayMs > RESUME_WINDOW_MS - 1000) {
      this._giveUp("the connection could not be restored in time");
      return;
    }
    this._attempt += 1;
    this._setState("reconnecting");
    this.emit("reconnecting", { attempt: this._attempt, delayMs });
    this._reconnectTimer = setTimeout(() => this._resume(), delayMs);
  }

  async _resume() {
    this._reconnectTimer = null;
    try {
      await this._open({ type: "hello", resume: this._resumeToken });
    } catch (error) {
      if (error instanceof VisitRoomError && error.code !== "disconnected") {
        this._giveUp("the server could not restore the session");
      }
      // A plain network failure: `_closed` already scheduled the next attempt.
    }
  }

  /** @param {string} reason */
  _giveUp(reason) {
    this._final = true;
    this._droppedAt = 0;
    this._setState("closed");
    this._media?.close();
    this.emit("disconnected", { code: 0, reason });
  }

  /** @param {RoomState} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("statechange", { state });
  }

  /** @param {Record<string, any>} message */
  _handle(message) {
    this.emit("message", message);
    if ((message.type === "ack" || message.type === "error" || message.type === "answer") && message.re != null) {
      const pending = this._pending.get(String(message.re));
      if (pending) {
        this._pending.delete(String(message.re));
        clearTimeout(pending.timer);
        if (message.type === "error") {
          const { code, message: text, type: _t, re: _r, ...details } = message;
          pending.reject(new VisitRoomError(code, text, details));
        } else {
          pending.resolve(message);
        }
      }
    }
    const handler = this._handlers()[message.type];
    if (handler) handler.call(this, message);
    this.emit(message.type, message);
  }

  _handlers() {
    return {
      welcome: this._onWelcome,
      lobby_status: this._onLobbyStatus,
      admitted: this._onAdmitted,
      rejected: this._onRejected,
      left: this._onLeft,
      knock: this._onKnock,
      lobby: this._onLobby,
      lobby_left: this._onLobbyLeft,
      roster: this._onRoster,
      participant_joined: this._onParticipantJoined,
      participant_left: this._onParticipantLeft,
      active_speaker: this._onActiveSpeaker,
      breakouts: this._onBreakouts,
      breakout: this._onBreakout,
      slots: this._onSlots,
      media_closed: this._onMediaClosed,
    };
  }

  _onWelcome(m) {
    const resumed = this._droppedAt !== 0;
    this.participantId = m.participant_id;
    this.role = m.role;
    this._resumeToken = m.resume_token || null;
    this.iceServers = Array.isArray(m.ice_servers) ? m.ice_servers : [];
    this._droppedAt = 0;
    this._attempt = 0;
    this._setState(m.status === "joined" ? "joined" : "waiting");
    if (resumed) this.emit("reconnected", { participantId: this.participantId });
  }

  _onLobbyStatus(m) {
    this.lobbyStatus = { status: m.status, message: m.message ?? null };
  }

  _onAdmitted() {
    this._setState("joined");
  }

  _onRejected() {
    this._final = true;
    this._setState("rejected");
    this._media?.close();
  }

  _onLeft() {
    this._final = true;
    this._setState("left");
    this._media?.close();
  }

  _onKnock(m) {
    const p = m.participant;
    this.waiting.set(p.id, { id: p.id, name: p.name, status: "waiting", knocked_at: Date.now() / 1000 });
    this.emit("lobbychange", [...this.waiting.values()]);
  }

  _onLobby(m) {
    this.waiting = new Map(m.waiting.map((w) => [w.id, w]));
    this.emit("lobbychange", [...this.waiting.values()]);
  }

  _onLobbyLeft(m) {
    this.waiting.delete(m.participant_id);
    this.emit("lobbychange", [...this.waiting.values()]);
  }

  _onRoster(m) {
    this.participants = new Map(m.participants.map((p) => [p.id, p]));
    this.emit("rosterchange", [...this.participants.values()]);
  }

  _onParticipantJoined(m) {
    this.participants.set(m.participant.id, m.participant);
    this.emit("rosterchange", [...this.participants.values()]);
  }

  _onParticipantLeft(m) {
    this.participants.delete(m.participant_id);
    if (this.activeSpeaker === m.participant_id) this.activeSpeaker = null;
    this.emit("rosterchange", [...this.participants.values()]);
  }

  _onActiveSpeaker(m) {
    this.activeSpeaker = m.participant_id;
  }

  _onBreakouts(m) {
    this.breakouts = m.rooms.length
      ? { rooms: m.rooms, main_participant_ids: m.main_participant_ids ?? [], ends_at: m.ends_at ?? null }
      : null;
  }

  _onBreakout(m) {
    this.breakout = { room: m.room ?? null, ends_at: m.ends_at ?? null };
  }

  _onSlots(m) {
    this._media?._onSlots(m.slots);
  }

  _onMediaClosed(m) {
    this._media?._onMediaClosed(m.reason);
  }

  _failPending(error) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this._pending.delete(id);
    }
  }

  /**
   * Send a message without waiting for an answer.
   * @param {Record<string, any>} message
   */
  send(message) {
    if (!this._ws || this._ws.readyState !== 1) {
      throw new VisitRoomError("disconnected", "not connected");
    }
    this._ws.send(JSON.stringify(message));
  }

  /**
   * Send a request with an `id`; resolves with the `ack` (or `answer`), rejects with the `error`.
   * @param {Record<string, any>} message
   * @returns {Promise<Record<string, any>>}
   */
  request(message) {
    const id = `c${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new VisitRoomError("timeout", `no answer to ${message.type}`));
      }, this.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this.send({ ...message, id });
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(error);
      }
    });
  }

  // --- host actions ---

  /** Let in the named guests. @param {string[]} participantIds */
  admit(participantIds) {
    return this.request({ type: "admit", participant_ids: participantIds });
  }

  /** Let in everyone waiting (on hold included). */
  admitAll() {
    return this.request({ type: "admit", all: true });
  }

  /** Keep a guest waiting and show them `message`. */
  hold(participantId, message) {
    return this.request({ type: "hold", participant_id: participantId, message });
  }

  reject(participantId) {
    return this.request({ type: "reject", participant_id: participantId });
  }

  remove(participantId) {
    return this.request({ type: "remove", participant_id: participantId });
  }

  removeAll() {
    return this.request({ type: "remove_all" });
  }

  /** End the meeting for everyone, hosts and the lobby included. */
  endForAll() {
    return this.request({ type: "end" });
  }

  /** Ask for a fresh `lobby` snapshot. */
  refreshLobby() {
    return this.request({ type: "lobby" });
  }

  /**
   * @param {{name: string, participant_ids?: string[]}[]} rooms
   * @param {{auto?: boolean, durationS?: number}} [options]
   */
  openBreakouts(rooms, { auto = false, durationS } = {}) {
    const message = { type: "breakout_open", rooms, auto };
    if (durationS) message.duration_s = durationS;
    return this.request(message);
  }

  /** @param {string} participantId @param {string|null} to breakout id, or null for the main room */
  moveToBreakout(participantId, to) {
    return this.request({ type: "breakout_move", participant_id: participantId, to });
  }

  broadcast(text) {
    return this.request({ type: "breakout_broadcast", text });
  }

  /** @param {number} [countdownS] 0 or absent: everyone returns now */
  closeBreakouts(countdownS = 0) {
    return this.request({ type: "breakout_close", countdown_s: countdownS });
  }

  // --- everyone ---

  /** Ask the hosts for help from inside a breakout. */
  requestHelp() {
    return this.request({ type: "help_request" });
  }

  /** Keep a participant's video in one of my slots (null unpins). */
  pin(participantId) {
    return this.request({ type: "pin", participant_id: participantId });
  }

  /** Leave the room (or the lobby). Resolves once the server said `left`. */
  async leave() {
    if (!this._ws) {
      this._final = true;
      this._setState("left");
      return;
    }
    const left = new Promise((resolve) => this.once("left", resolve));
    await this.request({ type: "leave" }).catch(() => undefined);
    await Promise.race([left, new Promise((resolve) => setTimeout(resolve, 3000))]);
  }

  /** The media session (created on first use). */
  get media() {
    if (!this._media) this._media = new MediaSession(this);
    return this._media;
  }

  /** Close everything without telling the server (it will treat it as a drop). */
  close() {
    this._final = true;
    clearTimeout(this._reconnectTimer);
    this._media?.close();
    this._ws?.close(CLOSE_NORMAL);
    this._ws = null;
    this._setState("closed");
  }
}

// --- media -----------------------------------------------------------------------------

/**
 * The participant's RTCPeerConnection: published camera, microphone and
 * screen, and receive slots that the server fills (see `slots`).
 *
 * Events: `tracks` (every receive slot: {mid, kind, participantId, track}),
 * `connectionstate` ({state}), `error` (VisitRoomError), `localtracks`.
 */
export class MediaSession extends Emitter {
  /** @param {VisitRoom} room */
  constructor(room) {
    super();
    this.room = room;
    this.videoSlots = 4;
    this.audioSlots = 3;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {{microphone: MediaStreamTrack|null, camera: MediaStreamTrack|null, screen: MediaStreamTrack|null}} */
    this.local = { microphone: null, camera: null, screen: null };
    /** @type {{microphone?: RTCRtpTransceiver, camera?: RTCRtpTransceiver, screen?: RTCRtpTransceiver}} */
    this._publish = {};
    /** @type {RTCRtpTransceiver[]} */
    this._audioSlots = [];
    /** @type {RTCRtpTransceiver[]} */
    this._videoSlots = [];
    /** @type {Map<string, MediaStreamTrack>} */
    this._tracksByMid = new Map();
    this._slots = [];
    this._queue = Promise.resolve();
    this._offerSent = false;
    this._closed = false;
  }

  /** Every receive slot with its track and who fills it. */
  get slots() {
    return mapSlots(this._slots, this._tracksByMid);
  }

  /**
   * Start media: publish the given tracks and open the receive slots.
   * @param {{audio?: MediaStreamTrack|null, video?: MediaStreamTrack|null, videoSlots?: number, audioSlots?: number}} [options]
   */
  start({ audio = null, video = null, videoSlots, audioSlots } = {}) {
    if (videoSlots !== undefined) this.videoSlots = clampSlots(videoSlots);
    if (audioSlots !== undefined) this.audioSlots = clampSlots(audioSlots);
    this.local.microphone = audio;
    this.local.camera = video;
    this._closed = false;
    return this._enqueue(() => this._negotiate());
  }

  /** Publish another microphone track (or none). @param {MediaStreamTrack|null} track */
  setMicrophone(track) {
    this.local.microphone = track;
    return this._enqueue(() => this._negotiate());
  }

  /** Publish another camera track (or none). @param {MediaStreamTrack|null} track */
  setCamera(track) {
    this.local.camera = track;
    return this._enqueue(() => this._negotiate());
  }

  /** Mute: the track keeps its m-line and sends silence. */
  setMicrophoneMuted(muted) {
    if (this.local.microphone) this.local.microphone.enabled = !muted;
  }

  /** Camera off: the track keeps its m-line and sends black frames. */
  setCameraOff(off) {
    if (this.local.camera) this.local.camera.enabled = !off;
  }

  /**
   * Share the screen (asks the browser for a screen, window or tab).
   * Resolves with the track; the share stops by itself when the browser's "Stop sharing" is used.
   */
  async startScreenShare() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const [track] = stream.getVideoTracks();
    track.addEventListener("ended", () => {
      if (this.local.screen === track) this.stopScreenShare();
    });
    this.local.screen = track;
    await this._enqueue(() => this._negotiate());
    return track;
  }

  stopScreenShare() {
    const track = this.local.screen;
    this.local.screen = null;
    track?.stop();
    return this._enqueue(() => this._negotiate());
  }

  /**
   * Choose how many video and audio slots to receive (renegotiates).
   * @param {{video?: number, audio?: number}} counts
   */
  setSlots({ video, audio }) {
    if (video !== undefined) this.videoSlots = clampSlots(video);
    if (audio !== undefined) this.audioSlots = clampSlots(audio);
    return this._enqueue(() => this._negotiate());
  }

  /** @param {() => Promise<void>} job */
  _enqueue(job) {
    const run = this._queue.then(job, job);
    this._queue = run.catch(() => undefined);
    return run;
  }

  _createPeerConnection() {
    const Impl = this.room._RTCPeerConnection;
    const pc = new Impl({ iceServers: this.room.iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    pc.ontrack = (event) => {
      const mid = event.transceiver?.mid;
      if (mid != null) this._tracksByMid.set(String(mid), event.track);
      this.emit("tracks", this.slots);
    };
    pc.onicecandidate = (event) => {
      // Candidates found after the offer went out are trickled; earlier ones are in the SDP.
      if (!event.candidate || !this._offerSent || !event.candidate.candidate) return;
      this.room
        .request({
          type: "candidate",
          candidate: event.candidate.candidate,
          sdpMid: event.candidate.sdpMid,
          sdpMLineIndex: event.candidate.sdpMLineIndex,
        })
        .catch(() => undefined);
    };
    pc.onconnectionstatechange = () => this.emit("connectionstate", { state: pc.connectionState });
    return pc;
  }

  /** Make the transceivers match what is published and how many slots are wanted. */
  async _applyPlan(pc) {
    const publish = async (role, kind, track) => {
      let transceiver = this._publish[role];
      if (!transceiver && !track) return;
      if (!transceiver) {
        transceiver = pc.addTransceiver(kind, { direction: "inactive" });
        preferCodecs(transceiver, kind);
        this._publish[role] = transceiver;
      }
      await transceiver.sender.replaceTrack(track);
      transceiver.direction = track ? "sendonly" : "inactive";
    };
    await publish("microphone", "audio", this.local.microphone);
    await publish("camera", "video", this.local.camera);
    await publish("screen", "video", this.local.screen);
    this._resizeSlots(pc, "audio", this._audioSlots, this.audioSlots);
    this._resizeSlots(pc, "video", this._videoSlots, this.videoSlots);
  }

  _resizeSlots(pc, kind, list, wanted) {
    while (list.length < wanted) {
      const transceiver = pc.addTransceiver(kind, { direction: "recvonly" });
      preferCodecs(transceiver, kind);
      list.push(transceiver);
    }
    list.forEach((transceiver, index) => {
      transceiver.direction = index < wanted ? "recvonly" : "inactive";
    });
  }

  async _negotiate() {
    if (this._closed || !this.room.isJoined) return;
    if (!this.pc) this.pc = this._createPeerConnection();
    const pc = this.pc;
    await this._applyPlan(pc);
    this._offerSent = false;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc, 2500);
    if (pc !== this.pc) return;
    const sdp = pc.localDescription.sdp;
    // From here on, newly found candidates are not in `sdp`: trickle them. The server
    // handles a socket's messages in order, so they arrive after the offer.
    this._offerSent = true;
    let answer;
    try {
      answer = await this.room.request({ type: "offer", sdp });
    } catch (error) {
      // Roll back so the next negotiation starts from a stable state.
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      this.emit("error", error);
      throw error;
    }
    if (pc !== this.pc) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.emit("localtracks", { ...this.local });
    this.emit("tracks", this.slots);
  }

  _onSlots(slots) {
    this._slots = slots;
    this.emit("tracks", this.slots);
  }

  _onMediaClosed(reason) {
    // The SFU dropped our transport: start over with a fresh connection and offer.
    this._dropPeerConnection();
    this.emit("connectionstate", { state: "reconnecting", reason });
    this._enqueue(() => this._negotiate()).catch(() => undefined);
  }

  _dropPeerConnection() {
    this.pc?.close();
    this.pc = null;
    this._publish = {};
    this._audioSlots = [];
    this._videoSlots = [];
    this._tracksByMid.clear();
    this._slots = [];
  }

  /** @returns {Promise<RTCStatsReport|null>} */
  async getStats() {
    return this.pc ? this.pc.getStats() : null;
  }

  /**
   * A summary of `getStats()`: every received stream with who fills its slot,
   * every published stream, and the selected candidate pair.
   * @returns {Promise<{inbound: InboundStats[], outbound: OutboundStats[], roundTripTimeMs: number|null, availableOutgoingKbps: number|null}>}
   */
  async stats() {
    const report = await this.getStats();
    const who = new Map(this._slots.map((s) => [String(s.mid), s.participant_id ?? null]));
    const roles = new Map(Object.entries(this._publish).map(([role, t]) => [t.mid, role]));
    return summarizeStats(report, who, roles);
  }

  /** Stop publishing and receiving; local tracks are left to their owner. */
  close() {
    this._closed = true;
    this.local.screen?.stop();
    this.local.screen = null;
    this._dropPeerConnection();
    this.emit("tracks", []);
  }
}

/**
 * @typedef {{mid: string, kind: string, participantId: string|null, packetsReceived: number,
 *   packetsLost: number, bytesReceived: number, jitterMs: number|null, framesDecoded: number,
 *   framesPerSecond: number|null, frameWidth: number|null, frameHeight: number|null}} InboundStats
 * @typedef {{mid: string, kind: string, role: string|null, bytesSent: number, packetsSent: number,
 *   framesEncoded: number, frameWidth: number|null, frameHeight: number|null}} OutboundStats
 */

/**
 * Summarize an RTCStatsReport (pure: exported for tests and front ends).
 * @param {RTCStatsReport|Map<string, any>|null} report
 * @param {Map<string, string|null>} participantByMid who fills each receive slot
 * @param {Map<string, string>} [roleByMid] "microphone"/"camera"/"screen" for published m-lines
 */
export function summarizeStats(report, participantByMid, roleByMid = new Map()) {
  /** @type {InboundStats[]} */
  const inbound = [];
  /** @type {OutboundStats[]} */
  const outbound = [];
  let roundTripTimeMs = null;
  let availableOutgoingKbps = null;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  report?.forEach((s) => {
    if (s.type === "inbound-rtp") {
      const mid = String(s.mid ?? "");
      inbound.push({
        mid,
        kind: s.kind,
        participantId: participantByMid.get(mid) ?? null,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        jitterMs: num(s.jitter) === null ? null : s.jitter * 1000,
        framesDecoded: s.framesDecoded ?? 0,
        framesPerSecond: num(s.framesPerSecond),
        frameWidth: num(s.frameWidth),
        frameHeight: num(s.frameHeight),
      });
    } else if (s.type === "outbound-rtp") {
      const mid = String(s.mid ?? "");
      outbound.push({
        mid,
        kind: s.kind,
        role: roleByMid.get(mid) ?? null,
        bytesSent: s.bytesSent ?? 0,
        packetsSent: s.packetsSent ?? 0,
        framesEncoded: s.framesEncoded ?? 0,
        frameWidth: num(s.frameWidth),
        frameHeight: num(s.frameHeight),
      });
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      if (num(s.currentRoundTripTime) !== null) roundTripTimeMs = s.currentRoundTripTime * 1000;
      if (num(s.availableOutgoingBitrate) !== null) availableOutgoingKbps = s.availableOutgoingBitrate / 1000;
    }
  });
  inbound.sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }));
  outbound.sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }));
  return { inbound, outbound, roundTripTimeMs, availableOutgoingKbps };
}

/**
 * Put VP8 (and RTX) first for video and Opus for audio: the SFU forwards
 * without transcoding, and a short SDP stays far below the server's limit.
 * @param {RTCRtpTransceiver} transceiver
 * @param {"audio"|"video"} kind
 */
function preferCodecs(transceiver, kind) {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.(kind);
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const wanted = kind === "video" ? ["video/vp8", "video/rtx"] : ["audio/opus"];
  const codecs = caps.codecs.filter((c) => wanted.includes(c.mimeType.toLowerCase()));
  try {
    if (codecs.length) transceiver.setCodecPreferences(codecs);
  } catch {
    // Older browsers refuse some lists; the full default list works too.
  }
}

/**
 * @param {RTCPeerConnection} pc
 * @param {number} timeoutMs
 */
function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// --- pre-call test -------------------------------------------------------------------------

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
