// The iframe protocol between /embed/{room_id} and the page that frames it, as pure
// functions (no DOM, no sockets): who may send the frame a command, what a valid
// command looks like, and which events the parent of a host frame is told about,
// derived from the wire protocol's server messages. docs/sdk.md documents it all;
// web/tests/embed.test.mjs tests it under Node.

/** Every message to the parent carries this `source`. */
export const EVENT_SOURCE = "visitroom";
/** Commands from the parent are `{type: "visitroom:<name>", ...}`. */
export const COMMAND_PREFIX = "visitroom:";
export const MAX_ID_LENGTH = 128;
export const MAX_REQUEST_ID_LENGTH = 64;
export const DEFAULT_HOLD_MESSAGE_LENGTH = 1000;

/** Commands only a host frame may send on (the server refuses them to guests anyway). */
export const HOST_COMMANDS = new Set(["admit", "admit_all", "hold", "reject", "remove", "end"]);
/** Every command a frame understands. */
export const COMMANDS = new Set([...HOST_COMMANDS, "join", "leave", "set_devices", "get_state"]);

/**
 * Is this a message meant as a command for us (`{type: "visitroom:..."}`)? Anything
 * else posted to the frame (other libraries' messages) is none of our business.
 * @param {unknown} data
 */
export function isCommandMessage(data) {
  return typeof data === "object" && data !== null && typeof data.type === "string" && data.type.startsWith(COMMAND_PREFIX);
}

/**
 * May this message event command the frame? Only the window that frames us, and only
 * when it is on the one `parent_origin` the server accepted for this frame.
 * @param {{origin: string, source: unknown}} event
 * @param {{parentOrigin: string|null, parentWindow: unknown, selfWindow: unknown}} frame
 * @returns {"ok"|"not_framed"|"wrong_origin"|"wrong_source"}
 */
export function checkSender(event, { parentOrigin, parentWindow, selfWindow }) {
  if (!parentOrigin || parentWindow === selfWindow) return "not_framed";
  if (event.origin !== parentOrigin) return "wrong_origin";
  if (event.source !== parentWindow) return "wrong_source";
  return "ok";
}

/** A string the parent gave, cut to a length fit for a console line or an event. */
export function shown(value, max = 64) {
  return String(value).slice(0, max);
}

const validId = (value) => typeof value === "string" && value.length > 0 && value.length <= MAX_ID_LENGTH;
const optionalBoolean = (value) => value === undefined || typeof value === "boolean";

/**
 * Check one command from the parent. Returns `{ok: true, command}` with only the known
 * fields, or `{ok: false, name, requestId, code: "bad_request"|"unknown_command", message}`.
 * @param {Record<string, any>} data a message that passed `isCommandMessage`
 * @param {{holdMessageLength?: number|null}} [limits] from the server's `welcome.limits`
 */
export function parseCommand(data, { holdMessageLength = null } = {}) {
  const name = data.type.slice(COMMAND_PREFIX.length);
  let requestId = null;
  const fail = (code, message) => ({ ok: false, name: shown(name), requestId, code, message });
  if (data.request_id !== undefined) {
    if (typeof data.request_id !== "string" || !data.request_id || data.request_id.length > MAX_REQUEST_ID_LENGTH) {
      return fail("bad_request", `request_id must be a string of 1-${MAX_REQUEST_ID_LENGTH} characters`);
    }
    requestId = data.request_id;
  }
  if (!COMMANDS.has(name)) return fail("unknown_command", `unknown command ${shown(data.type)}`);
  const command = { name, requestId };
  switch (name) {
    case "join":
      return parseJoin(data, command, fail);
    case "admit":
    case "reject":
    case "remove":
      if (!validId(data.participant_id)) return fail("bad_request", "participant_id must be a participant id");
      return { ok: true, command: { ...command, participantId: data.participant_id } };
    case "hold": {
      if (!validId(data.participant_id)) return fail("bad_request", "participant_id must be a participant id");
      const max = holdMessageLength ?? DEFAULT_HOLD_MESSAGE_LENGTH;
      const message = typeof data.message === "string" ? data.message.trim() : "";
      if (!message || message.length > max) return fail("bad_request", `message must be 1-${max} characters`);
      return { ok: true, command: { ...command, participantId: data.participant_id, message } };
    }
    case "set_devices":
      if (!optionalBoolean(data.microphone) || !optionalBoolean(data.camera)) {
        return fail("bad_request", "microphone and camera must be true (on) or false (off)");
      }
      if (data.microphone === undefined && data.camera === undefined) {
        return fail("bad_request", "say microphone, camera or both");
      }
      return { ok: true, command: { ...command, microphone: data.microphone, camera: data.camera } };
    default: // admit_all, leave, end, get_state: no fields
      return { ok: true, command };
  }
}

