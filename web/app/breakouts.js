// Breakout rooms: the host's panel (create, assign, visit, broadcast, close) and
// the participant's banner (which breakout, time left, ask for help).

import { announce, fill, formatDuration, h } from "./dom.js";

/** Seconds left until an ISO time, or null. */
function secondsLeft(endsAt) {
  if (!endsAt) return null;
  const at = Date.parse(endsAt);
  return Number.isFinite(at) ? Math.max(0, (at - Date.now()) / 1000) : null;
}

/**
 * @param {{
 *   room: import("../sdk/visitroom.js").VisitRoom,
 *   names: Map<string, string>,
 *   onClose: () => void,
 *   notify: (text: string, kind?: string) => void,
 * }} options
 */
export function breakoutPanel({ room, names, onClose, notify }) {
  const body = h("div", { class: "breakout-body" });
  const timeLeft = h("p", { class: "time-left", testid: "breakout-time-left", hidden: true });
  const panel = h(
    "aside",
    { class: "side-panel", testid: "breakout-panel", "aria-labelledby": "breakout-heading", hidden: true },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "breakout-heading", tabindex: "-1", text: "Breakout rooms" }),
      h("button", { type: "button", class: "icon-button", testid: "btn-close-breakouts", "aria-label": "Close breakout panel", text: "✕", onclick: onClose }),
    ),
    timeLeft,
    body,
  );
  let shownState = "";

  /** @param {Promise<any>} promise @param {string} [done] */
  function act(promise, done) {
    return promise.then(
      () => done && announce(done),
      (error) => notify(`That didn't work: ${error.message}`, "error"),
    );
  }

  function nameOf(id) {
    if (id === room.participantId) return `${names.get(id) ?? "You"} (you)`;
    return names.get(id) ?? "Participant";
  }

  function createForm() {
    const count = h("input", { id: "bo-count", type: "number", min: "1", max: room.limits.breakouts, value: "2", testid: "breakout-count", inputmode: "numeric" });
    const roomNames = h("textarea", { id: "bo-names", rows: "3", testid: "breakout-names", placeholder: "Room A\nRoom B" });
    const auto = h("input", { id: "bo-auto", type: "checkbox", checked: true, testid: "breakout-auto" });
    const minutes = h("input", { id: "bo-minutes", type: "number", min: "1", max: "1440", testid: "breakout-duration", inputmode: "numeric" });
    const error = h("p", { class: "field-error", testid: "breakout-error", hidden: true });
    return h(
      "form",
      {
        class: "breakout-create",
        testid: "breakout-create",
        onsubmit: (event) => {
          event.preventDefault();
          const listed = roomNames.value.split("\n").map((n) => n.trim()).filter(Boolean);
          const n = Math.max(1, Math.min(room.limits.breakouts ?? Infinity, Number(count.value) || 1));
          const rooms = (listed.length ? listed : Array.from({ length: n }, (_, i) => `Room ${i + 1}`)).map((name) => ({ name: name.slice(0, room.limits.breakout_name) }));
          const duration = Number(minutes.value) > 0 ? Math.round(Number(minutes.value) * 60) : undefined;
          error.hidden = true;
          room.openBreakouts(rooms, { auto: auto.checked, durationS: duration }).then(
            () => announce(`${rooms.length} breakout rooms are open.`),
            (e) => {
              error.textContent = e.message;
              error.hidden = false;
            },
          );
        },
      },
      h("div", { class: "field" }, h("label", { for: "bo-count", text: "Number of rooms" }), count),
      h("div", { class: "field" }, h("label", { for: "bo-names", text: "Or room names, one per line" }), roomNames),
      h("div", { class: "field inline" }, auto, h("label", { for: "bo-auto", text: "Assign participants automatically" })),
      h("div", { class: "field" }, h("label", { for: "bo-minutes", text: "Time limit in minutes (optional)" }), minutes),
      error,
      h("button", { type: "submit", class: "primary", testid: "btn-breakout-open", text: "Open breakout rooms" }),
    );
  }

  function roomCard(id, title, members, { main = false } = {}) {
    const here = (room.breakout.room?.id ?? null) === id;
    let action = null;
    if (!here && !main) {
      action = h("button", { type: "button", class: "small secondary", testid: "btn-breakout-join", "aria-label": `Join ${title}`, text: "Join", onclick: () => act(room.moveToBreakout(room.participantId, id), `You joined ${title}.`) });
    } else if (!here && main) {
      action = h("button", { type: "button", class: "small secondary", testid: "btn-breakout-return", text: "Return to main room", onclick: () => act(room.moveToBreakout(room.participantId, null), "You are back in the main room.") });
    }
    return h(
      "li",
      { class: "breakout-card", testid: main ? "breakout-main" : "breakout-room", dataset: { breakoutId: id ?? "main" } },
      h("div", { class: "section-head" }, h("h3", { text: title + (here ? " (you are here)" : "") }), action),
      members.length
        ? h("ul", { class: "member-list" }, members.map((pid) => h("li", { testid: "breakout-member", dataset: { participantId: pid }, text: nameOf(pid) })))
        : h("p", { class: "empty", text: "Nobody yet." }),
    );
  }

  function assignTable(state) {
    const where = new Map();
    for (const pid of state.main_participant_ids) where.set(pid, "");
    for (const r of state.rooms) for (const pid of r.participant_ids) where.set(pid, r.id);
    const rows = [...where.entries()].map(([pid, current]) => {
      const selectId = `assign-${pid}`;
      const select = h(
        "select",
        {
          id: selectId,
          testid: "breakout-assign",
          dataset: { participantId: pid },
          onchange: (event) => act(room.moveToBreakout(pid, event.target.value || null), `Moved ${nameOf(pid)}.`),
        },
        h("option", { value: "", text: "Main room" }),
        state.rooms.map((r) => h("option", { value: r.id, text: r.name })),
      );
      select.value = current;
      return h("li", { class: "assign-row" }, h("label", { for: selectId, text: nameOf(pid) }), select);
    });
    return h("section", { class: "people-section" }, h("h3", { text: "Move people" }), h("ul", { class: "assign-list" }, rows));
  }

  function broadcastForm() {
    const text = h("textarea", { id: "bo-broadcast", rows: "2", maxlength: room.limits.broadcast, testid: "breakout-broadcast-text" });
    return h(
      "form",
      {
        class: "people-section",
        onsubmit: (event) => {
          event.preventDefault();
          const message = text.value.trim();
          if (!message) return text.focus();
          act(room.broadcast(message), "Message sent to every room.").then(() => (text.value = ""));
        },
      },
      h("label", { for: "bo-broadcast", text: "Message to all rooms" }),
      text,
      h("button", { type: "submit", class: "small secondary", testid: "btn-breakout-broadcast", text: "Send to all" }),
    );
  }

  function closeForm() {
    const countdown = h(
      "select",
      { id: "bo-countdown", testid: "breakout-countdown" },
      [["0", "Now"], ["30", "In 30 seconds"], ["60", "In 1 minute"], ["120", "In 2 minutes"]].map(([v, t]) => h("option", { value: v, text: t })),
    );
    return h(
      "form",
      {
        class: "people-section",
        onsubmit: (event) => {
          event.preventDefault();
          const s = Number(countdown.value);
          act(room.closeBreakouts(s), s ? `Breakout rooms close in ${formatDuration(s)}.` : "Breakout rooms closed.");
        },
      },
      h("label", { for: "bo-countdown", text: "Close all rooms" }),
      h("div", { class: "button-row" }, countdown, h("button", { type: "submit", class: "small danger", testid: "btn-breakout-close", text: "Close rooms" })),
    );
  }

  function render() {
    const state = room.breakouts;
    const signature = JSON.stringify([state, room.breakout.room?.id ?? null, [...names.entries()]]);
    tick();
    if (signature === shownState) return;
    shownState = signature;
    if (!state) {
      fill(body, createForm());
      return;
    }
    const active = document.activeElement;
    const focusId = active && body.contains(active) ? active.id || active.dataset?.testid : null;
    fill(
      body,
      h(
        "ul",
        { class: "breakout-cards" },
        roomCard(null, "Main room", state.main_participant_ids, { main: true }),
        state.rooms.map((r) => roomCard(r.id, r.name, r.participant_ids)),
      ),
      assignTable(state),
      broadcastForm(),
      closeForm(),
    );
    if (focusId) (body.querySelector(`#${CSS.escape(focusId)}`) ?? body.querySelector(`[data-testid="${focusId}"]`))?.focus();
  }

  function tick() {
    const left = secondsLeft(room.breakouts?.ends_at);
    timeLeft.hidden = left === null;
    if (left !== null) timeLeft.textContent = `Time left: ${formatDuration(left)}`;
  }

  return { element: panel, render, tick };
}

