// /dashboard: the practice's schedule. Staff sign in with email and password (and a
// code from an authenticator app when they set one up): the server keeps the session
// and the browser holds it in an HttpOnly cookie; this page keeps only the session's
// CSRF token, in memory (web/app/staff.js). Integrators may still sign in with a pasted
// admin token (kept in sessionStorage, this tab only; never in a URL).
// Schedules visits, lists today's and upcoming ones, copies the patient link, and opens
// the host page in a new window, handing it a short-lived host token by postMessage.
// Joining as host needs the rooms:host scope (providers and front desk; without it the
// Join buttons are not shown). A practice's user sees only its own practice's visits.
// Practice admins also get the Users screen; everyone gets Security (two-step sign-in).

import { formatClock } from "../sdk/visitroom.js";
import { api, configureApi } from "./api.js";
import { announce, fill, h, showScreen } from "./dom.js";
import { oidcSignIn } from "./oidc.js";
import { mountPatientSearch, patientPicker, unmountPatientSearch, visitPatient } from "./patients.js";
import * as staff from "./staff.js";

const STORAGE_KEY = "visitroom.adminToken";
const REFRESH_MS = 30 * 1000;
const DAYS_AHEAD = 30;

/** How this page is signed in: a pasted token (integrators), a staff session, or not. */
let token = sessionStorage.getItem(STORAGE_KEY);
let refreshTimer = null;
/** What the signed-in user may do, from the list answer: { practice, scopes }. */
let caller = { practice: null, scopes: [] };
const NO_ROOMS_SCOPE = "That token cannot manage visits: it needs the rooms:admin scope (a portal token is not enough).";
const SESSION_ENDED = "Your session has ended. Please sign in again.";
/** Host windows we opened and are waiting to hand a token to: window -> room id. */
const hostWindows = new Map();

configureApi({
  token: () => token,
  onUnauthorized: () => signOut(token ? "Your admin token is not valid or has expired. Paste a new one." : SESSION_ENDED, { local: true }),
});

// --- sign in ---------------------------------------------------------------------------

function field(id, label, input, hint) {
  return h("div", { class: "field" }, h("label", { for: id, text: label }), input, hint ? h("p", { class: "hint", text: hint }) : null);
}

