// The one fetch helper the staff screens (dashboard, patient search, patient page) use
// for the REST API. How a request is authenticated is decided here and nowhere else:
// today a pasted admin token as `Authorization: Bearer`; a cookie session with a CSRF
// header can replace it by changing `authHeaders` and `credentials` below.

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

function authHeaders() {
  const token = auth.token();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * Call the API; answers the parsed JSON body, or throws ApiError(status, code, message).
 * @param {string} method @param {string} path @param {any} [body]
 * @param {{signOutOn401?: boolean, signal?: AbortSignal}} [options]
 */
export async function api(method, path, body, { signOutOn401 = true, signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: { ...authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
    signal,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data?.error ?? {};
    if (response.status === 401 && signOutOn401) auth.onUnauthorized();
    throw new ApiError(response.status, error.code ?? "error", error.message ?? `HTTP ${response.status}`);
  }
  return data;
}