/**
 * The banner a participant sees while in a breakout.
 * @param {{room: import("../sdk/visitroom.js").VisitRoom, notify: (text: string, kind?: string) => void}} options
 */
export function breakoutBanner({ room, notify }) {
  const name = h("strong", { testid: "breakout-name" });
  const time = h("span", { class: "time-left", testid: "breakout-banner-time" });
  const help = h("button", {
    type: "button",
    class: "small secondary",
    testid: "btn-ask-help",
    text: "Ask for help",
    onclick: () =>
      room.requestHelp().then(
        () => notify("The host was asked to help.", "info"),
        (error) => notify(`That didn't work: ${error.message}`, "error"),
      ),
  });
  const banner = h(
    "div",
    { class: "breakout-banner", testid: "breakout-banner", role: "region", "aria-label": "Breakout room", hidden: true },
    h("span", {}, "You're in breakout room ", name),
    time,
    help,
  );

  function render() {
    const current = room.breakout.room;
    banner.hidden = !current;
    if (!current) return;
    name.textContent = current.name;
    help.hidden = room.isHost;
    tick();
  }

  function tick() {
    const left = secondsLeft(room.breakout.ends_at);
    time.hidden = left === null;
    if (left !== null) time.textContent = `${formatDuration(left)} left`;
  }

  return { element: banner, render, tick };
}
