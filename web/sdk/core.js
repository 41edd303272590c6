// Shared pieces of the visitroom SDK: constants, errors, the event emitter and
// pure helpers. Import from visitroom.js, which re-exports all of it.

export const PROTOCOL = "visitroom.v1.json";
export const REJECTED_TEXT =
  "The host did not grant you access. If you were invited to this room, " +
  "please contact the person who invited you.";
export const LEFT_TEXT = "You've left the room";
export const MAX_PUBLISHED = Object.freeze({ audio: 1, video: 2 });

export const CLOSE_NORMAL = 1000;
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
export function clampSlots(n) {
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
