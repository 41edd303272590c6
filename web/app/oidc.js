// "Sign in with <identity provider>" on the staff sign-in screen, shown only when the
// server has OpenID Connect sign-in configured (GET /auth/oidc/info answers 404 when
// not). The link is a plain navigation: the server sends the browser on to the
// provider and, once signed in there, back to the dashboard with a staff session.

import { fill, h } from "./dom.js";

let cached = null;

async function oidcInfo() {
  if (cached) return cached;
  try {
    const response = await fetch("/auth/oidc/info", { cache: "no-store", credentials: "omit" });
    cached = response.ok ? await response.json() : { enabled: false };
  } catch {
    cached = { enabled: false };
  }
  return cached;
}

/** A block that fills itself with the provider's button, or stays hidden. */
export function oidcSignIn(next = "/dashboard") {
  const block = h("div", { class: "oidc-signin", testid: "oidc-signin", hidden: true });
  oidcInfo().then((info) => {
    if (!info?.enabled) return;
    const href = `${info.start}?next=${encodeURIComponent(next)}`;
    fill(block,
      h("p", { class: "hint", text: "or" }),
      h("a", { class: "button secondary", href, testid: "btn-oidc-signin", text: `Sign in with ${info.label}` }));
    block.hidden = false;
  });
  return block;
}