function signInScreen(message = "", notice = "") {
  const email = h("input", { id: "signin-email", type: "email", testid: "signin-email", autocomplete: "username", required: true, "aria-describedby": "signin-error" });
  const password = h("input", { id: "signin-password", type: "password", testid: "signin-password", autocomplete: "current-password", required: true });
  const code = h("input", { id: "signin-code", type: "text", testid: "signin-code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "7", pattern: "[0-9 ]{6,7}" });
  const codeField = h("div", { class: "field", hidden: true }, h("label", { for: "signin-code", text: "Code from your authenticator app" }), code);
  const error = h("p", { id: "signin-error", class: "field-error", testid: "signin-error", role: "alert", hidden: !message, text: message });
  const info = h("p", { class: "success", testid: "signin-notice", role: "status", hidden: !notice, text: notice });
  const say = (text, focus) => {
    error.textContent = text;
    error.hidden = false;
    focus?.focus();
  };
  const form = h(
    "form",
    {
      class: "stack",
      testid: "signin-form",
      onsubmit: async (event) => {
        event.preventDefault();
        info.hidden = true;
        const result = await staff.signIn(email.value.trim(), password.value, codeField.hidden ? "" : code.value);
        if (result.ok) return dashboardScreen();
        if (result.code === "totp_required") {
          codeField.hidden = false;
          error.hidden = true;
          return code.focus();
        }
        if (result.code === "throttled") return say("Too many failed sign-ins. Wait a minute, then try again.", password);
        if (!codeField.hidden && result.status === 401) {
          code.value = "";
          return say("That code is not right (or was used already). Enter the newest code from your app.", code);
        }
        password.value = "";
        say(result.status === 401 ? "The email or password is not right." : `Could not sign in: ${result.message ?? result.status}`, password);
      },
    },
    field("signin-email", "Email", email),
    field("signin-password", "Password", password),
    codeField,
    h("button", { type: "submit", class: "primary", testid: "btn-signin", text: "Sign in" }),
  );
  showScreen(
    h("section", { class: "card signin", testid: "screen-signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title", text: "Staff sign-in" }),
      info,
      error,
      form,
      oidcSignIn(),
      h("button", { type: "button", class: "link-button", testid: "btn-forgot", text: "Forgot your password?", onclick: () => forgotScreen(email.value) }),
      tokenSignIn(say)),
    { focus: message || notice ? null : email },
  );
}

/** Integrators and operators: sign in with a pasted admin token (the old way). */
function tokenSignIn(say) {
  const input = h("textarea", { id: "admin-token", testid: "admin-token-input", rows: "3", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "signin-help" });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) return say("Paste your admin token.", input);
        token = value;
        try {
          await api("GET", listPath(), undefined, { signOutOn401: false });
        } catch (e) {
          token = null;
          return say(e.status === 401 ? "That token was not accepted." : e.status === 403 ? NO_ROOMS_SCOPE : `Could not sign in: ${e.message}`, input);
        }
        sessionStorage.setItem(STORAGE_KEY, token);
        dashboardScreen();
      },
    },
    h("div", { class: "field" }, h("label", { for: "admin-token", text: "Admin token" }), input),
    h("p", { id: "signin-help", class: "hint", text: "For integrators: paste an admin token (visitroom token --scope \"rooms:admin rooms:host\" --practice ... ). It stays in this browser tab only." }),
    h("button", { type: "submit", class: "secondary", testid: "btn-token-signin", text: "Sign in with token" }),
  );
  return h("details", { class: "token-signin", testid: "token-signin" }, h("summary", { testid: "token-signin-toggle", text: "Sign in with an API token" }), form);
}

function forgotScreen(prefill = "") {
  const email = h("input", { id: "forgot-email", type: "email", testid: "forgot-email", autocomplete: "username", required: true, value: prefill });
  const result = h("p", { class: "success", testid: "forgot-sent", role: "status", hidden: true });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        await staff.staffFetch("POST", "/v1/staff/password-reset", { email: email.value.trim() }).catch(() => undefined);
        result.textContent = "If this address belongs to an account, an email with a link to choose a new password is on its way. The link works once, for a short time.";
        result.hidden = false;
      },
    },
    field("forgot-email", "Your email", email),
    h("button", { type: "submit", class: "primary", testid: "btn-forgot-send", text: "Email me a link" }),
    result,
  );
  showScreen(
    h("section", { class: "card signin", testid: "screen-forgot", "aria-labelledby": "forgot-title" },
      h("h1", { id: "forgot-title", text: "Choose a new password" }),
      form,
      h("button", { type: "button", class: "link-button", testid: "btn-back-signin", text: "Back to sign-in", onclick: () => signInScreen() })),
    { focus: email },
  );
}

function resetScreen(resetToken) {
  const first = h("input", { id: "reset-password", type: "password", testid: "reset-password", autocomplete: "new-password", required: true, minlength: "10" });
  const again = h("input", { id: "reset-again", type: "password", testid: "reset-again", autocomplete: "new-password", required: true, minlength: "10" });
  const error = h("p", { class: "field-error", testid: "reset-error", role: "alert", hidden: true });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const say = (text) => {
          error.textContent = text;
          error.hidden = false;
        };
        if (first.value !== again.value) return say("The two passwords differ.");
        const response = await staff.staffFetch("POST", "/v1/staff/password-reset/complete", { token: resetToken, password: first.value });
        if (response.ok) return signInScreen("", "Your new password is set. Sign in with it.");
        const data = await response.json().catch(() => ({}));
        say(data?.error?.code === "link_invalid" ? "This link has expired or was used already. Ask for a new one." : data?.error?.message ?? "Could not set the password.");
      },
    },
    field("reset-password", "New password (at least 10 characters)", first),
    field("reset-again", "The same password again", again),
    error,
    h("button", { type: "submit", class: "primary", testid: "btn-reset", text: "Set password" }),
  );
  showScreen(h("section", { class: "card signin", testid: "screen-reset", "aria-labelledby": "reset-title" }, h("h1", { id: "reset-title", text: "Choose a new password" }), form), { focus: first });
}

