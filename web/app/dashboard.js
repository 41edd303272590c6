// /dashboard: the provider's schedule. Signed in with a pasted admin token kept in
// sessionStorage (this tab only; never in a URL). Schedules visits, lists today's
// and upcoming ones, copies the patient link, and opens the host page in a new
// window, handing it a short-lived host token by postMessage.
// The token needs the rooms:admin scope; joining as host also needs rooms:host
// (without it the Join buttons are not shown). A practice's token sees only its
// own practice's visits.

import { formatClock } from "../sdk/visitroom.js";
import { api, configureApi } from "./api.js";
import { announce, fill, h, showScreen } from "./dom.js";
import { mountPatientSearch, patientPicker, unmountPatientSearch } from "./patients.js";

const STORAGE_KEY = "visitroom.adminToken";
const REFRESH_MS = 30 * 1000;
const DAYS_AHEAD = 30;

let token = sessionStorage.getItem(STORAGE_KEY);
let refreshTimer = null;
/** What the signed-in token may do, from the list answer: { practice, scopes }. */
let caller = { practice: null, scopes: [] };
const NO_ROOMS_SCOPE = "That token cannot manage visits: it needs the rooms:admin scope (a portal token is not enough).";
/** Host windows we opened and are waiting to hand a token to: window -> room id. */
const hostWindows = new Map();

configureApi({
  token: () => token,
  onUnauthorized: () => signOut("Your admin token is not valid or has expired. Paste a new one."),
});

// --- sign in ---------------------------------------------------------------------------

function signInScreen(message = "") {
  const input = h("textarea", { id: "admin-token", testid: "admin-token-input", rows: "3", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "signin-help signin-error" });
  const error = h("p", { id: "signin-error", class: "field-error", testid: "signin-error", role: "alert", hidden: !message, text: message });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) {
          error.textContent = "Paste your admin token.";
          error.hidden = false;
          return input.focus();
        }
        token = value;
        try {
          await api("GET", listPath(), undefined, { signOutOn401: false });
        } catch (e) {
          token = null;
          error.textContent = e.status === 401 ? "That token was not accepted." : e.status === 403 ? NO_ROOMS_SCOPE : `Could not sign in: ${e.message}`;
          error.hidden = false;
          return input.focus();
        }
        sessionStorage.setItem(STORAGE_KEY, token);
        dashboardScreen();
      },
    },
    h("div", { class: "field" }, h("label", { for: "admin-token", text: "Admin token" }), input),
    h("p", { id: "signin-help", class: "hint", text: "Paste the admin token of your practice (visitroom token --scope \"rooms:admin rooms:host\" --practice ... ). It stays in this browser tab only." }),
    error,
    h("button", { type: "submit", class: "primary", testid: "btn-signin", text: "Sign in" }),
  );
  showScreen(
    h("section", { class: "card", testid: "screen-signin", "aria-labelledby": "signin-title" }, h("h1", { id: "signin-title", text: "Provider dashboard" }), form),
    { focus: input },
  );
}

function signOut(message = "") {
  token = null;
  sessionStorage.removeItem(STORAGE_KEY);
  clearInterval(refreshTimer);
  unmountPatientSearch();
  signInScreen(message);
}

// --- dashboard -------------------------------------------------------------------------

function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d;
}