function parseJoin(data, command, fail) {
  if (data.token !== undefined && typeof data.token !== "string") return fail("bad_request", "token must be a string");
  if (data.name !== undefined && typeof data.name !== "string") return fail("bad_request", "name must be a string");
  if (!optionalBoolean(data.skip_precall) || !optionalBoolean(data.microphone) || !optionalBoolean(data.camera)) {
    return fail("bad_request", "skip_precall, microphone and camera must be booleans");
  }
  return {
    ok: true,
    command: {
      ...command,
      token: data.token || null,
      displayName: typeof data.name === "string" ? data.name.slice(0, 80) : null,
      skipPrecall: data.skip_precall === true,
      microphone: data.microphone !== false,
      camera: data.camera !== false,
    },
  };
}

/**
 * What a host frame tells its parent, kept between server messages: who waits (and how),
 * everyone's names (a `lobby_left` or `participant_left` carries only the id), and
 * whether breakouts are open.
 */
export function newHostState() {
  return {
    /** @type {Map<string, {name: string, status: string, message: string|null}>} */
    waiting: new Map(),
    /** @type {Map<string, string>} */
    names: new Map(),
    breakoutsOpen: false,
  };
}

const LOBBY_LEFT_EVENTS = {
  admitted: "participant_admitted",
  rejected: "participant_rejected",
  left: "participant_knock_withdrawn",
};

/**
 * The parent events one server message means for a host, in order; updates `state`.
 * Identities and names only: nothing of a token ever goes into an event.
 * @param {ReturnType<typeof newHostState>} state
 * @param {Record<string, any>} message a server message (docs/protocol.md)
 * @returns {{type: string, detail: Record<string, unknown>}[]}
 */
export function hostEvents(state, message) {
  const handler = HOST_EVENT_HANDLERS[message?.type];
  return handler ? handler(state, message) : [];
}

const HOST_EVENT_HANDLERS = {
  knock(state, m) {
    const { id, name } = m.participant;
    state.names.set(id, name);
    state.waiting.set(id, { name, status: "waiting", message: null });
    return [{ type: "participant_knocked", detail: { participant_id: id, name } }];
  },
  lobby(state, m) {
    const events = [];
    const next = new Map();
    for (const w of m.waiting ?? []) {
      const entry = { name: w.name, status: w.status, message: w.message ?? null };
      const before = state.waiting.get(w.id);
      state.names.set(w.id, w.name);
      next.set(w.id, entry);
      // Waiting already when this host joined (or resumed): the parent hears of it now.
      if (!before) events.push({ type: "participant_knocked", detail: { participant_id: w.id, name: w.name } });
      const held = entry.status === "on_hold" && (before?.status !== "on_hold" || before.message !== entry.message);
      if (held) events.push({ type: "participant_held", detail: { participant_id: w.id, name: w.name, message: entry.message } });
    }
    state.waiting = next;
    return events;
  },
  lobby_left(state, m) {
    const id = m.participant_id;
    const name = state.waiting.get(id)?.name ?? state.names.get(id) ?? null;
    state.waiting.delete(id);
    const type = LOBBY_LEFT_EVENTS[m.reason] ?? "participant_knock_withdrawn";
    return [{ type, detail: { participant_id: id, name } }];
  },
  roster(state, m) {
    for (const p of m.participants ?? []) state.names.set(p.id, p.name);
    return [];
  },
  participant_joined(state, m) {
    const { id, name, role } = m.participant;
    state.names.set(id, name);
    return [{ type: "participant_joined", detail: { participant_id: id, name, role } }];
  },
  participant_left(state, m) {
    const id = m.participant_id;
    return [{ type: "participant_left", detail: { participant_id: id, name: state.names.get(id) ?? null, reason: m.reason } }];
  },
  breakouts(state, m) {
    const rooms = Array.isArray(m.rooms) ? m.rooms : [];
    const open = rooms.length > 0;
    if (open === state.breakoutsOpen) return [];
    state.breakoutsOpen = open;
    if (!open) return [{ type: "breakouts_closed", detail: {} }];
    const detail = {
      rooms: rooms.map((r) => ({ id: r.id, name: r.name, participant_ids: [...(r.participant_ids ?? [])] })),
      ends_at: m.ends_at ?? null,
    };
    return [{ type: "breakouts_opened", detail }];
  },
};

/**
 * The answer to `visitroom:get_state`: the lobby and the roster as the frame knows them.
 * @param {{waiting: Map<string, any>, participants: Map<string, any>, breakouts: unknown, participantId: string|null, state: string}} room
 */
export function stateSnapshot(room) {
  return {
    state: room.state,
    participant_id: room.participantId,
    waiting: [...room.waiting.values()].map((w) => ({
      participant_id: w.id,
      name: w.name,
      status: w.status,
      message: w.message ?? null,
    })),
    participants: [...room.participants.values()].map((p) => ({ participant_id: p.id, name: p.name, role: p.role })),
    breakouts_open: Boolean(room.breakouts),
  };
}
