// The People panel: guests waiting in the lobby (hosts only) and everyone in the
// visit. Hosts let guests in, put them on hold with a message, reject them,
// remove participants, or remove everyone, and let a turned-away guest knock again.

import { announce, confirmAction, fill, h, menuButton, menuOpenIn } from "./dom.js";

/**
 * @param {{
 *   room: import("../sdk/visitroom.js").VisitRoom,
 *   names: Map<string, string>,
 *   onClose: () => void,
 *   notify: (text: string, kind?: string) => void,
 * }} options
 */
export function peoplePanel({ room, names, onClose, notify }) {
  const isHost = room.isHost;
  /** @type {Set<string>} guests whose Respond form is open */
  const responding = new Set();
  /** @type {Map<string, string>} drafts of hold messages, kept across re-renders */
  const drafts = new Map();

  const waitingCount = h("span", { class: "count", testid: "waiting-count" });
  const joinedCount = h("span", { class: "count", testid: "joined-count" });
  const waitingList = h("ul", { class: "people-list", testid: "waiting-list", "aria-labelledby": "waiting-heading" });
  const joinedList = h("ul", { class: "people-list", testid: "joined-list", "aria-labelledby": "joined-heading" });
  const refusedList = h("ul", { class: "people-list", testid: "refused-list", "aria-labelledby": "refused-heading" });
  const refusedSection = isHost
    ? h(
        "section",
        { class: "people-section", testid: "refused-section", hidden: true },
        h("h3", { id: "refused-heading", text: "Turned away" }),
        refusedList,
      )
    : null;
  const admitAll = h("button", { type: "button", class: "small primary", testid: "btn-admit-all", text: "Let in all", onclick: () => act(room.admitAll(), "Everyone waiting was let in.") });
  const waitingSection = isHost
    ? h(
        "section",
        { class: "people-section", testid: "waiting-section" },
        h("div", { class: "section-head" }, h("h3", { id: "waiting-heading" }, "Waiting to join ", waitingCount), admitAll),
        waitingList,
      )
    : null;
  const panelMenu = isHost
    ? menuButton({
        label: "People options",
        testid: "btn-people-menu",
        items: [{ label: "Remove all", testid: "btn-remove-all", danger: true, onSelect: (button) => confirmRemoveAll(button) }],
      })
    : null;
  const panel = h(
    "aside",
    { class: "side-panel", testid: "people-panel", "aria-labelledby": "people-heading", hidden: true },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "people-heading", tabindex: "-1", text: "People" }),
      panelMenu,
      h("button", { type: "button", class: "icon-button", testid: "btn-close-people", "aria-label": "Close people panel", text: "✕", onclick: onClose }),
    ),
    waitingSection,
    h("section", { class: "people-section" }, h("h3", { id: "joined-heading" }, "In the visit ", joinedCount), joinedList),
    refusedSection,
  );

  /** @param {Promise<any>} promise @param {string} [done] */
  function act(promise, done) {
    promise.then(
      (ack) => {
        if (done) announce(done);
        if (ack?.room_full) notify("The visit is full: some guests are still waiting.", "warning");
      },
      (error) => notify(`That didn't work: ${error.message}`, "error"),
    );
  }

  async function confirmRemoveAll(returnTo) {
    const others = [...room.participants.values()].filter((p) => p.role !== "host");
    const people = `${others.length} participant${others.length === 1 ? "" : "s"}`;
    const sure = await confirmAction({
      action: "remove-all",
      title: "Remove everyone?",
      text: `All ${people} (everyone but the hosts) will be sent out of the visit now.`,
      confirm: "Remove all",
      returnTo,
    });
    if (sure) act(room.removeAll(), `Removed ${people}.`);
  }

  /** @param {import("../sdk/visitroom.js").Person} person @param {HTMLElement} button */
  async function confirmRemove(person, button) {
    // The row may be re-rendered (or gone) by the time the dialog closes.
    const returnTo = () =>
      button.isConnected
        ? button
        : panel.querySelector(`[data-participant-id="${CSS.escape(person.id)}"] [data-testid="btn-participant-menu"]`) ?? panel.querySelector("h2");
    const sure = await confirmAction({
      action: "remove",
      title: `Remove ${person.name}?`,
      text: `${person.name} will be sent out of the visit now.`,
      confirm: "Remove",
      returnTo,
    });
    if (sure) act(room.remove(person.id), `${person.name} was removed.`);
  }

  /** @param {import("../sdk/visitroom.js").WaitingGuest} guest */
  function waitingItem(guest) {
    const open = responding.has(guest.id);
    const formId = `respond-${guest.id}`;
    const status =
      guest.status === "on_hold" ? `On hold${guest.message ? `: “${guest.message}”` : ""}` : "Waiting";
    const item = h(
      "li",
      { class: "person", testid: "waiting-item", dataset: { participantId: guest.id, status: guest.status } },
      h(
        "div",
        { class: "person-row" },
        h("span", { class: "person-name", testid: "waiting-name", text: guest.name }),
        h("span", { class: "person-status", testid: "waiting-status", text: status }),
        h(
          "div",
          { class: "person-actions" },
          h("button", {
            type: "button",
            class: "small primary",
            testid: "btn-let-in",
            "aria-label": `Let in ${guest.name}`,
            text: "Let in",
            onclick: () => act(room.admit([guest.id]), `${guest.name} was let in.`),
          }),
          h("button", {
            type: "button",
            class: "small secondary",
            testid: "btn-respond",
            "aria-expanded": open ? "true" : "false",
            "aria-controls": formId,
            "aria-label": `Respond to ${guest.name}`,
            text: "Respond",
            onclick: () => {
              if (responding.has(guest.id)) responding.delete(guest.id);
              else responding.add(guest.id);
              render();
              if (responding.has(guest.id)) {
                waitingList.querySelector(`[data-participant-id="${CSS.escape(guest.id)}"] textarea`)?.focus();
              }
            },
          }),
        ),
      ),
      open ? respondForm(guest, formId) : null,
    );
    return item;
  }

  function respondForm(guest, formId) {
    const textId = `${formId}-text`;
    const text = h("textarea", {
      id: textId,
      testid: "respond-message",
      rows: "2",
      maxlength: room.limits.hold_message,
      value: drafts.get(guest.id) ?? "",
      placeholder: "e.g. I'll be with you in 5 minutes",
      oninput: (event) => drafts.set(guest.id, event.target.value),
    });
    const error = h("p", { class: "field-error", hidden: true, testid: "respond-error" });
    const hold = h("button", {
      type: "submit",
      class: "small primary",
      testid: "btn-put-on-hold",
      text: "Put on hold",
    });
    const more = menuButton({
      label: `More responses for ${guest.name}`,
      testid: "btn-respond-menu",
      class: "icon-button small",
      items: [
        {
          label: "Reject",
          testid: "btn-reject",
          danger: true,
          onSelect: () => {
            responding.delete(guest.id);
            act(room.reject(guest.id), `${guest.name} was rejected.`);
          },
        },
      ],
    });
    return h(
      "form",
      {
        id: formId,
        class: "respond-form",
        testid: "respond-form",
        onsubmit: (event) => {
          event.preventDefault();
          const message = text.value.trim();
          if (!message) {
            error.textContent = "Write a message for the guest first.";
            error.hidden = false;
            text.focus();
            return;
          }
          responding.delete(guest.id);
          drafts.delete(guest.id);
          act(room.hold(guest.id, message), `${guest.name} is on hold.`);
        },
      },
      h("label", { for: textId, text: `Message to ${guest.name}` }),
      text,
      error,
      h("div", { class: "button-row" }, hold, more),
    );
  }

  /** @param {import("../sdk/visitroom.js").Refusal} refusal */
  function refusedItem(refusal) {
    return h(
      "li",
      { class: "person", testid: "refused-item", dataset: { participantId: refusal.id } },
      h(
        "div",
        { class: "person-row" },
        h("span", { class: "person-name", testid: "refused-name", text: refusal.name }),
        h("span", { class: "person-status", text: refusal.reason === "removed" ? "Removed" : "Rejected" }),
        h("button", {
          type: "button",
          class: "small secondary",
          testid: "btn-allow-knock",
          "aria-label": `Allow ${refusal.name} to knock again`,
          text: "Allow again",
          onclick: () => act(room.allowKnock(refusal.id), `${refusal.name} may knock again.`),
        }),
      ),
    );
  }

  /** @param {import("../sdk/visitroom.js").Person} person */
  function joinedItem(person) {
    const self = person.id === room.participantId;
    const items = [
      { label: "Pin video", testid: "btn-pin", onSelect: () => act(room.pin(person.id), `Pinned ${person.name}.`) },
    ];
    if (isHost && !self) {
      items.push({
        label: "Remove",
        testid: "btn-remove",
        danger: true,
        onSelect: (button) => confirmRemove(person, button),
      });
    }
    return h(
      "li",
      { class: "person", testid: "joined-item", dataset: { participantId: person.id, role: person.role } },
      h(
        "div",
        { class: "person-row" },
        h("span", { class: "person-name", testid: "joined-name", text: person.name }),
        h("span", { class: "person-status", text: [self ? "You" : "", person.role === "host" ? "Host" : ""].filter(Boolean).join(" · ") }),
        self
          ? null
          : menuButton({ label: `More options for ${person.name}`, testid: "btn-participant-menu", class: "icon-button small", items }),
      ),
    );
  }

  // A knock or a join while the host has a menu open would replace the menu under the
  // pointer: the list waits until the menu closes, then catches up.
  let stale = false;
  panel.addEventListener("menuclose", () => {
    if (stale) render();
  });

  function render() {
    stale = menuOpenIn(panel);
    if (stale) return;
    const active = document.activeElement;
    const focusKey = active && panel.contains(active) ? focusSignature(active) : null;
    if (isHost) {
      const waiting = [...room.waiting.values()].sort((a, b) => a.knocked_at - b.knocked_at);
      for (const id of responding) if (!room.waiting.has(id)) responding.delete(id);
      waitingCount.textContent = `(${waiting.length})`;
      admitAll.disabled = waiting.length === 0;
      fill(waitingList, waiting.length ? waiting.map(waitingItem) : h("li", { class: "empty", text: "Nobody is waiting." }));
      refusedSection.hidden = room.refusals.length === 0;
      fill(refusedList, room.refusals.map(refusedItem));
    }
    const joined = [...room.participants.values()];
    joinedCount.textContent = `(${joined.length})`;
    fill(joinedList, joined.map(joinedItem));
    for (const p of joined) names.set(p.id, p.name);
    if (focusKey) restoreFocus(focusKey);
  }

  // Re-rendering replaces nodes; put focus back on the same control so keyboard
  // users are not thrown to the top of the page when someone else knocks.
  function focusSignature(el) {
    const item = el.closest("[data-participant-id]");
    return { testid: el.dataset?.testid, pid: item?.dataset.participantId ?? null };
  }

  function restoreFocus({ testid, pid }) {
    if (!testid) return;
    const scope = pid ? panel.querySelector(`[data-participant-id="${CSS.escape(pid)}"]`) : panel;
    const target = scope?.querySelector(`[data-testid="${testid}"]`) ?? null;
    (target ?? panel.querySelector("h2"))?.focus();
    if (target instanceof HTMLTextAreaElement) target.setSelectionRange(target.value.length, target.value.length);
  }

  return { element: panel, render };
}
