// One visit from start to finish, for guests and hosts alike:
// pre-call -> hello -> (waiting room) -> room -> left / rejected / ended.

import { savedSession, TabSession, tabStorage, VisitRoom, VisitRoomError } from "../sdk/visitroom.js";
import { precallStep, requestDevices } from "./precall.js";
import { roomScreen } from "./room.js";
import {
  endedScreen,
  errorScreen,
  leftScreen,
  notOpenScreen,
  pendingScreen,
  refusalScreen,
  rejectedScreen,
  replacedScreen,
  unknownRoomScreen,
  waitingScreen,
} from "./screens.js";

/** The room id from a path like /r/{room_id}, /host/{room_id} or /embed/{room_id}. */
export function roomIdFromPath(pathname = location.pathname) {
  const parts = pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[1] ?? "");
}

/**
 * Run a visit.
 * @param {{
 *   roomId: string,
 *   role: "guest"|"host",
 *   token?: string|null,
 *   name?: string|null,
 *   report?: (event: string, detail?: Record<string, unknown>) => void,
 *   parentJoin?: Promise<{token: string|null, name: string|null}>|null,
 *   renewToken?: (() => Promise<string|null>)|null,
 *   skipPrecall?: boolean,
 *   devices?: {microphone?: boolean, camera?: boolean},
 *   onRoom?: (room: VisitRoom) => void,
 *   onView?: (view: ReturnType<typeof roomScreen>) => void,
 * }} options
 * `skipPrecall` (an embedding parent's choice, hosts only) goes straight to the room with
 * the devices on or off as `devices` says; `onRoom` and `onView` hand the room and the
 * room screen to the embed bridge.
 */
export async function runVisit(options) {
  const { roomId, role, token = null, name = null, report = () => undefined, parentJoin = null } = options;
  const visitWindow = await joinWindow(roomId);
  // Without a token nobody can open a room that does not exist (a host token makes one
  // ad hoc, a parent page may still send one): say so before asking for a camera.
  if (visitWindow?.status === "unknown" && role === "guest" && !token && !parentJoin) {
    unknownRoomScreen();
    report("error", { code: "not_found" });
    return;
  }
  if (visitWindow && outsideWindow(visitWindow)) return;
  const storage = tabStorage();
  // A reload of this tab: straight back to the kept place, with the devices as they were.
  let saved = savedSession(roomId, storage);
  if (saved && saved.role !== role) {
    // Kept by the other page of this room in this tab (guest link, then host link): not ours.
    new TabSession(roomId, storage).clear();
    saved = null;
  }
  const prep = saved
    ? await resumeStep(saved)
    : options.skipPrecall
    ? await directStep(options.devices ?? {})
    : await precallStep({
        askName: role === "guest" && !token,
        initialName: name ?? "",
        parentJoin,
        nameMaxLength: visitWindow?.limits?.name ?? null,
        heading: role === "host" ? "Get ready to start the visit" : "Get ready for your visit",
      });
  const room = new VisitRoom({ roomId, token: prep.token ?? token, name: prep.name, storage });
  room.sessionData = { micOn: prep.micOn, cameraOn: prep.cameraOn };
  options.onRoom?.(room);
  // One terminal event (rejected, left, ended or error) per visit, whatever path ends it.
  let reported = false;
  const reportEnd = (event, detail) => {
    if (reported) return;
    reported = true;
    report(event, detail);
  };
  pendingScreen(role === "host" ? "Opening the visit…" : "Connecting…", null, "screen-connecting");
  let view = null;
  let finished = false;
  const stopStream = () => prep.stream?.getTracks().forEach((t) => t.stop());

  const finish = (show) => {
    if (finished) return;
    finished = true;
    view?.destroy();
    view = null;
    stopStream();
    show();
  };

  room.on("rejected", (m) => {
    reportEnd("rejected", { message: m.message });
    finish(() => rejectedScreen(m.message));
  });
  room.on("left", (m) => {
    reportEnd(m.reason === "ended" ? "ended" : "left", { reason: m.reason });
    finish(() => leftScreen({ reason: m.reason, message: m.message, onRejoin: () => location.reload() }));
  });
  room.on("replaced", () => {
    reportEnd("left", { reason: "replaced" });
    finish(() => replacedScreen());
  });
  room.on("disconnected", () => {
    if (!room.participantId) return; // never got in: the failed connect() below says so
    reportEnd("left", { reason: "disconnected" });
    finish(() => errorScreen("Connection lost", "We couldn't reconnect you to the visit. Check your connection and try again.", { retry: true }));
  });

  let waiting = null;
  const enterRoom = () => {
    if (view || finished) return;
    waiting = null;
    report("admitted", { participant_id: room.participantId });
    const selfName = prep.name ?? room.participants.get(room.participantId)?.name ?? "You";
    view = roomScreen({
      room,
      stream: prep.stream,
      micOn: prep.micOn,
      cameraOn: prep.cameraOn,
      selfName,
      onLeave: () => room.leave(),
      onEndForAll: () => room.endForAll().catch(() => undefined),
    });
    options.onView?.(view);
  };
  room.on("lobby_status", (m) => waiting?.update({ status: m.status, message: m.message ?? null }));
  room.on("reconnecting", ({ attempt }) => {
    if (attempt === 1) waiting?.connectionLost();
  });
  room.on("admitted", () => enterRoom());
  room.on("roster", () => {
    // A host joins at once; a resumed guest who was let in meanwhile gets the roster.
    if (room.isJoined) enterRoom();
  });

  try {
    const welcome = await room.connect();
    if (welcome.status === "waiting") {
      report(room.restored ? "resumed" : "knocked", { participant_id: welcome.participant_id });
      waiting = waitingScreen({ stream: prep.stream, onLeave: () => room.leave() });
      waiting.update(room.lobbyStatus);
    } else {
      enterRoom();
    }
  } catch (error) {
    if (saved && error?.code === "unauthorized") {
      // The kept place is gone and there was nothing to start over with: the usual way in.
      stopStream();
      return runVisit({ ...options, name: saved.name ?? name, token: token ?? (await options.renewToken?.()) ?? null });
    }
    finish(() => (error instanceof VisitRoomError ? refusalScreen(error) : refusalScreen(new VisitRoomError("disconnected", String(error)))));
    reportEnd("error", { code: error?.code ?? "disconnected" });
  }
  return room;
}

