// /embed/{room_id}: the visit inside a third-party page's iframe.
//
// Query: `parent_origin` (checked by the server against VISITROOM_ALLOWED_ORIGINS)
// and `role` (`guest`, the default, or `host`). Events go to the parent with
// postMessage to exactly `parent_origin`, never "*":
//   {source: "visitroom", type: "ready"|"knocked"|"admitted"|"rejected"|"left"|"ended", room_id, ...}
// The parent sends {type: "visitroom:join", token?, name?} to this frame;
// a host token must come this way (never in the URL).

import { roomIdFromPath, runVisit } from "./visit.js";
import { pendingScreen } from "./screens.js";

const params = new URLSearchParams(location.search);
const parentOrigin = params.get("parent_origin");
const role = params.get("role") === "host" ? "host" : "guest";
const roomId = roomIdFromPath();

function report(type, detail = {}) {
  if (!parentOrigin || window.parent === window) return;
  window.parent.postMessage({ source: "visitroom", type, room_id: roomId, ...detail }, parentOrigin);
}

/** The first join message from the parent page (only from `parent_origin`). */
function joinMessage() {
  return new Promise((resolve) => {
    window.addEventListener("message", function onMessage(event) {
      if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
      const data = event.data;
      if (data?.type !== "visitroom:join") return;
      window.removeEventListener("message", onMessage);
      resolve({
        token: typeof data.token === "string" ? data.token : null,
        name: typeof data.name === "string" ? data.name.slice(0, 80) : null,
      });
    });
  });
}

async function main() {
  const join = joinMessage();
  report("ready", { role });
  if (role === "host") {
    pendingScreen("Waiting for sign-in…", "The page around this visit will sign you in.", "screen-signing-in");
    const { token } = await join;
    runVisit({ roomId, role, token, report });
    return;
  }
  // A guest starts right away; a name or guest token from the parent fills in the form.
  runVisit({ roomId, role, report, parentJoin: join });
}

main();
