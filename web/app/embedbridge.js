// The frame's side of the iframe protocol (docs/sdk.md, Embedding): events go to the
// parent page with postMessage to exactly `parent_origin` (never "*"), commands are
// taken only from that origin and from the window that frames us; anything else that
// looks like a command is ignored, said in the console and reported to the parent as
// `ignored_message`. The rules themselves are pure, in embedprotocol.js.

import {
  checkSender,
  EVENT_SOURCE,
  HOST_COMMANDS,
  hostEvents,
  isCommandMessage,
  newHostState,
  parseCommand,
  shown,
  stateSnapshot,
} from "./embedprotocol.js";

/**
 * @param {{parentOrigin: string|null, roomId: string, role: "guest"|"host", win?: Window}} options
 */
export function embedBridge({ parentOrigin, roomId, role, win = window }) {
  const frame = { parentOrigin, parentWindow: win.parent, selfWindow: win };
  const framed = Boolean(parentOrigin) && win.parent !== win;
  /** @type {import("../sdk/visitroom.js").VisitRoom|null} */
  let room = null;
  /** @type {{setDevices: (d: {microphone?: boolean, camera?: boolean}) => {microphone: boolean, camera: boolean}}|null} */
  let view = null;
  let unsubscribe = () => undefined;
  let joinTaken = false;
  let resolveJoin = (_join) => undefined;
  /** The first `visitroom:join` of the parent. */
  const join = new Promise((resolve) => (resolveJoin = resolve));

  /** Post one event to the parent (nothing when not framed or no parent_origin). */
  function report(type, detail = {}) {
    if (!framed) return;
    win.parent.postMessage({ source: EVENT_SOURCE, type, room_id: roomId, ...detail }, parentOrigin);
  }

  function reply(name, requestId, outcome) {
    report("command_result", { command: name, ...(requestId ? { request_id: requestId } : {}), ...outcome });
  }

  function onMessage(event) {
    const data = event.data;
    if (!isCommandMessage(data)) return;
    const verdict = checkSender(event, frame);
    if (verdict !== "ok") {
      const origin = shown(event.origin || "null", 200);
      console.warn(`visitroom: ignored ${shown(data.type)} from ${origin}: ${verdict.replace("_", " ")} (only the framing page on ${parentOrigin ?? "no parent origin"} may send commands)`);
      report("ignored_message", { command: shown(data.type), origin, reason: verdict });
      return;
    }
    const parsed = parseCommand(data, { holdMessageLength: room?.limits?.hold_message ?? null });
    if (!parsed.ok) {
      console.warn(`visitroom: refused ${shown(data.type)}: ${parsed.message}`);
      reply(parsed.name, parsed.requestId, { ok: false, code: parsed.code, message: parsed.message });
      return;
    }
    const { command } = parsed;
    if (command.name === "join") return takeJoin(command);
    run(command).then(
      (result) => reply(command.name, command.requestId, { ok: true, ...result }),
      (error) => reply(command.name, command.requestId, { ok: false, code: error?.code ?? "failed", message: String(error?.message ?? error) }),
    );
  }

  function takeJoin(command) {
    if (joinTaken) {
      reply("join", command.requestId, { ok: false, code: "bad_state", message: "this frame has joined already" });
      return;
    }
    joinTaken = true;
    resolveJoin(command);
  }

  class BridgeError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  /** Carry out one checked command; resolves with the result fields for the parent. */
  async function run(command) {
    if (HOST_COMMANDS.has(command.name) && role !== "host") throw new BridgeError("forbidden", "only a host frame takes this command");
    if (command.name === "get_state") {
      if (!room) throw new BridgeError("not_ready", "the visit has not started in this frame yet");
      return stateSnapshot(room);
    }
    if (!room || room.state === "idle" || room.state === "connecting") {
      throw new BridgeError("not_ready", "the visit has not started in this frame yet");
    }
    const needsJoined = command.name !== "leave";
    if (needsJoined && !room.isJoined) throw new BridgeError("not_ready", "not in the room");
    switch (command.name) {
      case "admit":
        return ackFields(await room.admit([command.participantId]));
      case "admit_all":
        return ackFields(await room.admitAll());
      case "hold":
        return ackFields(await room.hold(command.participantId, command.message));
      case "reject":
        return ackFields(await room.reject(command.participantId));
      case "remove":
        return ackFields(await room.remove(command.participantId));
      case "end":
        return ackFields(await room.endForAll());
      case "leave":
        await room.leave();
        return {};
      case "set_devices":
        if (!view) throw new BridgeError("not_ready", "not in the room");
        return view.setDevices({ microphone: command.microphone, camera: command.camera });
      default:
        throw new BridgeError("unknown_command", `unknown command ${command.name}`);
    }
  }

  /** A host frame tells its parent about the waiting room and the roster. */
  function attachRoom(next) {
    unsubscribe();
    room = next;
    view = null;
    if (role !== "host") return;
    const state = newHostState();
    // `message` comes before the SDK's own bookkeeping of the same message.
    unsubscribe = next.on("message", (message) => {
      for (const { type, detail } of hostEvents(state, message)) report(type, detail);
    });
  }

  function attachView(next) {
    view = next;
  }

  win.addEventListener("message", onMessage);
  const actualParent = win.location?.ancestorOrigins?.[0];
  if (framed && actualParent && actualParent !== parentOrigin) {
    console.warn(`visitroom: this frame's parent is ${shown(actualParent, 200)}, not parent_origin ${parentOrigin}: it gets no events and its commands are ignored`);
  }
  return { report, join, attachRoom, attachView, framed };
}

/** The server's `ack` without the envelope. */
function ackFields(ack) {
  const { type: _type, re: _re, id: _id, ...fields } = ack ?? {};
  return fields;
}