async function signOut(message = "", { local = false } = {}) {
  clearInterval(refreshTimer);
  unmountPatientSearch();
  if (token) {
    token = null;
    sessionStorage.removeItem(STORAGE_KEY);
  } else if (local) {
    staff.forget();
  } else {
    await staff.signOut();
  }
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
        if (patient.chosenId()) body.patient_id = patient.chosenId();
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
      visit.patient_id ? visitPatient(visit.patient_id) : null,
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

function refreshEvery() {
  const idle = staff.session()?.idle_timeout_s;
  return token || !idle ? REFRESH_MS : Math.max(1000, Math.min(REFRESH_MS, (idle * 1000) / 2));
}

function roleLabel(role) {
  return { provider: "Provider", front_desk: "Front desk", practice_admin: "Practice admin" }[role] ?? role;
}

function headButtons() {
  const me = staff.session();
  if (!me) return [h("button", { type: "button", class: "secondary small", testid: "btn-signout", text: "Sign out", onclick: () => signOut() })];
  return [
    h("span", { class: "visit-status", testid: "dash-user", text: `${me.user.display_name} · ${roleLabel(me.user.role)}` }),
    me.user.role === "practice_admin" ? h("button", { type: "button", class: "secondary small", testid: "btn-users", text: "Users", onclick: () => usersScreen() }) : null,
    h("button", { type: "button", class: "secondary small", testid: "btn-security", text: "Security", onclick: () => securityScreen() }),
    h("button", { type: "button", class: "secondary small", testid: "btn-signout", text: "Sign out", onclick: () => signOut() }),
  ];
}

function dashboardScreen() {
  const today = h("ul", { class: "visit-list", testid: "visits-today", "aria-labelledby": "today-title" });
  const upcoming = h("ul", { class: "visit-list", testid: "visits-upcoming", "aria-labelledby": "upcoming-title" });
  const listError = h("p", { class: "field-error", testid: "list-error", role: "alert", hidden: true });
  const practice = h("span", { class: "visit-status", testid: "dash-practice", hidden: true });
  const noHost = h("p", { class: "hint", testid: "no-host-hint", hidden: true, text: token ? "This token cannot host visits (it has no rooms:host scope): the Join buttons are hidden." : "Your role does not host visits: the Join buttons are hidden." });

  async function refresh({ background = true } = {}) {
    let data;
    try {
      data = await api("GET", listPath(), undefined, { background });
    } catch (e) {
      if (e.status !== 401) {
        listError.textContent = `Could not load visits: ${e.message}`;
        listError.hidden = false;
      }
      return;
    }
    listError.hidden = true;
    caller = { practice: data.practice ?? null, scopes: data.scopes ?? [] };
    const practiceName = staff.session()?.practice_name ?? caller.practice;
    practice.textContent = practiceName ? `Practice: ${practiceName}` : "";
    practice.hidden = !practiceName;
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
      h("div", { class: "dash-head" }, h("h1", { id: "dash-title", text: "Visits" }), practice, ...headButtons()),
      h("div", { class: "dash-columns" },
        h("section", { class: "card", "aria-labelledby": "schedule-title" }, h("h2", { id: "schedule-title", text: "Schedule a visit" }), scheduleForm(() => refresh({ background: false }))),
        h("div", { class: "stack" },
          listError,
          noHost,
          h("section", { class: "card", "aria-labelledby": "today-title" }, h("h2", { id: "today-title", text: "Today" }), today),
          h("section", { class: "card", "aria-labelledby": "upcoming-title" }, h("h2", { id: "upcoming-title", text: "Upcoming" }), upcoming))),
    ),
  );
  refresh({ background: false });
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refresh, refreshEvery());
  mountPatientSearch({ onBack: dashboardScreen });
}

