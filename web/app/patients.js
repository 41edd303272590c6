// The Patient Portal screens of the dashboard: a patient search in the top bar (as you
// type: 2+ letters of a name, or a date of birth mm/dd/yyyy), the patient's page with a
// Profile tab and a Patient Portal tab (invite, reinvite, opt-out, status), and a patient
// picker for the schedule form that emails the visit link through the portal's outbox.
// Every call goes through api.js (the one place that decides how requests authenticate).

import { api } from "./api.js";
import { announce, fill, h, showScreen } from "./dom.js";

const DEBOUNCE_MS = 250;
const REFRESH_MS = 15 * 1000;
const MIN_LETTERS = 2;
const US_DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/;
const NAME = /^[\p{L}\p{M} '\-.\u2019]+$/u;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const OPT_OUT_LABEL = "Patient does not want to receive access to health information";
const FRIENDLY = {
  email_in_use: "That email address already belongs to another patient's portal account or invitation. Type another address for this invitation.",
  email_required: "This patient has no email address. Add it on the Profile tab first.",
  opted_out: "The patient does not want access to health information (opted out).",
  already_registered: "This patient has already activated a portal account.",
  rate_limited: "Too many invitations from this practice right now. Please try again later.",
  contact_support: "The email of an active portal account can only be changed by customer care. Please contact customer care.",
};

/** Who is signed in, from GET /v1/portal/caller (null: no portal access; hide the screens). */
let callerPromise = null;

function caller() {
  callerPromise ??= api("GET", "/v1/portal/caller", undefined, { signOutOn401: false })
    .then((who) => (who.portal ? who : null), () => null);
  return callerPromise;
}

// --- small helpers ---------------------------------------------------------------------

/** "1980-02-03" -> "02/03/1980"; "Pending", "Never" as they are; null -> an em dash. */
export function usDate(value) {
  if (value == null) return "—";
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  return m ? `${m[2]}/${m[3]}/${m[1]}` : value;
}

function fullName(p) {
  return `${p.first_name} ${p.last_name}`;
}

/** What a search box may send: 2+ letters of a name, or a whole date mm/dd/yyyy; else null. */
function searchable(text) {
  const q = text.trim().replace(/\s+/g, " ");
  if (US_DATE.test(q)) return q;
  if (/^[\d/]+$/.test(q)) return null; // a date still being typed
  return q.length >= MIN_LETTERS && NAME.test(q) ? q : null;
}

function friendly(error) {
  return FRIENDLY[error.code] ?? error.message;
}

function sameEmail(a, b) {
  return (a ?? "").trim().toLowerCase() === (b ?? "").trim().toLowerCase();
}

let boxCount = 0;

// --- the search box (a combobox with a listbox of results) ------------------------------

/**
 * @param {{prefix: string, label: string, onChoose: (patient: any) => void, visibleLabel?: boolean}} spec
 */
function searchBox({ prefix, label, onChoose, visibleLabel = false }) {
  const id = `${prefix}-${++boxCount}`;
  const input = h("input", {
    id: `${id}-input`, type: "search", class: "patient-search-input", testid: `${prefix}-input`,
    role: "combobox", "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": `${id}-list`,
    autocomplete: "off", spellcheck: "false", maxlength: "100", placeholder: "Name or mm/dd/yyyy",
  });
  const list = h("ul", { id: `${id}-list`, role: "listbox", class: "patient-results", testid: `${prefix}-results`, "aria-label": "Matching patients", hidden: true });
  const status = h("p", { class: "patient-search-status hint", testid: `${prefix}-status`, role: "status", hidden: true });
  let timer = null;
  let controller = null;
  let found = [];
  let active = -1;

  function close() {
    list.hidden = true;
    status.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function say(text) {
    list.hidden = true;
    status.textContent = text;
    status.hidden = !text;
    input.setAttribute("aria-expanded", "false");
  }

  function choose(patient) {
    close();
    input.value = "";
    onChoose(patient);
  }

  function highlight(index) {
    const options = [...list.children];
    active = Math.max(0, Math.min(index, options.length - 1));
    options.forEach((el, i) => el.setAttribute("aria-selected", String(i === active)));
    const el = options[active];
    if (el) {
      input.setAttribute("aria-activedescendant", el.id);
      el.scrollIntoView({ block: "nearest" });
    }
  }

  function show(patients) {
    found = patients;
    if (!patients.length) return say("No matching patients in your practice.");
    status.hidden = true;
    fill(list, patients.map((p, i) =>
      h("li", { id: `${id}-opt-${i}`, role: "option", "aria-selected": "false", class: "patient-result", testid: `${prefix}-result`, dataset: { patientId: p.patient_id },
        onpointerdown: (event) => event.preventDefault(), // keep focus in the input
        onclick: () => choose(p) },
        h("span", { class: "patient-result-name", text: `${p.last_name}, ${p.first_name}` }),
        h("span", { class: "patient-result-dob", text: usDate(p.date_of_birth) }))));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
  }

  async function search() {
    const q = searchable(input.value);
    controller?.abort();
    if (!input.value.trim()) return close();
    if (!q) return say("Type 2 or more letters of a name, or a date of birth mm/dd/yyyy.");
    controller = new AbortController();
    const mine = controller;
    say("Searching…");
    try {
      // A 401 here does not sign the dashboard out: its own refresh does that when the
      // token really expired.
      const data = await api("GET", `/v1/portal/patients?q=${encodeURIComponent(q)}`, undefined, { signal: mine.signal, signOutOn401: false });
      if (mine === controller) show(data.patients);
    } catch (e) {
      if (e.name === "AbortError" || mine !== controller) return;
      say(e.code === "bad_request" ? "Type 2 or more letters of a name, or a date of birth mm/dd/yyyy." : `Could not search: ${e.message}`);
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && !list.hidden) { event.preventDefault(); highlight(active + 1); }
    else if (event.key === "ArrowUp" && !list.hidden) { event.preventDefault(); highlight(active - 1); }
    else if (event.key === "Enter") {
      event.preventDefault(); // never submits the form around it (the schedule form)
      if (!list.hidden && found.length) choose(found[Math.max(active, 0)]);
    } else if (event.key === "Escape") close();
  });
  input.addEventListener("blur", () => setTimeout(close, 150));

  const labelEl = h("label", { for: `${id}-input`, class: visibleLabel ? "" : "visually-hidden", text: label });
  return h("div", { class: "patient-search", testid: prefix }, labelEl, input, list, status);
}

// --- the top bar ---------------------------------------------------------------------------

let backToVisits = () => {};

/**
 * Put the patient search in the top bar when the signed-in caller may use the portal
 * (idempotent). `onBack` shows the visits again.
 * @param {{onBack: () => void}} options
 */
export async function mountPatientSearch({ onBack }) {
  backToVisits = onBack;
  const slot = document.getElementById("patient-search-slot");
  if (!slot || slot.childElementCount) return;
  const who = await caller();
  // Searching needs a practice (a support token without one opens patients by id only).
  if (!who?.practice || slot.childElementCount) return;
  fill(slot, searchBox({ prefix: "patient-search", label: "Find a patient", onChoose: (p) => openPatient(p.patient_id) }));
  slot.hidden = false;
}

/** On sign-out: no search, and the next sign-in asks who the caller is again. */
export function unmountPatientSearch() {
  callerPromise = null;
  visitNames.clear(); // the next user may have no portal access
  const slot = document.getElementById("patient-search-slot");
  if (slot) {
    fill(slot);
    slot.hidden = true;
  }
}

// --- the patient's page ---------------------------------------------------------------------

/** Open the patient's page (Profile tab first). */
export async function openPatient(patientId, tab = "profile") {
  const base = `/v1/portal/patients/${encodeURIComponent(patientId)}`;
  let patient, status;
  try {
    [patient, status] = await Promise.all([api("GET", base), api("GET", `${base}/status`)]);
  } catch (e) {
    announce(`Could not open the patient: ${e.message}`);
    return;
  }
  const who = (await caller()) ?? { support: false };
  const page = new PatientPage(patient, status, who);
  showScreen(page.element);
  page.select(tab, false);
}

class PatientPage {
  constructor(patient, status, who) {
    this.patient = patient;
    this.status = status;
    this.who = who;
    this.base = `/v1/portal/patients/${encodeURIComponent(patient.patient_id)}`;
    this.title = h("h1", { id: "patient-title", testid: "patient-name" });
    this.dob = h("span", { class: "patient-dob", testid: "patient-dob" });
    this.tabs = {
      profile: this.tab("profile", "Profile"),
      portal: this.tab("portal", "Patient Portal"),
    };
    this.panels = {
      profile: h("div", { id: "panel-profile", role: "tabpanel", class: "card tab-panel", testid: "panel-profile", "aria-labelledby": "tab-profile", tabindex: "0" }),
      portal: h("div", { id: "panel-portal", role: "tabpanel", class: "card tab-panel", testid: "panel-portal", "aria-labelledby": "tab-portal", tabindex: "0", hidden: true }),
    };
    this.element = h("section", { class: "patient-page", testid: "screen-patient", "aria-labelledby": "patient-title", dataset: { patientId: patient.patient_id } },
      h("div", { class: "patient-head" },
        h("button", { type: "button", class: "secondary small", testid: "btn-back-to-visits", text: "← Visits", onclick: () => this.leave() }),
        this.title, this.dob),
      h("div", { role: "tablist", class: "tabs", "aria-label": "Patient" }, this.tabs.profile, this.tabs.portal),
      this.panels.profile, this.panels.portal);
    this.renderHead();
    this.renderProfile();
    this.renderPortal();
    this.timer = setInterval(() => this.autoRefresh(), REFRESH_MS);
  }

  tab(name, text) {
    return h("button", {
      type: "button", role: "tab", id: `tab-${name}`, class: "tab", testid: `tab-${name}`, "aria-controls": `panel-${name}`, text,
      onclick: () => this.select(name),
      onkeydown: (event) => {
        if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          event.preventDefault();
          this.select(name === "profile" ? "portal" : "profile");
        }
      },
    });
  }

  select(name, focus = true) {
    for (const [key, tab] of Object.entries(this.tabs)) {
      const on = key === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      this.panels[key].hidden = !on;
    }
    if (focus) this.tabs[name].focus();
  }

  leave() {
    clearInterval(this.timer);
    backToVisits();
  }

  renderHead() {
    this.title.textContent = fullName(this.patient);
    this.dob.textContent = `Date of birth ${usDate(this.patient.date_of_birth)}`;
  }

  // --- Profile tab --------------------------------------------------------------------

  renderProfile() {
    const p = this.patient;
    const field = (key, label, attrs) => {
      const input = h("input", { id: `profile-${key}`, name: key, testid: `profile-${key.replaceAll("_", "-")}`, ...attrs });
      return [h("div", { class: "field" }, h("label", { for: `profile-${key}`, text: label }), input), input];
    };
    const [firstField, first] = field("first_name", "First name", { type: "text", value: p.first_name, maxlength: "100", required: true, autocomplete: "off" });
    const [lastField, last] = field("last_name", "Last name", { type: "text", value: p.last_name, maxlength: "100", required: true, autocomplete: "off" });
    const [dobField, dob] = field("date_of_birth", "Date of birth", { type: "date", value: p.date_of_birth, min: "1900-01-01", max: todayIso(), required: true });
    const [emailField, email] = field("email", "Email", { type: "email", value: p.email ?? "", maxlength: "254", autocomplete: "off" });
    const result = h("p", { class: "profile-result", testid: "profile-result", role: "status" });
    const inputs = { first_name: first, last_name: last, date_of_birth: dob, email };
    const form = h("form", { class: "profile-form", testid: "profile-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const problem = this.checkProfile(inputs);
        if (problem) return showResult(result, problem.text, true, problem.input);
        const changes = this.profileChanges(inputs);
        if (!Object.keys(changes).length) return showResult(result, "Nothing to save: no field was changed.", false);
        try {
          this.patient = { ...this.patient, ...(await api("PATCH", this.base, changes)) };
        } catch (e) {
          return showResult(result, `Could not save: ${e.message}`, true);
        }
        this.renderHead();
        this.renderPortal();
        showResult(result, "Profile saved.", false);
        announce("Profile saved.");
      } },
      h("div", { class: "field-row" }, firstField, lastField),
      dobField, emailField,
      h("p", { class: "hint", text: "The email here is the patient's contact address; Patient Portal invitations go to it unless you type another address on the Patient Portal tab." }),
      h("button", { type: "submit", class: "primary", testid: "btn-save-profile", text: "Save profile" }),
      result);
    fill(this.panels.profile, h("h2", { text: "Profile" }), form);
  }

  checkProfile(inputs) {
    for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
    const bad = (input, text) => ({ input, text });
    for (const [key, label] of [["first_name", "First name"], ["last_name", "Last name"]]) {
      const value = inputs[key].value.trim();
      if (!value) return bad(inputs[key], `${label} is required.`);
      if (!NAME.test(value) || !/\p{L}/u.test(value)) return bad(inputs[key], `${label} may hold letters, spaces, apostrophes, hyphens and dots.`);
    }
    const born = inputs.date_of_birth.value;
    if (!born) return bad(inputs.date_of_birth, "Date of birth is required (mm/dd/yyyy).");
    if (born < "1900-01-01" || born > todayIso()) return bad(inputs.date_of_birth, "Date of birth must be between 01/01/1900 and today.");
    const email = inputs.email.value.trim();
    if (email && !EMAIL.test(email)) return bad(inputs.email, "Email is not a valid email address.");
    return null;
  }

  profileChanges(inputs) {
    const changes = {};
    for (const key of ["first_name", "last_name", "date_of_birth"]) {
      const value = inputs[key].value.trim().replace(/\s+/g, " ");
      if (value !== this.patient[key]) changes[key] = value;
    }
    const email = inputs.email.value.trim();
    if (email !== (this.patient.email ?? "")) changes.email = email || null;
    return changes;
  }

  // --- Patient Portal tab --------------------------------------------------------------

  renderPortal() {
    const s = this.status;
    const registered = s.account_email != null;
    const profileEmail = this.patient.email;
    this.message = h("p", { class: "portal-message", testid: "portal-message", role: "status" });
    const parts = [h("h2", { text: "Patient Portal" })];
    if (registered) parts.push(this.accountEmailBlock());
    else parts.push(this.inviteBlock(profileEmail));
    parts.push(
      h("div", { class: "field inline opt-out" },
        h("input", { id: "portal-opt-out", type: "checkbox", testid: "portal-opt-out", checked: s.opted_out, onchange: (event) => this.setOptOut(event.target) }),
        h("label", { for: "portal-opt-out", text: OPT_OUT_LABEL })),
      this.message,
      this.patient.invitation_delivery === "failed" && !registered
        ? h("p", { class: "field-error", testid: "portal-delivery-failed", text: "The last invitation email could not be delivered. Check the address and use Reinvite." })
        : null,
      this.statusBlock(),
      h("button", { type: "button", class: "secondary small", testid: "btn-refresh-status", text: "Refresh status", onclick: () => this.refresh(true) }),
    );
    fill(this.panels.portal, parts);
  }

  inviteBlock(profileEmail) {
    const s = this.status;
    const email = h("input", { id: "portal-email", type: "email", testid: "portal-email", value: profileEmail ?? "", maxlength: "254", autocomplete: "off", disabled: !profileEmail, "aria-describedby": "portal-email-hint" });
    const invite = h("button", { type: "button", class: "primary", testid: "btn-invite", text: "Activate Account", onclick: () => this.invite("invite", email.value) });
    const reinvite = h("button", { type: "button", class: "secondary", testid: "btn-reinvite", text: "Reinvite", onclick: () => this.invite("reinvite", email.value) });
    const why = h("p", { class: "hint", testid: "portal-actions-hint" });
    const update = () => {
      const address = email.value.trim();
      const usable = Boolean(profileEmail) && EMAIL.test(address);
      invite.disabled = !(usable && s.can_invite);
      reinvite.disabled = !(usable && s.can_reinvite);
      why.textContent = this.whyDisabled(profileEmail, usable);
      email.setAttribute("aria-invalid", String(Boolean(profileEmail) && !usable));
    };
    email.addEventListener("input", update);
    update();
    const hint = profileEmail
      ? h("p", { id: "portal-email-hint", class: "hint", testid: "portal-email-hint", text: "An address typed here is used for this invitation only. It is never saved to the patient's profile (change that on the Profile tab)." })
      : h("p", { id: "portal-email-hint", class: "field-error", testid: "portal-email-missing" },
        "This patient has no email address. Add it on the Profile tab first, then invite. ",
        h("button", { type: "button", class: "link-button", testid: "btn-open-profile", text: "Open the Profile tab", onclick: () => this.select("profile") }));
    return h("div", { class: "invite-block" },
      h("div", { class: "field" }, h("label", { for: "portal-email", text: "Email" }), email, hint),
      h("div", { class: "button-row" }, invite, reinvite),
      why);
  }

  whyDisabled(profileEmail, usable) {
    const s = this.status;
    if (s.opted_out) return "The patient opted out: clear the checkbox below to invite.";
    if (!profileEmail) return "";
    if (!usable) return "Type a valid email address.";
    if (!s.can_invite && s.can_reinvite) return "An invitation is already out: use Reinvite to send a new link (the old one stops working).";
    if (s.can_invite && !s.can_reinvite) return "Not invited yet: use Activate Account.";
    return "";
  }

  accountEmailBlock() {
    const s = this.status;
    const parts = [
      h("div", { class: "field" },
        h("label", { for: "portal-account-email", text: "Portal login email" }),
        h("input", { id: "portal-account-email", type: "email", testid: "portal-account-email", value: s.account_email, readonly: true })),
    ];
    if (!this.who.support) {
      parts.push(h("p", { class: "hint", testid: "portal-contact-support", text: "This patient's portal account is active. To change the email address it signs in with, please contact customer care." }));
      return h("div", { class: "account-block" }, parts);
    }
    const input = h("input", { id: "account-email-input", type: "email", testid: "account-email-input", maxlength: "254", autocomplete: "off" });
    parts.push(h("form", { class: "field", testid: "account-email-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const address = input.value.trim();
        if (!EMAIL.test(address)) return this.say("Type a valid email address.", true);
        try {
          this.status = await api("PUT", `${this.base}/account-email`, { email: address });
        } catch (e) {
          return this.say(friendly(e), true);
        }
        this.renderPortal();
        this.say(`The login email is now ${address}.`, false);
      } },
      h("label", { for: "account-email-input", text: "New login email (customer care)" }), input,
      h("button", { type: "submit", class: "secondary", testid: "btn-change-account-email", text: "Change login email" })));
    return h("div", { class: "account-block" }, parts);
  }

  statusBlock() {
    const s = this.status;
    const row = (label, testid, value) => [h("dt", { text: label }), h("dd", { testid, text: value })];
    return h("dl", { class: "portal-status", testid: "portal-status" },
      row("Opted out", "status-opted-out", s.opted_out ? "Yes" : "No"),
      row("Activated on", "status-activated-on", usDate(s.activated_on)),
      row("Patient Registered on", "status-registered-on", usDate(s.registered_on)),
      row("Last Log in on", "status-last-login-on", usDate(s.last_login_on)),
      row("Last reinvited on", "status-last-reinvited-on", usDate(s.last_reinvited_on)));
  }

  say(text, isError) {
    this.message.textContent = text;
    this.message.className = isError ? "portal-message field-error" : "portal-message success";
    announce(text);
  }

  async invite(kind, typed) {
    const address = typed.trim();
    const oneOff = !sameEmail(address, this.patient.email);
    try {
      this.status = await api("POST", `${this.base}/${kind}`, oneOff ? { email: address } : {});
    } catch (e) {
      return this.say(friendly(e), true);
    }
    await this.refresh(false);
    const what = kind === "invite" ? "Invitation" : "New invitation";
    const note = oneOff ? ` (for this invitation only; the profile email stays ${this.patient.email})` : "";
    this.say(`${what} sent to ${address}${note}.`, false);
  }

  async setOptOut(box) {
    const wanted = box.checked;
    try {
      this.status = await api("PUT", `${this.base}/opt-out`, { opted_out: wanted });
    } catch (e) {
      box.checked = !wanted;
      return this.say(`Could not save the opt-out: ${e.message}`, true);
    }
    this.renderPortal();
    this.say(wanted ? "Opted out: the patient will not be invited, and an unused link no longer works." : "Opt-out cleared: the patient can be invited.", false);
  }

  async refresh(announceIt) {
    try {
      const [patient, status] = await Promise.all([api("GET", this.base), api("GET", `${this.base}/status`)]);
      this.patient = patient;
      this.status = status;
    } catch (e) {
      return this.say(`Could not refresh: ${e.message}`, true);
    }
    const message = this.message?.textContent;
    const cls = this.message?.className;
    this.renderHead();
    this.renderPortal();
    if (message) {
      this.message.textContent = message;
      this.message.className = cls;
    }
    if (announceIt) announce("Status refreshed.");
  }

  autoRefresh() {
    if (!this.element.isConnected) return clearInterval(this.timer);
    const s = this.status;
    if (s.activated_on === "Pending" || s.registered_on === "Pending") this.refresh(false);
  }
}

