// The simple screens: waiting room, rejected, left, not yet open, ended, errors.

import { formatClock, LEFT_TEXT } from "../sdk/visitroom.js";
import { announce, attachStream, h, showScreen } from "./dom.js";

/**
 * The waiting room: "waiting for the host to let you in", or on hold with the
 * host's message. There is deliberately no way to reply.
 * @param {{stream: MediaStream|null, onLeave: () => void}} options
 * @returns {{update: (status: {status: string, message: string|null}) => void, connectionLost: () => void}}
 */
export function waitingScreen({ stream, onLeave }) {
  const title = h("h1", { id: "waiting-title", testid: "waiting-title", text: "Waiting for the host to let you in" });
  const text = h("p", { testid: "waiting-text", class: "lead", text: "The host knows you're here. Please stay on this page." });
  const holdNotice = h("p", { testid: "hold-notice", class: "hold-notice", hidden: true, text: "Your request is on hold." });
  const connection = h("p", { testid: "reconnect-notice", class: "hint", hidden: true, text: "Connection lost. Reconnecting…" });
  const holdMessage = h("blockquote", { testid: "hold-message", class: "hold-message" });
  const holdBox = h(
    "div",
    { class: "hold-box", hidden: true, "aria-labelledby": "hold-label" },
    h("p", { id: "hold-label", class: "hold-label", text: "Message from the host" }),
    holdMessage,
  );
  const preview = h("video", { class: "waiting-preview mirrored", autoplay: true, muted: true, playsinline: true, "aria-label": "Your camera preview" });
  preview.muted = true;
  const hasVideo = Boolean(stream?.getVideoTracks().some((t) => t.enabled));
  preview.hidden = !hasVideo;
  if (hasVideo) attachStream(preview, stream);
  const screen = h(
    "section",
    { class: "card waiting", testid: "screen-waiting", "aria-labelledby": "waiting-title" },
    h("div", { class: "spinner", "aria-hidden": "true" }),
    title,
    text,
    holdNotice,
    holdBox,
    connection,
    preview,
    h("button", { type: "button", class: "secondary", testid: "btn-leave-lobby", text: "Leave", onclick: onLeave }),
  );
  showScreen(screen);
  let last = "";
  return {
    connectionLost() {
      connection.hidden = false;
      announce("Connection lost. Reconnecting…");
      last = ""; // say the status again once we are back
    },
    update({ status, message }) {
      connection.hidden = true;
      const onHold = status === "on_hold";
      holdNotice.hidden = !onHold;
      holdBox.hidden = !onHold || !message;
      holdMessage.textContent = message ?? "";
      screen.dataset.status = status;
      const said = onHold ? `Your request is on hold. Message from the host: ${message ?? ""}` : "Waiting for the host to let you in.";
      if (said !== last) announce(said);
      last = said;
    },
  };
}

/** @param {string} message exactly the server's text */
export function rejectedScreen(message) {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-rejected", "aria-labelledby": "rejected-title" },
      h("h1", { id: "rejected-title", text: "You can't join this visit" }),
      h("p", { testid: "rejected-message", class: "lead", text: message }),
    ),
  );
}

const LEFT_REASONS = {
  left: "You left the visit.",
  removed: "The host removed you from the visit.",
  ended: "The host ended the visit for everyone.",
};

/** @param {{reason: string, message?: string, onRejoin?: (() => void)|null}} left */
export function leftScreen({ reason, message, onRejoin = null }) {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-left", dataset: { reason }, "aria-labelledby": "left-title" },
      h("h1", { id: "left-title", testid: "left-message", text: message || LEFT_TEXT }),
      h("p", { testid: "left-reason", class: "lead", text: LEFT_REASONS[reason] ?? "" }),
      onRejoin && reason === "left"
        ? h("button", { type: "button", class: "secondary", testid: "btn-rejoin", text: "Rejoin", onclick: onRejoin })
        : null,
      h("p", { class: "hint", text: "You can close this window." }),
    ),
  );
}

