// The iframe protocol's pure rules (web/app/embedprotocol.js): `node --test web/tests/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  checkSender,
  hostEvents,
  isCommandMessage,
  newHostState,
  parseCommand,
  stateSnapshot,
} from "../app/embedprotocol.js";

const PARENT = "https://ehr.example.org";
const parentWindow = { name: "parent" };
const selfWindow = { name: "frame" };
const frame = { parentOrigin: PARENT, parentWindow, selfWindow };

test("only the framing window on parent_origin may command the frame", () => {
  assert.equal(checkSender({ origin: PARENT, source: parentWindow }, frame), "ok");
  assert.equal(checkSender({ origin: "https://evil.example", source: parentWindow }, frame), "wrong_origin");
  assert.equal(checkSender({ origin: PARENT.toUpperCase(), source: parentWindow }, frame), "wrong_origin");
  assert.equal(checkSender({ origin: "null", source: parentWindow }, frame), "wrong_origin");
  // A sibling frame of the parent's own origin is not the parent.
  assert.equal(checkSender({ origin: PARENT, source: { name: "sibling" } }, frame), "wrong_source");
  assert.equal(checkSender({ origin: PARENT, source: parentWindow }, { ...frame, parentOrigin: null }), "not_framed");
  const topLevel = { parentOrigin: PARENT, parentWindow: selfWindow, selfWindow };
  assert.equal(checkSender({ origin: PARENT, source: selfWindow }, topLevel), "not_framed");
});

test("only visitroom:* objects are taken for commands", () => {
  assert.equal(isCommandMessage({ type: "visitroom:admit" }), true);
  for (const other of [null, "visitroom:admit", { type: "admit" }, { type: 3 }, [], { source: "visitroom", type: "knocked" }]) {
    assert.equal(isCommandMessage(other), false, JSON.stringify(other));
  }
});

test("valid commands keep only their known fields", () => {
  const cases = [
    [{ type: "visitroom:admit", participant_id: "p_a", extra: 1 }, { name: "admit", requestId: null, participantId: "p_a" }],
    [{ type: "visitroom:admit_all", request_id: "r1" }, { name: "admit_all", requestId: "r1" }],
    [
      { type: "visitroom:hold", participant_id: "p_a", message: "  The doctor is running late  " },
      { name: "hold", requestId: null, participantId: "p_a", message: "The doctor is running late" },
    ],
    [{ type: "visitroom:reject", participant_id: "p_a" }, { name: "reject", requestId: null, participantId: "p_a" }],
    [{ type: "visitroom:remove", participant_id: "p_b" }, { name: "remove", requestId: null, participantId: "p_b" }],
    [{ type: "visitroom:leave" }, { name: "leave", requestId: null }],
    [{ type: "visitroom:end" }, { name: "end", requestId: null }],
    [{ type: "visitroom:get_state" }, { name: "get_state", requestId: null }],
    [{ type: "visitroom:set_devices", microphone: false }, { name: "set_devices", requestId: null, microphone: false, camera: undefined }],
  ];
  for (const [data, command] of cases) assert.deepEqual(parseCommand(data), { ok: true, command }, data.type);
});

test("the join message: token, name, and the host's skip of the pre-call step", () => {
  assert.deepEqual(parseCommand({ type: "visitroom:join", token: "t.o.k", skip_precall: true, microphone: false }).command, {
    name: "join",
    requestId: null,
    token: "t.o.k",
    displayName: null,
    skipPrecall: true,
    microphone: false,
    camera: true,
  });
  const guest = parseCommand({ type: "visitroom:join", name: "x".repeat(200) }).command;
  assert.equal(guest.name, "join");
  assert.equal(guest.displayName.length, 80);
  assert.equal(guest.skipPrecall, false);
  assert.equal(guest.token, null);
  assert.equal(parseCommand({ type: "visitroom:join", skip_precall: "yes" }).code, "bad_request");
  assert.equal(parseCommand({ type: "visitroom:join", token: 5 }).code, "bad_request");
});

test("bad commands are refused with a code and the request id", () => {
  const refused = (data, limits) => {
    const result = parseCommand(data, limits);
    assert.equal(result.ok, false, JSON.stringify(data));
    return result;
  };
  assert.equal(refused({ type: "visitroom:frobnicate", request_id: "r9" }).code, "unknown_command");
  assert.equal(refused({ type: "visitroom:frobnicate", request_id: "r9" }).requestId, "r9");
  assert.equal(refused({ type: "visitroom:admit" }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:admit", participant_id: "" }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:admit", participant_id: "p".repeat(129) }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:remove", participant_id: ["p_a"] }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:hold", participant_id: "p_a" }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:hold", participant_id: "p_a", message: "   " }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:hold", participant_id: "p_a", message: "x".repeat(11) }, { holdMessageLength: 10 }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:set_devices" }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:set_devices", camera: "off" }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:leave", request_id: 7 }).code, "bad_request");
  assert.equal(refused({ type: "visitroom:leave", request_id: "r".repeat(65) }).code, "bad_request");
  const long = refused({ type: `visitroom:${"z".repeat(500)}` });
  assert.ok(long.name.length <= 64);
});

/** Feed server messages, collect the parent events. */
function replay(messages) {
  const state = newHostState();
  return messages.flatMap((m) => hostEvents(state, m));
}

