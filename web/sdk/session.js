// The session of one browser tab: what a reload needs to come back to the same place.
//
// Kept in sessionStorage only: it belongs to this tab and ends with it. Never in
// localStorage (it outlives the tab and every tab of the origin shares it) and never
// in a URL. The resume token is good for one resume within the server's window
// (`windowMs`, from the server's `welcome`; when it did not say, the server decides).

const PREFIX = "visitroom.session.";
const VERSION = 1;
/** Margin for the time a reload takes to reach the server. */
const STALE_MARGIN_MS = 1000;

/**
 * This tab's sessionStorage, or null where the browser refuses it (a sandboxed frame,
 * storage blocked): the visit then works as before, without resume on reload.
 * @returns {Storage|null}
 */
export function tabStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * @typedef {{v: number, resume: string, participantId: string, role: string,
 *   name: string|null, data: Record<string, unknown>, droppedAt: number|null,
 *   windowMs?: number|null}} SessionRecord
 */

/** One room's session record in one Storage; every failure to read or write is ignored. */
export class TabSession {
  /** @param {string} roomId @param {Storage} storage */
  constructor(roomId, storage) {
    if (storage && storage === globalThis.localStorage) {
      throw new TypeError("keep the session in sessionStorage, never in localStorage");
    }
    this.key = PREFIX + roomId;
    this.storage = storage;
  }

  /**
   * The record if it is whole and can still be resumed, else null (and forgotten).
   * @param {number} [now]
   * @returns {SessionRecord|null}
   */
  load(now = Date.now()) {
    const record = this._read();
    if (!record) return null;
    const window = record.windowMs ?? null;
    const stale = record.droppedAt !== null && window !== null && now - record.droppedAt > window - STALE_MARGIN_MS;
    if (stale) {
      this.clear();
      return null;
    }
    return record;
  }

  /** @param {Omit<SessionRecord, "v"|"droppedAt">} record */
  save(record) {
    this._write({ v: VERSION, ...record, droppedAt: null });
  }

  /** The page is going away (reload, navigation): the server's window starts now. */
  markDropped(now = Date.now()) {
    const record = this._read();
    if (record) this._write({ ...record, droppedAt: now });
  }

  clear() {
    try {
      this.storage.removeItem(this.key);
    } catch {
      // storage refused: nothing was kept either
    }
  }

  /** @returns {SessionRecord|null} */
  _read() {
    let record;
    try {
      record = JSON.parse(this.storage.getItem(this.key) ?? "null");
    } catch {
      return null;
    }
    return isRecord(record) ? record : null;
  }

  /** @param {SessionRecord} record */
  _write(record) {
    try {
      this.storage.setItem(this.key, JSON.stringify(record));
    } catch {
      // full or refused: a reload then starts over, as without storage
    }
  }
}

/** @param {any} r */
function isRecord(r) {
  return (
    r !== null &&
    typeof r === "object" &&
    r.v === VERSION &&
    typeof r.resume === "string" &&
    r.resume.length > 0 &&
    typeof r.participantId === "string" &&
    typeof r.role === "string" &&
    (r.name === null || typeof r.name === "string") &&
    r.data !== null &&
    typeof r.data === "object" &&
    (r.droppedAt === null || typeof r.droppedAt === "number") &&
    (r.windowMs === undefined || r.windowMs === null || typeof r.windowMs === "number")
  );
}

/**
 * What a page needs before it connects: is there a session of this room to resume in
 * this tab? (The name to show, the role, the front end's own data.) Null when not.
 * @param {string} roomId
 * @param {Storage|null} [storage]
 */
export function savedSession(roomId, storage = tabStorage()) {
  if (!storage) return null;
  const record = new TabSession(roomId, storage).load();
  if (!record) return null;
  return { participantId: record.participantId, role: record.role, name: record.name, data: { ...record.data } };
}
