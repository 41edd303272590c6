// The media half of the visitroom SDK: one RTCPeerConnection per participant.
// Import from visitroom.js, which re-exports it.

import { backoffDelay, clampSlots, Emitter, mapSlots, VisitRoomError } from "./core.js";

// How long ICE may stay "disconnected" before the session restarts it.
const ICE_DISCONNECTED_GRACE_MS = 1000;
// A dead media path often means a dead network under the signalling socket too: the
// restart's offer goes out only once the socket answers a `ping` this fast.
const SOCKET_CHECK_MS = 2000;
// A restart's offer goes this long after the last UDP candidate (the rest are trickled).
const UDP_SETTLE_MS = 30;
// Nothing at all received on the transport (media, RTCP, the SFU's feedback) for this
// long, read every MEDIA_POLL_MS: the socket is checked at once (a network change that
// killed it leaves the SFU's `ice_restart_needed` undelivered, and Chromium itself calls
// ICE `disconnected` only ~7 s later), and a resume restarts ICE.
const MEDIA_SILENT_MS = 1000;
const MEDIA_POLL_MS = 250;

/**
 * The camera's simulcast encodings, lowest first (docs/protocol.md, "Simulcast"):
 * a quarter, a half and the full resolution, each with three VP8 temporal layers.
 * Each has a maxBitrate: without one, Chromium gives the whole send budget to the
 * encodings left active when the server turns the others off (`publish_layers`),
 * and a 320x180 layer then took 1.5-2 Mbit/s (the SFU's choices assume about these).
 */
export const SIMULCAST_ENCODINGS = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000, scalabilityMode: "L1T3" }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000, scalabilityMode: "L1T3" }),
  Object.freeze({ rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000, scalabilityMode: "L1T3" }),
]);
/** Below this downlink estimate (kbit/s) the `downlink` event says `weak: true`. */
export const WEAK_DOWNLINK_KBPS = 300;
// Rendered sizes are sent this long after the last change (a window resize fires often).
const SIZE_DEBOUNCE_MS = 250;
const MAX_VIDEO_DIMENSION = 8192;

/**
 * The participant's RTCPeerConnection: published camera, microphone and
 * screen, and receive slots that the server fills (see `slots`).
 *
 * Events: `tracks` (every receive slot: {mid, kind, participantId, track}; also
 * when only `publishers` changed),
 * `connectionstate` ({state}), `error` (VisitRoomError), `localtracks`,
 * `downlink` ({estimateKbps, weak}: the server's estimate of this client's downlink),
 * `publishlayers` ({mid, active}: which simulcast encodings of a published track
 * the server needs; the SDK has already turned the others off).
 */
export class MediaSession extends Emitter {
  /** @param {import("./visitroom.js").VisitRoom} room */
  constructor(room) {
    super();
    this.room = room;
    this.videoSlots = 8; // the most the server gives: 9 tiles with our own
    this.audioSlots = 3;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    // Rejected when `pc` is dropped: a pc closed mid-negotiation never settles the
    // operations it had pending (replaceTrack, createOffer...), and the negotiation
    // queue must not wait for them forever (see `_whileOpen`).
    /** @type {Promise<never>} */
    this._pcGone = new Promise(() => undefined);
    this._dropPc = () => undefined;
    // Which media_closed the re-offer retries belong to (a newer one starts over).
    this._reconnects = 0;
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
    /** @type {Map<string, string[]>|null} */
    this._publishers = null;
    this._cameraOff = false;
    this._queue = Promise.resolve();
    this._offerSent = false;
    this._closed = false;
    this._restarting = false;
    // Nothing received for MEDIA_SILENT_MS (`_watchInbound`): a resume restarts ICE.
    this._mediaSilent = false;
    this._inboundTimer = null;
    this._disconnectTimer = null;
    /** Publish the camera with simulcast where the browser can (`start({simulcast})`). */
    this.simulcast = room._simulcast ?? true;
    /** The server's last estimate of this client's downlink in kbit/s (null: none yet). */
    this.downlinkKbps = null;
    /** @type {Map<string, string[]>} mid -> the rids the server last said are needed */
    this._layerWishes = new Map();
    /** @type {Map<string, Element>} receive slot mid -> the element showing it */
    this._observed = new Map();
    /** @type {ResizeObserver|null} */
    this._resizeObserver = null;
    this._sizesTimer = null;
    this._sizesSent = null;
    this._sizesUnsupported = false;
    this._reportsSizes = false;
    this._simulcastRefused = false;
  }