test("a knock, a hold, a withdrawal, an admission and a rejection", () => {
  const events = replay([
    { type: "welcome", participant_id: "p_host", role: "host", status: "joined", resume_token: "secret" },
    { type: "roster", participants: [{ id: "p_host", name: "Dr Who", role: "host" }] },
    { type: "lobby", waiting: [] },
    { type: "knock", participant: { id: "p_a", name: "Pat" } },
    { type: "knock", participant: { id: "p_b", name: "Bo" } },
    { type: "knock", participant: { id: "p_c", name: "Cy" } },
    { type: "lobby", waiting: [
      { id: "p_a", name: "Pat", status: "on_hold", message: "Five minutes", knocked_at: 1 },
      { id: "p_b", name: "Bo", status: "waiting", knocked_at: 2 },
      { id: "p_c", name: "Cy", status: "waiting", knocked_at: 3 },
    ] },
    { type: "lobby_left", participant_id: "p_b", reason: "left" },
    { type: "lobby_left", participant_id: "p_a", reason: "admitted" },
    { type: "participant_joined", participant: { id: "p_a", name: "Pat", role: "guest" } },
    { type: "lobby_left", participant_id: "p_c", reason: "rejected" },
    { type: "participant_left", participant_id: "p_a", reason: "removed" },
    { type: "slots", slots: [] },
  ]);
  assert.deepEqual(events, [
    { type: "participant_knocked", detail: { participant_id: "p_a", name: "Pat" } },
    { type: "participant_knocked", detail: { participant_id: "p_b", name: "Bo" } },
    { type: "participant_knocked", detail: { participant_id: "p_c", name: "Cy" } },
    { type: "participant_held", detail: { participant_id: "p_a", name: "Pat", message: "Five minutes" } },
    { type: "participant_knock_withdrawn", detail: { participant_id: "p_b", name: "Bo" } },
    { type: "participant_admitted", detail: { participant_id: "p_a", name: "Pat" } },
    { type: "participant_joined", detail: { participant_id: "p_a", name: "Pat", role: "guest" } },
    { type: "participant_rejected", detail: { participant_id: "p_c", name: "Cy" } },
    { type: "participant_left", detail: { participant_id: "p_a", name: "Pat", reason: "removed" } },
  ]);
  assert.ok(!JSON.stringify(events).includes("secret"), "no token in an event");
});

test("a host joining a lobby hears of who waits; a repeated snapshot says nothing new", () => {
  const state = newHostState();
  const snapshot = { type: "lobby", waiting: [
    { id: "p_a", name: "Pat", status: "waiting", knocked_at: 1 },
    { id: "p_b", name: "Bo", status: "on_hold", message: "Soon", knocked_at: 2 },
  ] };
  assert.deepEqual(hostEvents(state, snapshot).map((e) => e.type), ["participant_knocked", "participant_knocked", "participant_held"]);
  assert.deepEqual(hostEvents(state, snapshot), []);
  // A new hold message for the same guest is a new hold.
  const again = { type: "lobby", waiting: [{ id: "p_b", name: "Bo", status: "on_hold", message: "Two more minutes", knocked_at: 2 }] };
  assert.deepEqual(hostEvents(state, again), [{ type: "participant_held", detail: { participant_id: "p_b", name: "Bo", message: "Two more minutes" } }]);
});

test("breakouts opened and closed are said once each", () => {
  const rooms = [{ id: "b1", name: "Room 1", participant_ids: ["p_a"] }];
  const events = replay([
    { type: "breakouts", rooms, main_participant_ids: ["p_host"], ends_at: null },
    { type: "breakouts", rooms: [{ ...rooms[0], participant_ids: [] }], main_participant_ids: ["p_host", "p_a"] },
    { type: "breakouts", rooms: [], main_participant_ids: [] },
    { type: "breakouts", rooms: [] },
  ]);
  assert.deepEqual(events, [
    { type: "breakouts_opened", detail: { rooms: [{ id: "b1", name: "Room 1", participant_ids: ["p_a"] }], ends_at: null } },
    { type: "breakouts_closed", detail: {} },
  ]);
});

test("a participant who left before the frame knew their name is still reported", () => {
  assert.deepEqual(replay([{ type: "participant_left", participant_id: "p_x", reason: "disconnected" }]), [
    { type: "participant_left", detail: { participant_id: "p_x", name: null, reason: "disconnected" } },
  ]);
});

test("the state snapshot lists the lobby and the roster, without tokens", () => {
  const snapshot = stateSnapshot({
    state: "joined",
    participantId: "p_host",
    waiting: new Map([["p_a", { id: "p_a", name: "Pat", status: "on_hold", message: "Soon", knocked_at: 1 }]]),
    participants: new Map([["p_host", { id: "p_host", name: "Dr Who", role: "host" }]]),
    breakouts: null,
    _token: "secret",
  });
  assert.deepEqual(snapshot, {
    state: "joined",
    participant_id: "p_host",
    waiting: [{ participant_id: "p_a", name: "Pat", status: "on_hold", message: "Soon" }],
    participants: [{ participant_id: "p_host", name: "Dr Who", role: "host" }],
    breakouts_open: false,
  });
});
