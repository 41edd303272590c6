// /embed/{room_id}: the visit inside a third-party page's iframe.
//
// Query: `parent_origin` (checked by the server against VISITROOM_ALLOWED_ORIGINS)
// and `role` (`guest`, the default, or `host`). Events go to the parent with
// postMessage to exactly `parent_origin`, never "*":
//   {source: "visitroom", type: "ready"|"knocked"|"admitted"|"rejected"|"left"|"ended"|..., room_id, ...}
// The parent sends {type: "visitroom:join", token?, name?, skip_precall?} to this frame;
// a host token must come this way (never in the URL). A host frame also reports the
// waiting room and the roster and takes the parent's commands (embedbridge.js;
// every message is in docs/sdk.md).

import { roomIdFromPath, runVisit } from "./visit.js";
import { pendingScreen } from "./screens.js";
import { embedBridge } from "./embedbridge.js";

const params = new URLSearchParams(location.search);
const parentOrigin = params.get("parent_origin");
const role = params.get("role") === "host" ? "host" : "guest";
const roomId = roomIdFromPath();

async function main() {
  const bridge = embedBridge({ parentOrigin, roomId, role });
  const hooks = { report: bridge.report, onRoom: bridge.attachRoom, onView: bridge.attachView };
  bridge.report("ready", { role });
  if (role === "host") {
    pendingScreen("Waiting for sign-in…", "The page around this visit will sign you in.", "screen-signing-in");
    const join = await bridge.join;
    // A provider who tested already may skip the pre-call step (hosts only; see docs/sdk.md).
    const devices = { microphone: join.microphone, camera: join.camera };
    runVisit({ roomId, role, token: join.token, skipPrecall: join.skipPrecall, devices, ...hooks });
    return;
  }
  // A guest starts right away; a name or guest token from the parent fills in the form.
  // `skip_precall` is not for guests: a patient always sees the pre-call step.
  const parentJoin = bridge.join.then((join) => ({ token: join.token, name: join.displayName }));
  runVisit({ roomId, role, parentJoin, ...hooks });
}

main();
