// "Join as host" for a signed-in provider who opens a visit's patient link (/r/{room}) or
// host page (/host/{room}) in the browser they signed in with. The server alone decides
// (GET /v1/rooms/{room}/host-offer, with the session cookie): it says yes only to a
// provider of the visit's practice, and no to everyone else without saying why.

import { h, showScreen } from "./dom.js";
import { hostOffer } from "./staff.js";

const INTENT_KEY = "visitroom.hostIntent"; // this tab chose "Join as host" on the patient link

/**
 * On the patient link: offer to host. Resolves true when the page moves to the host page,
 * false when the guest flow should run (not offered, or the user chose to continue as guest).
 * @param {string} roomId
 */
export async function offerOnGuestPage(roomId) {
  const offer = await hostOffer(roomId);
  if (!offer.host) return false;
  return new Promise((resolve) => {
    offerScreen(offer.name, roomId, {
      onHost: () => {
        sessionStorage.setItem(INTENT_KEY, roomId);
        location.assign(`/host/${encodeURIComponent(roomId)}`);
        resolve(true);
      },
      onGuest: () => resolve(false),
    });
  });
}

/**
 * On the host page opened without a token: true when this browser's session may host and
 * the user chose to (or already chose on the patient link).
 * @param {string} roomId
 */
export async function offerOnHostPage(roomId) {
  const chosen = sessionStorage.getItem(INTENT_KEY) === roomId;
  sessionStorage.removeItem(INTENT_KEY);
  const offer = await hostOffer(roomId);
  if (!offer.host) return false;
  if (chosen) return true;
  return new Promise((resolve) => offerScreen(offer.name, roomId, { onHost: () => resolve(true), onGuest: null }));
}

function offerScreen(name, roomId, { onHost, onGuest }) {
  const join = h("button", { type: "button", class: "primary", testid: "btn-join-as-host", text: "Join as host", onclick: onHost });
  showScreen(
    h("section", { class: "card notice", testid: "screen-host-offer", "aria-labelledby": "offer-title" },
      h("h1", { id: "offer-title", text: "Join as host?" }),
      h("p", { class: "lead", testid: "host-offer-text", text: `You are signed in as ${name}, and this visit (${roomId}) belongs to your practice.` }),
      h("div", { class: "button-row" },
        join,
        onGuest ? h("button", { type: "button", class: "secondary", testid: "btn-continue-as-guest", text: "Continue as a guest", onclick: onGuest }) : null)),
    { focus: join },
  );
}
