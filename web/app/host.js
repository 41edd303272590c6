// /host/{room_id}: the provider's page. The host token comes in the URL fragment
// (#token=..., read here and removed from the address bar at once; fragments are
// never sent to the server) or by postMessage from the dashboard that opened us.
// A reload resumes the session this tab kept, without a new token. Opened directly by a
// provider signed in on the dashboard in this browser, it offers "Join as host" and gets
// its token from the server with the staff session (web/app/staff.js).

import { savedSession } from "../sdk/visitroom.js";
import { roomIdFromPath, runVisit } from "./visit.js";
import { errorScreen, pendingScreen } from "./screens.js";
import { offerOnHostPage } from "./hostoffer.js";
import { sessionHostToken } from "./staff.js";

const TOKEN_WAIT_MS = 15000;

/** Read `#token=` and scrub it from the address bar and the history entry. */
export function takeFragmentToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return token;
}

/** Ask the same-origin window that opened us (the dashboard) for a token. */
function tokenFromOpener(roomId) {
  const opener = window.opener;
  if (!opener) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), TOKEN_WAIT_MS);
    function done(token) {
      clearTimeout(timer);
      window.removeEventListener("message", onMessage);
      resolve(token);
    }
    function onMessage(event) {
      // Only our own origin, and only the window that opened us.
      if (event.origin !== location.origin || event.source !== opener) return;
      const data = event.data;
      if (data?.type === "visitroom:host-token" && data.room_id === roomId && typeof data.token === "string") {
        done(data.token);
      } else if (data?.type === "visitroom:host-token-error" && data.room_id === roomId) {
        done(null);
      }
    }
    window.addEventListener("message", onMessage);
    opener.postMessage({ type: "visitroom:host-ready", room_id: roomId }, location.origin);
  });
}

async function main() {
  const roomId = roomIdFromPath();
  let token = takeFragmentToken();
  let renewToken = () => tokenFromOpener(roomId);
  if (!window.opener) renewToken = () => sessionHostToken(roomId);
  if (!token && savedSession(roomId)?.role === "host") {
    runVisit({ roomId, role: "host", renewToken });
    return;
  }
  if (!token && window.opener) {
    pendingScreen("Signing you in…", "Getting access to this visit from your dashboard.", "screen-signing-in");
    token = await renewToken();
  } else if (!token && (await offerOnHostPage(roomId))) {
    pendingScreen("Signing you in…", "Getting access to this visit.", "screen-signing-in");
    token = await renewToken();
  }
  if (!token) {
    errorScreen("Open this visit from your dashboard", "The host page needs a sign-in: sign in on the provider dashboard (/dashboard), then open the visit from there or open this link again.");
    return;
  }
  runVisit({ roomId, role: "host", token, renewToken });
}

main();
