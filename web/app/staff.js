// Staff sessions in the browser. The session id lives in an HttpOnly cookie the page
// never sees; what the page keeps (in memory only) is the session's CSRF token, sent
// in the X-CSRF-Token header with every request that changes something. Other screens
// (the portal's, the host and guest pages) use staffFetch() and need nothing else.

export const CSRF_HEADER = "X-CSRF-Token";
/** Marks the dashboard's own periodic refresh: it does not keep an idle session alive. */
export const BACKGROUND_HEADER = "X-Visitroom-Background";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** @type {null | {user: any, csrf_token: string, scopes: string[], practice_name: string|null, idle_timeout_s: number, offered_host: boolean}} */
let current = null;

export function session() {
  return current;
}

/**
 * fetch() with the session cookie and, for a change, the CSRF token.
 * @param {string} method @param {string} path @param {any} [body]
 * @param {{background?: boolean}} [options]
 */
export function staffFetch(method, path, body, { background = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method) && current) headers[CSRF_HEADER] = current.csrf_token;
  if (background) headers[BACKGROUND_HEADER] = "1";
  return fetch(path, {
    method,
    headers,
    body: body !== undefined ? JSON.stringify(body) : undefined,
    credentials: "same-origin",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
}

/** The signed-in session of this browser, or null (asks the server once per call). */
export async function loadSession() {
  try {
    const response = await staffFetch("GET", "/v1/staff/session", undefined, { background: true });
    const data = response.ok ? await response.json() : null;
    current = data?.user ? data : null;
  } catch {
    current = null;
  }
  return current;
}

/**
 * @returns {Promise<{ok: boolean, status: number, code?: string, message?: string}>}
 */
export async function signIn(email, password, code) {
  const body = { email, password };
  if (code) body.code = code;
  const response = await staffFetch("POST", "/v1/staff/sign-in", body);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    return { ok: false, status: response.status, code: data?.error?.code, message: data?.error?.message };
  }
  current = data;
  return { ok: true, status: 200 };
}

export async function signOut() {
  if (current) await staffFetch("POST", "/v1/staff/sign-out").catch(() => undefined);
  current = null;
}

export function forget() {
  current = null;
}

/** Whether this browser's staff session may host the visit: {host, name}. */
export async function hostOffer(roomId) {
  try {
    const response = await staffFetch("GET", `/v1/rooms/${encodeURIComponent(roomId)}/host-offer`);
    return response.ok ? await response.json() : { host: false, name: null };
  } catch {
    return { host: false, name: null };
  }
}

/** A short-lived host token for the signed-in user, minted by the server; null when refused. */
export async function sessionHostToken(roomId) {
  if (!current && !(await loadSession())) return null;
  try {
    const response = await staffFetch("POST", `/v1/rooms/${encodeURIComponent(roomId)}/host-token`);
    return response.ok ? (await response.json()).token : null;
  } catch {
    return null;
  }
}