/** @param {string} opensAtIso */
export function notOpenScreen(opensAtIso) {
  const opens = new Date(opensAtIso);
  const today = new Date();
  const sameDay = opens.toDateString() === today.toDateString();
  const day = sameDay
    ? null
    : opens.toLocaleDateString(undefined, { weekday: "long", day: "numeric", month: "long" });
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-not-open", "aria-labelledby": "notopen-title" },
      h("h1", { id: "notopen-title", testid: "opens-at-message", text: `This visit opens at ${formatClock(opens)}` }),
      day ? h("p", { class: "lead", testid: "opens-at-day", text: `on ${day}` }) : null,
      h("p", { class: "hint", text: "You can join from then. Come back to this page at that time." }),
      h("button", { type: "button", class: "secondary", testid: "btn-reload", text: "Check again", onclick: () => location.reload() }),
    ),
  );
}

export function endedScreen() {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-ended", "aria-labelledby": "ended-title" },
      h("h1", { id: "ended-title", testid: "visit-ended-message", text: "This visit has ended" }),
      h("p", { class: "lead", text: "The time for this visit is over. If you still need to be seen, contact your provider." }),
    ),
  );
}

/** @param {string} title @param {string} detail @param {{retry?: boolean, code?: string|null}} [options] */
export function errorScreen(title, detail, { retry = false, code = null } = {}) {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-error", dataset: code ? { code } : {}, "aria-labelledby": "error-title" },
      h("h1", { id: "error-title", text: title }),
      h("p", { class: "lead", testid: "error-message", text: detail }),
      retry ? h("button", { type: "button", class: "secondary", testid: "btn-retry", text: "Try again", onclick: () => location.reload() }) : null,
    ),
  );
}

/** A screen while something is loading or being waited for. */
export function pendingScreen(title, detail, testid = "screen-pending") {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid, "aria-labelledby": "pending-title", "aria-busy": "true" },
      h("div", { class: "spinner", "aria-hidden": "true" }),
      h("h1", { id: "pending-title", text: title }),
      detail ? h("p", { class: "lead", text: detail }) : null,
    ),
  );
}

/**
 * Show the right screen for a refused `hello`.
 * @param {import("../sdk/visitroom.js").VisitRoomError} error
 */
export function refusalScreen(error) {
  switch (error.code) {
    case "outside_join_window": {
      const opens = Date.parse(String(error.details.opens_at ?? ""));
      if (Number.isFinite(opens) && opens > Date.now()) return notOpenScreen(String(error.details.opens_at));
      return endedScreen();
    }
    case "not_found":
      return unknownRoomScreen();
    case "unauthorized":
      return errorScreen("This link has expired", "Open the visit again from your dashboard or ask for a new link.");
    case "forbidden": // a valid token without the scope or practice for this visit
      return errorScreen("This sign-in can't open this visit", "Open the visit from your own practice's dashboard, or ask for a new link.");
    case "conflict":
      return errorScreen("You're already in this visit", "This visit is open in another window or device. Close it there, then try again.", { retry: true });
    case "rate_limited":
      return errorScreen("Too many attempts", "Please wait a minute, then try again.", { retry: true });
    case "room_full":
      return errorScreen("This visit is full", "Please try again later.", { retry: true });
    case "lobby_full":
      return errorScreen("The waiting room is full", "Please wait a few minutes, then try again.", { retry: true });
    case "knock_refused":
      return errorScreen("You can't rejoin this visit", "The host did not let you back in. If you think this is a mistake, contact the person who invited you.");
    default:
      return errorScreen("We couldn't connect you", "Check your internet connection and try again.", { retry: true });
  }
}

/** The link names no visit this server knows (shown before any camera is asked for). */
export function unknownRoomScreen() {
  return errorScreen("We can't find this visit", "Check the link you were sent, or contact the person who invited you.", { code: "not_found" });
}

/** This tab's place was taken by a newer connection (another tab or window). */
export function replacedScreen() {
  return showScreen(
    h(
      "section",
      { class: "card notice", testid: "screen-replaced", "aria-labelledby": "replaced-title" },
      h("h1", { id: "replaced-title", text: "This visit is open in another window" }),
      h("p", { class: "lead", testid: "replaced-message", text: "You joined the visit from another tab or window, so this one stopped. Continue there; you can close this window." }),
    ),
  );
}