  /** Every receive slot with its track and who fills it. */
  get slots() {
    return mapSlots(this._slots, this._tracksByMid);
  }

  /**
   * Who in my group sends live media, as the server last said: participant id ->
   * its sources (`audio`, `camera`, `screen`); null until a server that tells has.
   * @returns {Map<string, string[]>|null}
   */
  get publishers() {
    return this._publishers;
  }

  /**
   * Whether a participant sends live media of `source` (`audio`, `camera`, `screen`):
   * true or false, or null when the server has not said (an older server).
   * @param {string} participantId @param {string} source
   */
  publishes(participantId, source) {
    if (!this._publishers) return null;
    return (this._publishers.get(participantId) ?? []).includes(source);
  }

  /**
   * Start media: publish the given tracks and open the receive slots.
   * Only once joined (a host, or a guest after `admitted`): before that it rejects
   * with `not_admitted` (still in the lobby) or `bad_state`, and starts nothing.
   * `simulcast: false` publishes the camera as one encoding (default: simulcast where
   * the browser supports it); it applies to a camera transceiver created afterwards.
   * @param {{audio?: MediaStreamTrack|null, video?: MediaStreamTrack|null, videoSlots?: number, audioSlots?: number, simulcast?: boolean}} [options]
   */
  start({ audio = null, video = null, videoSlots, audioSlots, simulcast } = {}) {
    if (!this.room.isJoined) return Promise.reject(notJoined(this.room.state));
    if (simulcast !== undefined) this.simulcast = Boolean(simulcast);
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

  /**
   * Camera off: the track keeps its m-line but nothing is sent (the sender has no
   * track), so the server tells the others this camera is off (`publishers`).
   */
  setCameraOff(off) {
    this._cameraOff = Boolean(off);
    if (this.local.camera) this.local.camera.enabled = !off;
    const sender = this._publish.camera?.sender;
    if (sender && this.local.camera) return sender.replaceTrack(off ? null : this.local.camera).catch(() => undefined);
    return Promise.resolve();
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
    this._pcGone = new Promise((_resolve, reject) => {
      this._dropPc = () => reject(replaced());
    });
    this._pcGone.catch(() => undefined);
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
    pc.onconnectionstatechange = () => {
      // A dropped connection's late events must not speak for the current one.
      if (pc === this.pc) this.emit("connectionstate", { state: pc.connectionState });
    };
    pc.oniceconnectionstatechange = () => this._onIceState(pc);
    this._watchInbound(pc);
    return pc;
  }

  /** Whether anything arrives on `pc`'s transport (see MEDIA_SILENT_MS). */
  _watchInbound(pc) {
    let received = -1;
    let since = Date.now();
    this._mediaSilent = false;
    clearInterval(this._inboundTimer);
    this._inboundTimer = setInterval(async () => {
      if (pc !== this.pc || this._closed || pc.connectionState !== "connected") return;
      let bytes = 0;
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type === "transport") bytes += s.bytesReceived ?? 0;
        });
      } catch {
        return;
      }
      const now = Date.now();
      if (bytes !== received) {
        received = bytes;
        since = now;
        this._mediaSilent = false;
      } else if (now - since >= MEDIA_SILENT_MS && !this._mediaSilent) {
        this._mediaSilent = true;
        this.room.checkConnection(SOCKET_CHECK_MS);
      }
    }, MEDIA_POLL_MS);
  }

  /** Make the transceivers match what is published and how many slots are wanted. */
  async _applyPlan(pc) {
    const publish = async (role, kind, track) => {
      let transceiver = this._publish[role];
      if (transceiver && role === "camera" && this._simulcastRefused) {
        // The server refused simulcast, but the browser keeps the first rid and then
        // refuses its own next offer (the RID extension is not negotiated): a new
        // camera m-line with one encoding replaces it.
        transceiver.stop();
        delete this._publish.camera;
        transceiver = undefined;
        this._simulcastRefused = false;
        this.simulcast = false;
      }
      if (!transceiver && !track) return;
      if (!transceiver) {
        transceiver = role === "camera" ? addCameraTransceiver(pc, this.simulcast) : pc.addTransceiver(kind, { direction: "inactive" });
        preferCodecs(transceiver, kind);
        this._publish[role] = transceiver;
      }
      await transceiver.sender.replaceTrack(role === "camera" && this._cameraOff ? null : track);
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

  async _negotiate(restart = false) {
    if (this._closed || !this.room.isJoined) return;
    if (!this.pc) this.pc = this._createPeerConnection();
    const pc = this.pc;
    try {
      await this._offerOn(pc, restart);
    } catch (error) {
      if (pc === this.pc) throw error; // dropped meanwhile: the next negotiation covers it
    }
  }

  /** @param {RTCPeerConnection} pc @param {boolean} restart */
  async _offerOn(pc, restart) {
    await this._whileOpen(pc, this._applyPlan(pc));
    this._offerSent = false;
    const offer = await this._whileOpen(pc, pc.createOffer());
    await this._whileOpen(pc, pc.setLocalDescription(offer));
    // A restart's offer goes as soon as the UDP candidates are in: the TCP ones come
    // last (the server takes only UDP; they are trickled), ~0.1-1 s later under load.
    await waitForIceGathering(pc, 2500, restart, restart);
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
      if (pc === this.pc && pc.signalingState === "have-local-offer") {
        await this._whileOpen(pc, pc.setLocalDescription({ type: "rollback" }));
      }
      this.emit("error", error);
      throw error;
    }
    if (pc !== this.pc) return;
    await this._whileOpen(pc, pc.setRemoteDescription({ type: "answer", sdp: answer.sdp }));
    await this._whileOpen(pc, this._afterAnswer());
    this.emit("localtracks", { ...this.local });
    this.emit("tracks", this.slots);
  }

  /**
   * `operation` on `pc`, or a `closed` rejection as soon as `pc` is dropped: per the
   * WebRTC spec an operation still queued when its pc closes never settles, and a
   * negotiation waiting on it would hold up every later one (a second media_closed
   * during the re-offer of a first left the client "reconnecting" for good).
   * @template T @param {RTCPeerConnection} pc @param {Promise<T>} operation @returns {Promise<T>}
   */
  _whileOpen(pc, operation) {
    if (pc === this.pc) return Promise.race([operation, this._pcGone]);
    operation.catch(() => undefined);
    return Promise.reject(replaced());
  }

  /** A server that did not accept simulcast keeps the first (quarter-size) encoding:
   * send it at full size. Re-apply what the server asked for, resend the sizes. */
  async _afterAnswer() {
    const sender = this._publish.camera?.sender;
    if (sender && (await fullSizeWithoutSimulcast(sender))) this._simulcastRefused = true;
    for (const [mid, active] of this._layerWishes) await this._applyLayers(mid, active);
    this._sizesSent = null;
    this._scheduleSizes();
  }

  /**
   * The server's `publish_layers`: turn the encodings of track `mid` on or off.
   * @param {string} mid @param {string[]} active
   */
  async _onPublishLayers(mid, active) {
    if (typeof mid !== "string" || !Array.isArray(active)) return;
    const rids = active.filter((rid) => typeof rid === "string");
    this._layerWishes.set(mid, rids);
    await this._applyLayers(mid, rids);
    this.emit("publishlayers", { mid, active: rids });
  }

  async _applyLayers(mid, active) {
    const transceiver = Object.values(this._publish).find((t) => t && t.mid === mid);
    if (!transceiver) return;
    try {
      await setEncodingsActive(transceiver.sender, active);
    } catch (error) {
      this.emit("error", new VisitRoomError("media_error", `cannot change the published layers: ${error}`));
    }
  }

  /** The server's `downlink` estimate. @param {number} estimateKbps */
  _onDownlink(estimateKbps) {
    if (typeof estimateKbps !== "number" || !Number.isFinite(estimateKbps)) return;
    this.downlinkKbps = estimateKbps;
    this.emit("downlink", { estimateKbps, weak: estimateKbps < WEAK_DOWNLINK_KBPS });
  }

  /**
   * Tell the server how big receive slot `mid` is shown: the SDK watches `element`
   * (ResizeObserver) and sends `video_sizes` (device pixels, 0 when hidden) when a
   * size changes. `null` stops watching (the slot then counts as hidden). Once a
   * front end has called this, slots without an element are reported hidden; one
   * that never calls it sends no sizes (the server then assumes any size).
   * @param {string} mid @param {Element|null} element
   */
  observeSlot(mid, element) {
    const key = String(mid);
    const old = this._observed.get(key);
    if (old === element) return;
    if (old) this._resizeObserver?.unobserve(old);
    if (element) {
      this._observed.set(key, element);
      this._resizeObserver ??= typeof ResizeObserver === "function" ? new ResizeObserver(() => this._scheduleSizes()) : null;
      this._resizeObserver?.observe(element);
    } else {
      this._observed.delete(key);
    }
    this._reportsSizes = true;
    this._scheduleSizes();
  }

  _scheduleSizes() {
    if (!this._reportsSizes || this._sizesTimer !== null) return;
    this._sizesTimer = setTimeout(() => {
      this._sizesTimer = null;
      this._sendSizes();
    }, SIZE_DEBOUNCE_MS);
  }

  /** The rendered size of every video receive slot, as `video_sizes` wants it. */
  videoSizes() {
    const mids = this._videoSlots.filter((t, index) => index < this.videoSlots && t.mid != null).map((t) => String(t.mid));
    return videoSizesOf(mids, (mid) => measureElement(this._observed.get(mid) ?? null));
  }

  _sendSizes() {
    if (this._closed || this._sizesUnsupported || !this.pc?.remoteDescription || !this.room.isJoined) return;
    const slots = this.videoSizes();
    const text = JSON.stringify(slots);
    if (text === this._sizesSent) return;
    this._sizesSent = text;
    this.room.request({ type: "video_sizes", slots }).catch((error) => {
      // An older server does not know the message: stop sending it.
      if (error?.code === "bad_request" && /unknown message type/.test(error.message)) this._sizesUnsupported = true;
      else if (this._sizesSent === text) this._sizesSent = null;
    });
  }

  _onSlots(slots, publishers) {
    this._slots = slots;
    if (publishers && typeof publishers === "object") {
      this._publishers = new Map(Object.entries(publishers).map(([pid, sources]) => [pid, Array.isArray(sources) ? sources : []]));
    }
    this.emit("tracks", this.slots);
  }

  /** The path died ("failed" at once; "disconnected" if it lasts): restart ICE. */
  _onIceState(pc) {
    if (pc !== this.pc) return;
    const state = pc.iceConnectionState;
    clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    if (state === "failed") this._restartIce("failed");
    else if (state === "disconnected") {
      // A network change may have killed the signalling socket too: find out now, so
      // that a resume is under way by the time the restart needs the socket.
      this.room.checkConnection(SOCKET_CHECK_MS);
      // Often a blip that heals by itself; a network change does not.
      this._disconnectTimer = setTimeout(() => {
        if (pc === this.pc && pc.iceConnectionState === "disconnected") this._restartIce("disconnected");
      }, ICE_DISCONNECTED_GRACE_MS);
    }
  }

  /**
   * ICE restart over the same session: new ICE credentials, the same DTLS, the same
   * m-lines and slots (the server keeps the transport). Nothing to do before the
   * first answer; a restart already on its way covers this one.
   * @param {string} reason "failed", "disconnected", "server" (`ice_restart_needed`) or
   *   "silent" (nothing received for MEDIA_SILENT_MS and the socket had to be resumed)
   */
  _restartIce(reason) {
    const pc = this.pc;
    if (this._closed || !pc || this._restarting || !pc.remoteDescription) return;
    this._restarting = true;
    this.emit("connectionstate", { state: "restarting", reason });
    this._enqueue(async () => {
      try {
        if (pc !== this.pc) return;
        // No answer: the SDK resumes on a new socket, and `_afterResume` restarts then.
        // (`ice_restart_needed` itself just came over this socket: no need to ask.)
        if (reason !== "server" && !(await this.room.checkConnection(SOCKET_CHECK_MS))) return;
        if (pc !== this.pc) return;
        pc.restartIce();
        await this._negotiate(true);
      } finally {
        this._restarting = false;
      }
    }).catch(() => undefined);
  }

  /** The signalling session came back (a network change drops it too): a restart that
   * could not be sent meanwhile is sent now. */
  _afterResume() {
    const state = this.pc?.iceConnectionState;
    if (state === "disconnected" || state === "failed") this._restartIce(state);
    else if (this._mediaSilent) this._restartIce("silent");
  }

  _onMediaClosed(reason) {
    // The SFU dropped our transport: start over with a fresh connection and offer.
    this._dropPeerConnection();
    this.emit("connectionstate", { state: "reconnecting", reason });
    this._reoffer(++this._reconnects, 0);
  }

  /** Offer on a fresh connection; while the server has no media server for us yet
   * (`unavailable`: every worker restarting), offer again with a backoff. */
  _reoffer(generation, attempt) {
    this._enqueue(() => this._negotiate()).catch((error) => {
      if (error?.code !== "unavailable" || generation !== this._reconnects) return;
      setTimeout(() => {
        const stale = generation !== this._reconnects || this._closed || !this.room.isJoined;
        if (!stale && !this.pc?.remoteDescription) this._reoffer(generation, attempt + 1);
      }, backoffDelay(attempt));
    });
  }

  _dropPeerConnection() {
    this._simulcastRefused = false;
    clearTimeout(this._sizesTimer);
    this._sizesTimer = null;
    this._sizesSent = null;
    this._layerWishes.clear();
    clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    clearInterval(this._inboundTimer);
    this._inboundTimer = null;
    if (this.pc) this._dropPc();
    this.pc?.close();
    this.pc = null;
    this._publish = {};
    this._audioSlots = [];
    this._videoSlots = [];
    this._tracksByMid.clear();
    this._slots = [];
    this._publishers = null;
  }

  /** @returns {Promise<RTCStatsReport|null>} */
  async getStats() {
    return this.pc ? this.pc.getStats() : null;
  }

  /**
   * A summary of `getStats()`: every received stream with who fills its slot,
   * every published stream, and the selected candidate pair.
   * @returns {Promise<{inbound: InboundStats[], outbound: OutboundStats[], roundTripTimeMs: number|null, availableOutgoingKbps: number|null, path: CandidatePath|null}>}
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
    this._resizeObserver?.disconnect();
    this._resizeObserver = null;
    this._observed.clear();
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
  /** @type {CandidatePath|null} */
  let path = null;
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
      path = candidatePath(report, s);
    }
  });
  inbound.sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }));
  outbound.sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }));
  return { inbound, outbound, roundTripTimeMs, availableOutgoingKbps, path };
}