function listPath() {
  const from = startOfToday();
  const to = new Date(from.getTime() + DAYS_AHEAD * 86400000);
  return `/v1/rooms?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
}

function dateInputValue(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function nextHalfHour() {
  const d = new Date(Date.now() + 5 * 60000);
  d.setMinutes(d.getMinutes() < 30 ? 30 : 60, 0, 0);
  return d;
}

function scheduleForm(onScheduled) {
  const start = nextHalfHour();
  const end = new Date(start.getTime() + 30 * 60000);
  const date = h("input", { id: "sch-date", type: "date", testid: "schedule-date", required: true, value: dateInputValue(start) });
  const from = h("input", { id: "sch-start", type: "time", testid: "schedule-start", required: true, value: formatClock(start) });
  const to = h("input", { id: "sch-end", type: "time", testid: "schedule-end", required: true, value: formatClock(end) });
  const roomId = h("input", { id: "sch-room", type: "text", testid: "schedule-room-id", maxlength: "64", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}", "aria-describedby": "sch-room-help" });
  const result = h("div", { class: "schedule-result", testid: "schedule-result", role: "status" });
  const patient = patientPicker();
  const form = h(
    "form",
    {
      class: "schedule-form",
      testid: "schedule-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const startsAt = new Date(`${date.value}T${from.value}`);
        const endsAt = new Date(`${date.value}T${to.value}`);
        if (!(endsAt > startsAt)) {
          fill(result, h("p", { class: "field-error", testid: "schedule-error", text: "The visit must end after it starts." }));
          return to.focus();
        }
        const body = { starts_at: startsAt.toISOString(), ends_at: endsAt.toISOString() };
        if (roomId.value.trim()) body.room_id = roomId.value.trim();
        try {
          const created = await api("POST", "/v1/rooms", body);
          fill(result, h("p", { class: "success", testid: "schedule-success" }, `Visit scheduled for ${formatClock(startsAt)}. Patient link: `, h("span", { class: "mono", text: created.join_url })));
          result.append(...[await patient.afterScheduled(created.room_id)].filter(Boolean));
          announce("Visit scheduled.");
          roomId.value = "";
          onScheduled();
        } catch (e) {
          fill(result, h("p", { class: "field-error", testid: "schedule-error", text: e.code === "conflict" ? "A visit with this id already exists." : `Could not schedule: ${e.message}` }));
        }
      },
    },
    h("div", { class: "field" }, h("label", { for: "sch-date", text: "Date" }), date),
    h("div", { class: "field-row" },
      h("div", { class: "field" }, h("label", { for: "sch-start", text: "Starts" }), from),
      h("div", { class: "field" }, h("label", { for: "sch-end", text: "Ends" }), to)),
    h("div", { class: "field" }, h("label", { for: "sch-room", text: "Visit id (optional)" }), roomId,
      h("p", { id: "sch-room-help", class: "hint", text: "Letters, digits, dot, dash or underscore. Leave empty for a random id." })),
    patient.element,
    h("button", { type: "submit", class: "primary", testid: "btn-schedule", text: "Schedule visit" }),
    result,
  );
  return form;
}

/** Whether the visit's join window (from the server: `opens_at`, `closes_at`) is open now. */
function canJoin(visit, now = Date.now()) {
  return now >= Date.parse(visit.opens_at) && now <= Date.parse(visit.closes_at);
}

function mayHost() {
  return caller.scopes.includes("rooms:host");
}

function visitItem(visit, { showDate }) {
  const starts = new Date(visit.starts_at);
  const ends = new Date(visit.ends_at);
  const when = `${formatClock(starts)}–${formatClock(ends)}`;
  const day = showDate ? starts.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" }) + " " : "";
  const linkId = `link-${visit.room_id}`;
  const link = h("input", { id: linkId, class: "mono", type: "text", readonly: true, testid: "patient-link", value: visit.join_url });
  const waiting = visit.waiting ? `${visit.waiting} waiting` : "";
  const joined = visit.joined ? `${visit.joined} in the visit` : "";
  const status = [waiting, joined].filter(Boolean).join(", ");
  return h(
    "li",
    { class: "visit", testid: "visit-item", dataset: { roomId: visit.room_id } },
    h("div", { class: "visit-head" },
      h("span", { class: "visit-time", testid: "visit-time", text: day + when }),
      h("span", { class: "visit-room mono", testid: "visit-room", text: visit.room_id }),
      status ? h("span", { class: "visit-status", testid: "visit-status", text: status }) : null),
    h("div", { class: "visit-link" },
      h("label", { for: linkId, text: "Patient link" }),
      link,
      h("button", { type: "button", class: "small secondary", testid: "btn-copy-link", text: "Copy link", onclick: () => copyLink(link) }),
      canJoin(visit) && mayHost()
        ? h("button", { type: "button", class: "small primary", testid: "btn-join-visit", "aria-label": `Join visit ${visit.room_id}`, text: "Join", onclick: () => openHostWindow(visit.room_id) })
        : null),
  );
}

async function copyLink(input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand?.("copy");
  }
  announce("Patient link copied.");
  input.closest(".visit")?.classList.add("copied");
}

/**
 * Join: open the visit's host window, or bring it forward when it is already open. Never
 * window.open(url) into an open one: that navigates it and throws the host out of the call.
 */
function openHostWindow(roomId) {
  const path = `/host/${encodeURIComponent(roomId)}`;
  const known = [...hostWindows].find(([w, id]) => id === roomId && !w.closed)?.[0];
  // From the click itself (not after an await) so popup blockers allow it. An empty URL
  // finds the visit's window by name without navigating it (this page may have been
  // reloaded since it opened it); a window it has to create is blank until sent below.
  const win = known ?? window.open("", `visitroom-host-${roomId}`);
  if (!win) {
    announce("The browser blocked the new window. Allow pop-ups for this site and try again.");
    return;
  }
  hostWindows.set(win, roomId);
  if (known || showsPath(win, path)) {
    win.focus();
    announce(`The visit ${roomId} is already open in another window.`);
    return;
  }
  win.location.replace(path);
}

/** @param {Window} win @param {string} path */
function showsPath(win, path) {
  try {
    return win.location.pathname === path;
  } catch {
    return false; // a page of another origin took the name: not ours
  }
}

window.addEventListener("message", async (event) => {
  if (event.origin !== location.origin || event.data?.type !== "visitroom:host-ready") return;
  // The window stays registered: a reload of the host page asks again for a fresh token.
  const roomId = hostWindows.get(event.source);
  if (!roomId || event.data.room_id !== roomId) return;
  for (const win of hostWindows.keys()) if (win.closed) hostWindows.delete(win);
  try {
    const minted = await api("POST", `/v1/rooms/${encodeURIComponent(roomId)}/host-token`);
    event.source.postMessage({ type: "visitroom:host-token", room_id: roomId, token: minted.token }, location.origin);
  } catch {
    event.source.postMessage({ type: "visitroom:host-token-error", room_id: roomId }, location.origin);
  }
});

function dashboardScreen() {
  const today = h("ul", { class: "visit-list", testid: "visits-today", "aria-labelledby": "today-title" });
  const upcoming = h("ul", { class: "visit-list", testid: "visits-upcoming", "aria-labelledby": "upcoming-title" });
  const listError = h("p", { class: "field-error", testid: "list-error", role: "alert", hidden: true });
  const practice = h("span", { class: "visit-status", testid: "dash-practice", hidden: true });
  const noHost = h("p", { class: "hint", testid: "no-host-hint", hidden: true, text: "This token cannot host visits (it has no rooms:host scope): the Join buttons are hidden." });

  async function refresh() {
    let data;
    try {
      data = await api("GET", listPath());
    } catch (e) {
      if (e.status !== 401) {
        listError.textContent = `Could not load visits: ${e.message}`;
        listError.hidden = false;
      }
      return;
    }
    listError.hidden = true;
    caller = { practice: data.practice ?? null, scopes: data.scopes ?? [] };
    practice.textContent = caller.practice ? `Practice: ${caller.practice}` : "";
    practice.hidden = !caller.practice;
    noHost.hidden = mayHost();
    const tomorrow = startOfToday().getTime() + 86400000;
    const visits = data.rooms.filter((v) => Date.parse(v.closes_at) >= startOfToday().getTime());
    const todays = visits.filter((v) => Date.parse(v.starts_at) < tomorrow);
    const later = visits.filter((v) => Date.parse(v.starts_at) >= tomorrow);
    const focused = document.activeElement;
    const focusKey = focused?.closest?.(".visit") ? [focused.closest(".visit").dataset.roomId, focused.dataset.testid] : null;
    fill(today, todays.length ? todays.map((v) => visitItem(v, { showDate: false })) : h("li", { class: "empty", text: "No visits today." }));
    fill(upcoming, later.length ? later.map((v) => visitItem(v, { showDate: true })) : h("li", { class: "empty", text: "No upcoming visits." }));
    if (focusKey) document.querySelector(`.visit[data-room-id="${CSS.escape(focusKey[0])}"] [data-testid="${focusKey[1]}"]`)?.focus();
  }

  showScreen(
    h(
      "section",
      { class: "dashboard", testid: "screen-dashboard", "aria-labelledby": "dash-title" },
      h("div", { class: "dash-head" },
        h("h1", { id: "dash-title", text: "Visits" }),
        practice,
        h("button", { type: "button", class: "secondary small", testid: "btn-signout", text: "Sign out", onclick: () => signOut() })),
      h("div", { class: "dash-columns" },
        h("section", { class: "card", "aria-labelledby": "schedule-title" }, h("h2", { id: "schedule-title", text: "Schedule a visit" }), scheduleForm(refresh)),
        h("div", { class: "stack" },
          listError,
          noHost,
          h("section", { class: "card", "aria-labelledby": "today-title" }, h("h2", { id: "today-title", text: "Today" }), today),
          h("section", { class: "card", "aria-labelledby": "upcoming-title" }, h("h2", { id: "upcoming-title", text: "Upcoming" }), upcoming))),
    ),
  );
  refresh();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refresh, REFRESH_MS);
  mountPatientSearch({ onBack: dashboardScreen });
}

if (token) dashboardScreen();
else signInScreen();
