// Small DOM helpers. Text always goes in as text nodes or textContent: names and
// messages from other people are never parsed as HTML.

/**
 * Create an element. Props: `testid`, `class`, `text`, `value`, `checked`,
 * `dataset`, `on<event>` listeners, and plain attributes. Children may be
 * nodes or strings (strings become text nodes).
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "testid") el.dataset.testid = value;
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

const main = () => /** @type {HTMLElement} */ (document.getElementById("main"));

/**
 * Show one screen in <main> and move focus to its heading (or first focusable)
 * so keyboard and screen reader users land on the new content.
 * @param {HTMLElement} screen
 * @param {{focus?: HTMLElement|null}} [options]
 */
export function showScreen(screen, { focus } = {}) {
  fill(main(), screen);
  const heading = screen.querySelector("h1, h2");
  const target = focus ?? heading;
  if (target) {
    if (target === heading && !heading.hasAttribute("tabindex")) heading.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: false });
  }
  const title = heading?.textContent?.trim();
  if (title) document.title = `${title} · Video visit`;
  return screen;
}

let announceTimer = null;

/** Say something to screen readers through the polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  // Clearing first makes repeated identical messages be read again.
  region.textContent = "";
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    region.textContent = text;
  }, 50);
}

let menuCount = 0;

/**
 * A button that opens a small menu (WAI-ARIA menu button pattern): Enter,
 * Space or Down opens it; arrows move; Escape closes and returns focus.
 * @param {{label: string, text?: string, testid: string, class?: string,
 *   items: {label: string, testid: string, onSelect: (button: HTMLElement) => void, danger?: boolean}[]}} spec
 * `onSelect` gets the menu's button (where focus goes back to after a dialog).
 */
export function menuButton(spec) {
  const id = `menu-${++menuCount}`;
  const button = h("button", {
    type: "button",
    class: spec.class ?? "icon-button",
    testid: spec.testid,
    "aria-haspopup": "menu",
    "aria-expanded": "false",
    "aria-controls": id,
    "aria-label": spec.label,
    text: spec.text ?? "⋯",
  });
  const items = spec.items.map((item) =>
    h("button", {
      type: "button",
      role: "menuitem",
      tabindex: "-1",
      class: item.danger ? "menu-item danger" : "menu-item",
      testid: item.testid,
      text: item.label,
      onclick: () => {
        close(false);
        item.onSelect(button);
      },
    }),
  );
  const menu = h("div", { id, role: "menu", class: "menu", hidden: true, "aria-label": spec.label }, items);
  const wrap = h("div", { class: "menu-wrap" }, button, menu);

  const onOutside = (event) => {
    if (!wrap.contains(event.target)) close(false);
  };
  function open() {
    menu.hidden = false;
    placeMenu(menu);
    button.setAttribute("aria-expanded", "true");
    items[0]?.focus();
    document.addEventListener("pointerdown", onOutside, true);
  }
  function close(returnFocus = true) {
    if (menu.hidden) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", onOutside, true);
    if (returnFocus) button.focus();
    // After the chosen item has run: a list that held back while the menu was open
    // may now catch up (see `menuOpenIn`).
    setTimeout(() => wrap.dispatchEvent(new CustomEvent("menuclose", { bubbles: true })), 0);
  }
  button.addEventListener("click", () => (menu.hidden ? open() : close()));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      open();
    }
  });
  menu.addEventListener("keydown", (event) => {
    const index = items.indexOf(/** @type {any} */ (document.activeElement));
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(index + step + items.length) % items.length]?.focus();
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  return wrap;
}

/** Is a menu open inside `el`? Lists that re-render wait for it to close (`menuclose`). */
export function menuOpenIn(el) {
  return el.querySelector(".menu:not([hidden])") != null;
}

/**
 * Keep an open menu inside what shows it: it opens towards the side with room when
 * its panel (or the window) would cut it off.
 * @param {HTMLElement} menu
 */
function placeMenu(menu) {
  menu.classList.remove("menu-start", "menu-up");
  const clip = clipBox(menu);
  const box = menu.getBoundingClientRect();
  if (box.left < clip.left) menu.classList.add("menu-start");
  const scrolls = menu.parentElement?.closest(".side-panel") != null;
  const anchor = menu.parentElement?.getBoundingClientRect();
  if (!scrolls && anchor && box.bottom > clip.bottom && anchor.top - box.height > clip.top) menu.classList.add("menu-up");
}

/** The visible box of the nearest ancestor that clips its content, or the window. */
function clipBox(el) {
  const view = { left: 0, top: 0, right: window.innerWidth, bottom: window.innerHeight };
  for (let node = el.parentElement; node && node !== document.body; node = node.parentElement) {
    const style = getComputedStyle(node);
    if (style.overflowX !== "visible" || style.overflowY !== "visible") {
      const r = node.getBoundingClientRect();
      return { left: Math.max(r.left, 0), top: Math.max(r.top, 0), right: Math.min(r.right, view.right), bottom: Math.min(r.bottom, view.bottom) };
    }
  }
  return view;
}

/**
 * Ask before something that cannot be undone: a modal dialog (focus stays in it;
 * Escape or Cancel closes it and nothing happens). Resolves true when confirmed.
 * `returnTo` is where focus goes back to, or a function that finds it when the dialog
 * closes (the list behind may have been re-rendered meanwhile).
 * @param {{title: string, text: string, confirm: string, action: string,
 *   returnTo?: HTMLElement|(() => HTMLElement|null)|null}} spec
 * @returns {Promise<boolean>}
 */
export function confirmAction({ title, text, confirm, action, returnTo = null }) {
  return new Promise((resolve) => {
    const opener = returnTo ?? document.activeElement;
    const cancel = h("button", { type: "button", class: "secondary", testid: "btn-confirm-cancel", text: "Cancel", onclick: () => dialog.close("cancel") });
    const ok = h("button", { type: "button", class: "danger", testid: "btn-confirm", text: confirm, onclick: () => dialog.close("confirm") });
    const dialog = /** @type {HTMLDialogElement} */ (
      h(
        "dialog",
        { class: "confirm-dialog", testid: "confirm-dialog", role: "alertdialog", "aria-modal": "true", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text", dataset: { action } },
        h("h2", { id: "confirm-title", testid: "confirm-title", text: title }),
        h("p", { id: "confirm-text", testid: "confirm-text", text }),
        h("div", { class: "button-row" }, cancel, ok),
      )
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      const back = typeof opener === "function" ? opener() : opener;
      if (back instanceof HTMLElement && back.isConnected) back.focus();
      resolve(dialog.returnValue === "confirm");
    });
    (document.querySelector(".room") ?? document.body).append(dialog);
    dialog.showModal();
    cancel.focus(); // the safe choice is the default one
  });
}

/** Initials for an avatar: "Pat Doe" -> "PD". */
export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words.at(-1)] : words;
  return letters.map((w) => Array.from(w)[0] ?? "").join("").toUpperCase() || "?";
}

/** "4:05" from seconds. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(s / 60);
  return `${minutes}:${String(s % 60).padStart(2, "0")}`;
}

/** Attach a stream to a video/audio element once (re-assigning restarts playback). */
export function attachStream(el, stream) {
  if (el.srcObject !== stream) el.srcObject = stream;
  const playing = el.play?.();
  playing?.catch?.(() => undefined);
}