/**
 * How the selected candidate pair reaches the server: directly or through a TURN
 * relay, and over which protocol (RTCIceCandidateStats `candidateType`, `protocol`
 * and, for a relay, `relayProtocol`: how the browser reaches the TURN server).
 * @typedef {{localType: string, localProtocol: string, relayProtocol: string|null,
 *   remoteType: string, remoteProtocol: string}} CandidatePath
 * @param {RTCStatsReport|Map<string, any>} report
 * @param {any} pair
 * @returns {CandidatePath|null}
 */
function candidatePath(report, pair) {
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  return {
    localType: local.candidateType ?? "",
    localProtocol: local.protocol ?? "",
    relayProtocol: local.candidateType === "relay" ? (local.relayProtocol ?? null) : null,
    remoteType: remote.candidateType ?? "",
    remoteProtocol: remote.protocol ?? "",
  };
}

/**
 * A transceiver for the camera: three simulcast encodings (with VP8 temporal layers
 * where the browser takes `scalabilityMode`, without where it refuses them), or one
 * encoding when simulcast is off or not possible.
 * @param {RTCPeerConnection} pc @param {boolean} simulcast
 */
export function addCameraTransceiver(pc, simulcast) {
  if (simulcast) {
    for (const withModes of [true, false]) {
      const sendEncodings = SIMULCAST_ENCODINGS.map(({ scalabilityMode, ...rest }) => (withModes ? { ...rest, scalabilityMode } : { ...rest }));
      try {
        return pc.addTransceiver("video", { direction: "inactive", sendEncodings });
      } catch {
        // Refused (scalabilityMode unknown, or no simulcast at all): try the next way.
      }
    }
  }
  return pc.addTransceiver("video", { direction: "inactive" });
}

