// The one fetch helper the staff screens (dashboard, patient search, patient page) use
// for the REST API. How a request is authenticated is decided here and nowhere else:
// a pasted admin token (integrators) as `Authorization: Bearer`, otherwise the staff
// session's cookie with its CSRF header (web/app/staff.js).

import { staffFetch } from "./staff.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const auth = {
  /** @type {() => string|null} */
  token: () => null,
  /** Called on a 401 (unless the caller asks otherwise), e.g. to show the sign-in screen. */
  onUnauthorized: () => {},
};

/** @param {{token?: () => string|null, onUnauthorized?: () => void}} options */
export function configureApi(options) {
  Object.assign(auth, options);
}

/**
 * Call the API; answers the parsed JSON body, or throws ApiError(status, code, message).
 * `background` marks a periodic refresh, which does not keep an idle session alive.
 * @param {string} method @param {string} path @param {any} [body]
 * @param {{signOutOn401?: boolean, signal?: AbortSignal, background?: boolean}} [options]
 */
export async function api(method, path, body, { signOutOn401 = true, signal, background = false } = {}) {
  const token = auth.token();
  const response = token
    ? await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
        signal,
      })
    : await staffFetch(method, path, body, { background, signal });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data?.error ?? {};
    if (response.status === 401 && signOutOn401) auth.onUnauthorized();
    throw new ApiError(response.status, error.code ?? "error", error.message ?? `HTTP ${response.status}`);
  }
  return data;
}