function showResult(el, text, isError, focus) {
  el.textContent = text;
  el.className = isError ? "profile-result field-error" : "profile-result success";
  if (focus) {
    focus.setAttribute("aria-invalid", "true");
    focus.focus();
  }
}

function todayIso() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// --- the schedule form's patient picker --------------------------------------------------

/**
 * A patient picker for the schedule form, and the visit-link email after scheduling.
 * Hidden when the caller has no portal access.
 * @returns {{element: HTMLElement, afterScheduled: (roomId: string) => Promise<HTMLElement|null>}}
 */
export function patientPicker() {
  let chosen = null;
  const slot = h("div", { class: "picker-slot" });
  const sendBox = h("input", { id: "sch-email-patient", type: "checkbox", testid: "schedule-email-patient" });
  const sendHint = h("p", { class: "hint", testid: "schedule-email-hint" });
  const send = h("div", { class: "field inline", hidden: true },
    sendBox, h("label", { for: "sch-email-patient", text: "Email the visit link to the patient" }));
  const element = h("div", { class: "field schedule-patient", testid: "schedule-patient", hidden: true },
    h("span", { class: "field-label", id: "sch-patient-label", text: "Patient (optional)" }), slot, send, sendHint);

  const box = () => searchBox({ prefix: "schedule-patient", label: "Find the patient", onChoose: pick });
  function pick(patient) {
    chosen = patient;
    fill(slot, h("div", { class: "picked", testid: "schedule-patient-chosen" },
      h("span", { text: `${fullName(patient)} · ${usDate(patient.date_of_birth)}` }),
      h("button", { type: "button", class: "small secondary", testid: "btn-schedule-patient-clear", text: "Change", onclick: reset })));
    send.hidden = false;
    sendBox.disabled = !patient.email;
    sendBox.checked = Boolean(patient.email);
    sendHint.textContent = patient.email ? `The link goes to ${patient.email}.` : "This patient has no email address: add it on their Profile tab to email the link.";
  }
  function reset() {
    chosen = null;
    fill(slot, box());
    send.hidden = true;
    sendBox.checked = false;
    sendHint.textContent = "";
  }
  reset();
  caller().then((who) => { element.hidden = !who?.practice; });

  async function afterScheduled(roomId) {
    if (!chosen || !sendBox.checked) return null;
    const patient = chosen;
    reset();
    try {
      await api("POST", `/v1/portal/patients/${encodeURIComponent(patient.patient_id)}/visit-email`, { room_id: roomId });
      return h("p", { class: "success", testid: "schedule-email-result", text: `The visit link is on its way to ${fullName(patient)} (${patient.email}).` });
    } catch (e) {
      return h("p", { class: "field-error", testid: "schedule-email-result", text: `The visit is scheduled, but the link could not be emailed: ${friendly(e)}` });
    }
  }
  return { element, afterScheduled, chosenId: () => chosen?.patient_id ?? null };
}

// --- the visit list's patient names ----------------------------------------------------

/** Names already fetched this page: patient id -> "First Last" (null: not shown). */
const visitNames = new Map();

/**
 * The name of a visit's patient, for staff with portal access (GET /v1/portal/patients/{id},
 * once per patient per page); null without portal access or when the portal will not say.
 * The visit list keeps only the id: the name is never in a URL, a log or the rooms API.
 */
export async function visitPatientName(patientId) {
  if (visitNames.has(patientId)) return visitNames.get(patientId);
  const who = await caller();
  let name = null;
  if (who) {
    try {
      const path = `/v1/portal/patients/${encodeURIComponent(patientId)}`;
      name = fullName(await api("GET", path, undefined, { signOutOn401: false, background: true }));
    } catch {
      name = null;
    }
  }
  visitNames.set(patientId, name);
  return name;
}

/** What a visit's list item says of its patient: the name when known, else "Patient on file". */
export function visitPatient(patientId) {
  const known = visitNames.get(patientId);
  const label = h("span", { class: "visit-patient", testid: "visit-patient", text: known ?? "Patient on file" });
  if (!visitNames.has(patientId)) {
    visitPatientName(patientId).then((name) => { if (name) label.textContent = name; });
  }
  return label;
}
