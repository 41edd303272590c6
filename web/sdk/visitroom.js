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
 * With `storage: sessionStorage` a reload of the tab resumes the same session.
 *
 * This file holds the room (signalling); core.js the shared helpers, media.js
 * the RTCPeerConnection, precall.js the pre-call test. Everything is
 * re-exported here, so front ends import this file only.
 *
 * @module visitroom
 */

import {
  backoffDelay,
  CLOSE_NORMAL,
  Emitter,
  isResumableClose,
  roomSocketUrl,
  PROTOCOL,
  VisitRoomError,
} from "./core.js";
import { MediaSession } from "./media.js";
import { TabSession } from "./session.js";

export * from "./core.js";
export { savedSession, tabStorage, TabSession } from "./session.js";
export { addCameraTransceiver, MediaSession, setEncodingsActive, SIMULCAST_ENCODINGS, summarizeStats, videoSizesOf, WEAK_DOWNLINK_KBPS } from "./media.js";
export { precallVerdict, runPrecallTest } from "./precall.js";

/**
 * @typedef {{id: string, name: string, role: "host"|"guest"}} Person
 * @typedef {{id: string, name: string, status: "waiting"|"on_hold", message?: string, knocked_at: number}} WaitingGuest
 * @typedef {{id: string, name: string, participant_ids: string[]}} BreakoutRoom
 * @typedef {{id: string, name: string, reason: "rejected"|"removed"}} Refusal
 * @typedef {"idle"|"connecting"|"waiting"|"joined"|"reconnecting"|"left"|"rejected"|"replaced"|"closed"} RoomState
 */