/** A screen of its own under the dashboard's head, with a way back. */
function subScreen(testid, title, ...content) {
  clearInterval(refreshTimer);
  return showScreen(
    h("section", { class: "dashboard", testid, "aria-labelledby": `${testid}-title` },
      h("div", { class: "dash-head" },
        h("h1", { id: `${testid}-title`, text: title }),
        h("button", { type: "button", class: "secondary small", testid: "btn-back", text: "Back to visits", onclick: () => dashboardScreen() }),
        h("button", { type: "button", class: "secondary small", testid: "btn-signout", text: "Sign out", onclick: () => signOut() })),
      ...content),
  );
}

// --- security: two-step sign-in --------------------------------------------------------

function securityScreen() {
  const me = staff.session();
  const body = h("div", { class: "stack" });
  const status = h("p", { class: "lead", testid: "totp-status", role: "status" });
  const message = h("p", { class: "field-error", testid: "totp-error", role: "alert", hidden: true });
  const fail = (text, focus) => {
    message.textContent = text;
    message.hidden = false;
    focus?.focus();
  };

  function codeForm(label, button, testid, submit) {
    const code = h("input", { id: `${testid}-code`, type: "text", testid: "totp-code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "7", required: true });
    return h("form", { class: "stack", onsubmit: (event) => { event.preventDefault(); submit(code.value, code); } },
      field(`${testid}-code`, label, code),
      h("button", { type: "submit", class: "primary", testid, text: button }));
  }

  function showOff() {
    status.textContent = "Two-step sign-in is off: your password alone signs you in.";
    fill(body, h("button", { type: "button", class: "primary", testid: "btn-totp-setup", text: "Set up two-step sign-in", onclick: setup }));
  }

  function showOn() {
    status.textContent = "Two-step sign-in is on: signing in asks for a code from your authenticator app.";
    fill(body, codeForm("To turn it off, enter a current code", "Turn off two-step sign-in", "btn-totp-disable", async (value, input) => {
      try {
        await api("POST", "/v1/staff/totp/disable", { code: value });
      } catch (e) {
        return fail(e.status === 400 ? "That code is not right (or was used already)." : e.message, input);
      }
      message.hidden = true;
      me.user.totp = false;
      announce("Two-step sign-in is off.");
      showOff();
    }));
  }

  async function setup() {
    let data;
    try {
      data = await api("POST", "/v1/staff/totp/setup");
    } catch (e) {
      return fail(e.message);
    }
    status.textContent = "Add this account to your authenticator app, then enter the code it shows.";
    fill(body,
      h("p", {}, "Key to type in: ", h("span", { class: "mono", testid: "totp-secret", text: data.secret })),
      h("p", { class: "hint" }, "Or the setup link: ", h("span", { class: "mono break", testid: "totp-uri", text: data.uri })),
      codeForm("Code from the app", "Turn on two-step sign-in", "btn-totp-confirm", async (value, input) => {
        try {
          await api("POST", "/v1/staff/totp/confirm", { code: value });
        } catch (e) {
          return fail(e.status === 400 ? "That code is not right. Check that the phone's clock is correct and try the newest code." : e.message, input);
        }
        message.hidden = true;
        me.user.totp = true;
        announce("Two-step sign-in is on.");
        showOn();
      }));
  }

  subScreen("screen-security", "Security", h("section", { class: "card" }, h("h2", { text: "Two-step sign-in" }), status, message, body));
  (me?.user?.totp ? showOn : showOff)();
}

// --- users of the practice (practice admins) -------------------------------------------

const ROLES = [["provider", "Provider"], ["front_desk", "Front desk"], ["practice_admin", "Practice admin"]];

function roleSelect(id, value, testid, onchange) {
  return h("select", { id, testid, onchange }, ROLES.map(([v, label]) => h("option", { value: v, text: label, selected: v === value })));
}

function usersScreen() {
  const list = h("ul", { class: "visit-list", testid: "users-list", "aria-label": "Users" });
  const message = h("p", { class: "success", testid: "users-message", role: "status", hidden: true });
  const error = h("p", { class: "field-error", testid: "users-error", role: "alert", hidden: true });
  const say = (text, isError = false) => {
    (isError ? error : message).textContent = text;
    (isError ? error : message).hidden = false;
    (isError ? message : error).hidden = true;
  };

  async function load() {
    let data;
    try {
      data = await api("GET", "/v1/staff/users");
    } catch (e) {
      return say(`Could not load users: ${e.message}`, true);
    }
    const me = staff.session()?.user?.user_id;
    fill(list, data.users.map((u) => userRow(u, u.user_id === me)));
  }

  async function change(user, body, done) {
    try {
      const changed = await api("PATCH", `/v1/staff/users/${encodeURIComponent(user.user_id)}`, body);
      say(done(changed));
    } catch (e) {
      say(e.message, true);
    }
    load();
  }

  function userRow(user, self) {
    const roleId = `role-${user.user_id}`;
    return h("li", { class: "visit user", testid: "user-row", dataset: { userId: user.user_id } },
      h("div", { class: "visit-head" },
        h("span", { class: "visit-time", testid: "user-name", text: user.display_name }),
        h("span", { class: "visit-room mono", testid: "user-email", text: user.email }),
        h("span", { class: "visit-status", testid: "user-state", text: user.disabled ? "Disabled" : user.totp ? "Active · two-step" : "Active" })),
      h("div", { class: "visit-link" },
        h("label", { for: roleId, text: "Role" }),
        roleSelect(roleId, user.role, "user-role", (event) => change(user, { role: event.target.value }, (c) => `${c.display_name} is now ${roleLabel(c.role)}.`)),
        self ? h("span", { class: "hint", text: "(you)" })
          : h("button", {
              type: "button",
              class: user.disabled ? "small secondary" : "small danger",
              testid: user.disabled ? "btn-user-enable" : "btn-user-disable",
              "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.display_name}`,
              text: user.disabled ? "Enable" : "Disable",
              onclick: () => change(user, { disabled: !user.disabled }, (c) => `${c.display_name} is ${c.disabled ? "disabled and signed out" : "enabled"}.`),
            })));
  }

  const email = h("input", { id: "add-email", type: "email", testid: "user-add-email", required: true, autocomplete: "off" });
  const name = h("input", { id: "add-name", type: "text", testid: "user-add-name", required: true, maxlength: "100", autocomplete: "off" });
  const role = roleSelect("add-role", "provider", "user-add-role");
  const form = h("form", {
      class: "stack",
      testid: "user-add-form",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const added = await api("POST", "/v1/staff/users", { email: email.value.trim(), display_name: name.value.trim(), role: role.value });
          say(`${added.display_name} was added. We emailed ${added.email} a link to choose a password.`);
          email.value = "";
          name.value = "";
        } catch (e) {
          say(`Could not add: ${e.message}`, true);
        }
        load();
      },
    },
    field("add-email", "Email", email),
    field("add-name", "Display name (shown in visits)", name, "For example: Dr. Ana Smith"),
    field("add-role", "Role", role),
    h("button", { type: "submit", class: "primary", testid: "btn-user-add", text: "Add user" }));
  subScreen("screen-users", "Users",
    message, error,
    h("div", { class: "dash-columns" },
      h("section", { class: "card", "aria-labelledby": "add-title" }, h("h2", { id: "add-title", text: "Add a user" }), form),
      h("section", { class: "card", "aria-labelledby": "list-title" }, h("h2", { id: "list-title", text: "Users of your practice" }), list)));
  load();
}

async function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  const resetToken = params.get("reset");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  if (resetToken) return resetScreen(resetToken);
  if (token) return dashboardScreen();
  if (await staff.loadSession()) return dashboardScreen();
  signInScreen();
}

// A reset link opened in a tab that already shows the dashboard changes only the fragment.
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("reset")) start();
});
start();