/**
 * Set each simulcast encoding `active` when its rid is in `active` (an encoding
 * without a rid, i.e. no simulcast, is left alone). Resolves true if anything changed.
 * @param {RTCRtpSender} sender @param {string[]} active
 */
export async function setEncodingsActive(sender, active) {
  const params = sender.getParameters();
  let changed = false;
  for (const encoding of params.encodings ?? []) {
    if (!encoding.rid) continue;
    const want = active.includes(encoding.rid);
    if (encoding.active !== want) {
      encoding.active = want;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
  return changed;
}

/**
 * One encoding left of the simulcast ones (the answer refused simulcast): send it at
 * full size. Resolves true when simulcast was refused so.
 */
async function fullSizeWithoutSimulcast(sender) {
  const params = sender.getParameters();
  const encodings = params.encodings ?? [];
  if (encodings.length !== 1 || !encodings[0].rid) return false;
  if ((encodings[0].scaleResolutionDownBy ?? 1) !== 1) {
    encodings[0].scaleResolutionDownBy = 1;
    try {
      await sender.setParameters(params);
    } catch {
      // Nothing better to do: it stays at a quarter of the size until the next offer.
    }
  }
  return true;
}

/**
 * The body of `video_sizes`: each mid's [width, height] as {width, height}, integers
 * from 0 to 8192 (pure: exported for tests).
 * @param {string[]} mids @param {(mid: string) => [number, number]} measure
 */
export function videoSizesOf(mids, measure) {
  /** @type {Record<string, {width: number, height: number}>} */
  const slots = {};
  const clamp = (v) => Math.max(0, Math.min(MAX_VIDEO_DIMENSION, Math.round(Number.isFinite(v) ? v : 0)));
  for (const mid of mids) {
    const [width, height] = measure(mid);
    slots[mid] = { width: clamp(width), height: clamp(height) };
  }
  return slots;
}

/** An element's rendered size in device pixels; [0, 0] when it is not shown. @param {Element|null} el */
function measureElement(el) {
  if (!el || !el.isConnected) return [0, 0];
  const box = el.getBoundingClientRect();
  if (!box.width || !box.height || getComputedStyle(el).visibility === "hidden") return [0, 0];
  const ratio = globalThis.devicePixelRatio || 1;
  return [box.width * ratio, box.height * ratio];
}

/**
 * Put VP8 (and RTX) first for video and Opus (and RED, RFC 2198) for audio:
 * the SFU forwards without transcoding, and a short SDP stays far below the
 * server's limit. With RED the SFU answers RED first, so the browser sends
 * every Opus frame again in the next packet and a lost packet is not heard.
 * @param {RTCRtpTransceiver} transceiver
 * @param {"audio"|"video"} kind
 */
export function preferCodecs(transceiver, kind) {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.(kind);
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const wanted = kind === "video" ? ["video/vp8", "video/rtx"] : ["audio/opus", "audio/red"];
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
 * @param {boolean} [restarted] an ICE restart: wait for the new gathering
 * @param {boolean} [udpOnly] done once the UDP candidates are in (browsers gather the
 *   host UDP ones of every network at once, the TCP ones ~0.1 s later)
 */
export function waitForIceGathering(pc, timeoutMs, restarted = false, udpOnly = false) {
  // After an ICE restart the state still says "complete" (of the old gathering) until
  // the new gathering starts: wait for the new one to complete.
  if (!restarted && pc.iceGatheringState === "complete") return Promise.resolve();
  if (pc.iceGatheringState === "gathering") restarted = false;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      clearTimeout(settle);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", candidate);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "gathering") restarted = false;
      else if (pc.iceGatheringState === "complete" && !restarted) done();
    };
    // udpOnly: done at the first TCP candidate, or once no UDP one came for UDP_SETTLE_MS
    let settle;
    const candidate = (event) => {
      const line = event.candidate?.candidate ?? "";
      if (!udpOnly || restarted || !line) return;
      if (/ tcp /i.test(line)) done();
      else {
        clearTimeout(settle);
        settle = setTimeout(done, UDP_SETTLE_MS);
      }
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", candidate);
  });
}

/** The rejection of an operation whose RTCPeerConnection was dropped (`_whileOpen`). */
function replaced() {
  return new VisitRoomError("closed", "the peer connection was replaced");
}

/** Why media cannot start in room state `state`. @param {string} state */
function notJoined(state) {
  if (state === "waiting") {
    return new VisitRoomError("not_admitted", "media starts once the host lets you in: call media.start() on `admitted`");
  }
  return new VisitRoomError("bad_state", `media cannot start while the room is ${state}`);
}