/**
 * One participant's connection to one room.
 *
 * Events (`room.on(type, fn)`): every server message by its type, and
 * `statechange` ({state}), `rosterchange` (Person[]), `lobbychange`
 * (WaitingGuest[]), `refusalschange` (Refusal[], hosts only), `reconnecting` ({attempt, delayMs}), `reconnected`,
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
   *   storage?: Storage|null,
   *   requestTimeoutMs?: number,
   *   heartbeatMs?: number,
   *   WebSocket?: typeof WebSocket,
   *   RTCPeerConnection?: typeof RTCPeerConnection,
   *   simulcast?: boolean,
   * }} options
   */
  constructor(options) {
    super();
    if (!options || !options.roomId) throw new TypeError("VisitRoom needs a roomId");
    this.roomId = options.roomId;
    this.baseUrl = options.baseUrl ?? globalThis.location?.origin ?? "";
    this.resumeEnabled = options.resume ?? true;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    // A socket whose network died (Wi-Fi gone) looks open for minutes: after this long
    // without a message the SDK sends `ping`, and without an answer it resumes on a new
    // socket (0: never). The media path's failures check the socket at once too.
    this.heartbeatMs = options.heartbeatMs ?? 10000;
    this._lastHeard = 0;
    this._heartbeatTimer = null;
    /** @type {Promise<boolean>|null} */
    this._checking = null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    // Publish the camera with simulcast where the browser can (false: one encoding).
    this._simulcast = options.simulcast ?? true;
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
    // How long the server keeps a dropped place: its `welcome` says (a restart counts
    // too). Null until it does; without it the SDK does not resume on its own.
    /** @type {number|null} */
    this._resumeWindowMs = null;
    this._final = false;
    // The tab's session (sessionStorage), so a reload resumes instead of starting over.
    this._session = options.storage ? new TabSession(this.roomId, options.storage) : null;
    this._restoring = false;
    this._unloading = false;
    /** True when `connect()` resumed the session this tab kept (a reload). */
    this.restored = false;
    /** The front end's own small state, kept with the session (e.g. camera on/off). */
    this.sessionData = {};
    if (this._session) {
      globalThis.addEventListener?.("pagehide", () => {
        this._unloading = true;
        this._session?.markDropped();
      });
    }

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
    /** @type {Refusal[]} guests turned away who may not knock again (hosts only) */
    this.refusals = [];
    /** @type {{rooms: BreakoutRoom[], main_participant_ids: string[], ends_at: string|null}|null} */
    this.breakouts = null;
    /** @type {{room: {id: string, name: string}|null, ends_at: string|null}} */
    this.breakout = { room: null, ends_at: null };
    /** @type {string|null} */
    this.activeSpeaker = null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /**
     * The server's text and count limits (from `welcome`): `name`, `hold_message`,
     * `broadcast`, `breakouts`, `breakout_name`; empty until then or if it did not say.
     * @type {Record<string, number>}
     */
    this.limits = {};
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
    const saved = this._session?.load() ?? null;
    if (!this._token && !this._name && !saved) {
      return Promise.reject(new VisitRoomError("bad_request", "give a token or a name"));
    }
    this._final = false;
    this._setState("connecting");
    if (!saved) return this._open(this._hello());
    // A reload: take the kept place back (the server closes the old socket if still open).
    this._name ??= saved.name;
    this.sessionData = { ...saved.data, ...this.sessionData };
    this._restoring = true;
    return this._helloResume(saved.resume).catch((error) => this._startOver(error));
  }

  _hello() {
    return this._token ? { type: "hello", token: this._token } : { type: "hello", name: this._name };
  }

  /**
   * The kept session could not be resumed (past the window, removed): start a new one
   * with the token or name, if there is one. A network failure keeps it for a retry.
   * @param {VisitRoomError} error
   */
  _startOver(error) {
    this._restoring = false;
    if (error.code === "disconnected") throw error;
    this._session?.clear();
    if (!this._token && !this._name) throw error;
    this._final = false;
    this._setState("connecting");
    return this._open(this._hello());
  }

  /** @param {Record<string, any>} hello */
  _open(hello) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new this._WebSocket(roomSocketUrl(this.baseUrl, this.roomId), PROTOCOL);
      this._ws = ws;
      ws.onopen = () => ws.send(JSON.stringify(hello));
      ws.onmessage = (event) => {
        this._lastHeard = Date.now();
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

  _startHeartbeat() {
    if (this._heartbeatTimer || !(this.heartbeatMs > 0)) return;
    this._heartbeatTimer = setInterval(() => {
      if (["closed", "left", "rejected", "replaced"].includes(this.state)) {
        clearInterval(this._heartbeatTimer);
        this._heartbeatTimer = null;
        return;
      }
      const live = this.state === "joined" || this.state === "waiting";
      if (live && this._ws && Date.now() - this._lastHeard >= this.heartbeatMs) {
        this.checkConnection(Math.min(4000, Math.max(100, this.heartbeatMs / 2)));
      }
    }, Math.max(250, this.heartbeatMs / 2));
    // Under Node (tests, server-side use) the heartbeat alone does not keep the process alive.
    this._heartbeatTimer?.unref?.();
  }

  /**
   * Whether the socket still carries messages: `ping`, answered within `timeoutMs`.
   * Without an answer the socket is given up and the session resumes on a new one
   * (a network change leaves the old TCP connection silently dead). Resolves true
   * when the server answered.
   * @param {number} [timeoutMs]
   * @returns {Promise<boolean>}
   */
  checkConnection(timeoutMs = 4000) {
    if (this._checking) return this._checking;
    const ws = this._ws;
    if (!ws) return Promise.resolve(false);
    this._checking = this.request({ type: "ping" }, timeoutMs)
      .then(() => true)
      .catch((error) => {
        if (error instanceof VisitRoomError && error.code === "timeout" && this._ws === ws) {
          this._ws = null; // its onclose, whenever it comes, is ignored
          ws.close();
          this._closed(1006);
        }
        return false;
      })
      .finally(() => {
        this._checking = null;
      });
    return this._checking;
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
    if (this._resumeToken && !this._unloading) this._session?.clear(); // the session is over
    if (!["left", "rejected", "replaced"].includes(this.state)) this._setState("closed");
    this._media?.close();
    if (!wasFinal) this.emit("disconnected", { code, reason: "closed" });
  }

  _scheduleResume() {
    const elapsed = Date.now() - this._droppedAt;
    const delayMs = backoffDelay(this._attempt);
    if (this._resumeWindowMs === null || elapsed + delayMs > this._resumeWindowMs - 1000) {
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
      await this._helloResume(this._resumeToken);
    } catch (error) {
      if (error instanceof VisitRoomError && error.code !== "disconnected") {
        this._giveUp("the server could not restore the session");
      }
      // A plain network failure: `_closed` already scheduled the next attempt.
    }
  }

  /**
   * Take a kept place back: after a dropped socket (automatic) and after a reload (the
   * token kept in the tab's storage). The one way this SDK resumes.
   * @param {string} resumeToken
   */
  _helloResume(resumeToken) {
    return this._open({ type: "hello", resume: resumeToken });
  }

  /** @param {string} reason */
  _giveUp(reason) {
    this._final = true;
    this._droppedAt = 0;
    this._session?.clear();
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
      rejected: () => this._end("rejected"),
      left: () => this._end("left"),
      // A newer connection (another tab or window) took this session's place.
      replaced: () => this._end("replaced"),
      knock: this._onKnock,
      lobby: this._onLobby,
      lobby_left: this._onLobbyLeft,
      refusals: this._onRefusals,
      roster: this._onRoster,
      participant_joined: this._onParticipantJoined,
      participant_left: this._onParticipantLeft,
      active_speaker: this._onActiveSpeaker,
      breakouts: this._onBreakouts,
      breakout: this._onBreakout,
      slots: this._onSlots,
      media_closed: this._onMediaClosed,
      ice_restart_needed: this._onIceRestartNeeded,
      publish_layers: (m) => this._media?._onPublishLayers(m.mid, m.active).catch(() => undefined),
      downlink: (m) => this._media?._onDownlink(m.estimate_kbps),
    };
  }

  _onWelcome(m) {
    const resumed = this._droppedAt !== 0;
    this.participantId = m.participant_id;
    this.role = m.role;
    this._resumeToken = m.resume_token || null;
    this.iceServers = Array.isArray(m.ice_servers) ? m.ice_servers : [];
    this.limits = m.limits && typeof m.limits === "object" ? { ...m.limits } : {};
    if (Number.isFinite(m.resume_window_s) && m.resume_window_s > 0) this._resumeWindowMs = m.resume_window_s * 1000;
    this._droppedAt = 0;
    this._attempt = 0;
    this._startHeartbeat();
    this.restored = this.restored || this._restoring;
    this._restoring = false;
    this._saveSession();
    this._setState(m.status === "joined" ? "joined" : "waiting");
    if (resumed) {
      this.emit("reconnected", { participantId: this.participantId });
      this._media?._afterResume();
    }
  }

  _onLobbyStatus(m) {
    this.lobbyStatus = { status: m.status, message: m.message ?? null };
  }

  _onAdmitted() {
    this._setState("joined");
  }

  _saveSession() {
    if (!this._session || !this._resumeToken) return;
    const { participantId, role } = this;
    const record = { resume: this._resumeToken, participantId, role, name: this._name, data: this.sessionData };
    this._session.save({ ...record, windowMs: this._resumeWindowMs });
  }

  /**
   * Keep a few values of the front end's own with the session (JSON-safe, small), so a
   * reload finds them again in `sessionData` (e.g. whether the camera was off).
   * @param {Record<string, unknown>} values
   */
  keepSessionData(values) {
    Object.assign(this.sessionData, values);
    this._saveSession();
  }

  /** The session is over for good (rejected, left or replaced): no resume. */
  _end(state) {
    this._final = true;
    this._session?.clear();
    this._setState(state);
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

  _onRefusals(m) {
    this.refusals = m.participants;
    this.emit("refusalschange", [...this.refusals]);
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
    this._media?._onSlots(m.slots, m.publishers);
  }

  _onMediaClosed(m) {
    this._media?._onMediaClosed(m.reason);
  }

  _onIceRestartNeeded() {
    this._media?._restartIce("server");
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
   * @param {number} [timeoutMs] how long to wait for the answer (the room's `requestTimeoutMs`)
   * @returns {Promise<Record<string, any>>}
   */
  request(message, timeoutMs = this.requestTimeoutMs) {
    const id = `c${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new VisitRoomError("timeout", `no answer to ${message.type}`));
      }, timeoutMs);
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

  /**
   * Let a guest who was rejected or removed knock again in this visit.
   * @param {string|{identity: string}} target the participant id they had (see `refusals`),
   *   or `{identity}`: their token's `sub`
   */
  allowKnock(target) {
    if (typeof target === "string") return this.request({ type: "allow_knock", participant_id: target });
    return this.request({ type: "allow_knock", identity: target.identity });
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
    this._failPending(new VisitRoomError("closed", "the room was closed"));
    this._session?.clear();
    clearTimeout(this._reconnectTimer);
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    this._media?.close();
    this._ws?.close(CLOSE_NORMAL);
    this._ws = null;
    this._setState("closed");
  }
}