/**
 * The pre-call step of a reload: no questions, the devices asked for again (the browser
 * remembers the permission) and switched on or off as they were.
 * @param {{name: string|null, data: Record<string, unknown>}} saved
 */
async function resumeStep(saved) {
  pendingScreen("Reconnecting to your visit…", null, "screen-resuming");
  const { stream } = await requestDevices();
  const micOn = saved.data.micOn !== false;
  const cameraOn = saved.data.cameraOn !== false;
  stream?.getAudioTracks().forEach((t) => (t.enabled = micOn));
  stream?.getVideoTracks().forEach((t) => (t.enabled = cameraOn));
  return { name: saved.name, token: null, stream, micOn, cameraOn };
}

/**
 * No pre-call step (a provider who tested already, said by the embedding page): the
 * devices asked for, switched on or off as the page said, and straight in.
 * @param {{microphone?: boolean, camera?: boolean}} devices
 */
async function directStep(devices) {
  pendingScreen("Starting your camera and microphone…", null, "screen-connecting");
  const { stream } = await requestDevices();
  const micOn = devices.microphone !== false;
  const cameraOn = devices.camera !== false;
  stream?.getAudioTracks().forEach((t) => (t.enabled = micOn));
  stream?.getVideoTracks().forEach((t) => (t.enabled = cameraOn));
  return { name: null, token: null, stream, micOn, cameraOn };
}

/**
 * Before asking for a camera: the visit's join window and the server's limits (e.g. of a
 * name), `{status: "unknown"}` for a room the server does not know (404), or null when
 * asking failed: the normal join then follows, whose `hello` gets the same answer.
 * @param {string} roomId
 */
async function joinWindow(roomId) {
  try {
    const response = await fetch(`/v1/rooms/${encodeURIComponent(roomId)}/window`, { cache: "no-store" });
    if (response.status === 404) return { status: "unknown" };
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

/** Is the visit not open yet (or over)? Shows the right page and returns true when so. */
function outsideWindow(visitWindow) {
  if (visitWindow.status === "scheduled" && visitWindow.opens_at) {
    notOpenScreen(String(visitWindow.opens_at));
    return true;
  }
  if (visitWindow.status === "ended") {
    endedScreen();
    return true;
  }
  return false;
}
