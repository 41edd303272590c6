"""Layout checks in a real browser: every control a user can see can also be used.

`unusable_controls(page)` walks every visible control (buttons, fields, links,
menu items), scrolls it into view the way a user would (inside its own
scrolling panel), and reports each one whose box is not wholly inside the
viewport or whose centre is covered by something else (`elementFromPoint`).
It also reports a page wider than the window, a call screen that scrolls as a
whole (a panel that grew the page instead of scrolling inside itself), and
call controls that a scroll pushed off the screen.
"""

from __future__ import annotations

from playwright.sync_api import Page

CHECK_CONTROLS = """(pageMayScroll) => {
  const problems = [];
  const vw = window.innerWidth, vh = window.innerHeight;
  const page = document.scrollingElement;
  if (page.scrollWidth > vw + 1 || (!pageMayScroll && page.scrollHeight > vh + 1)) {
    const size = `${page.scrollWidth}x${page.scrollHeight}`;
    problems.push(`the page itself scrolls: ${size} in ${vw}x${vh}`);
  }
  const name = (el) => el ? (el.dataset.testid || el.getAttribute("aria-label")
    || el.textContent.trim().slice(0, 30) || el.tagName.toLowerCase()) : "nothing";
  const selector = "button, input, select, textarea, summary, a[href], [role=menuitem], "
    + "[role=tab], [role=option]";
  const visible = (el) => el.checkVisibility({ visibilityProperty: true, opacityProperty: true })
    && !el.closest(".skip-link, .visually-hidden");
  const usable = (el, label) => {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return `${label} has no size`;
    if (r.left < -0.5 || r.top < -0.5 || r.right > vw + 0.5 || r.bottom > vh + 0.5) {
      return `${label} is outside the viewport: ${Math.round(r.left)},${Math.round(r.top)}`
        + ` ${Math.round(r.width)}x${Math.round(r.height)}`;
    }
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const labels = el.labels ? [...el.labels] : [];
    // An open menu or list of suggestions may lie over what is under it (the user
    // closes it first); it must not lie over its own items.
    const overMenu = hit?.closest("[role=menu], [role=listbox]");
    if (overMenu && !overMenu.contains(el)) return null;
    if (!hit || !(el === hit || el.contains(hit) || labels.some((l) => l.contains(hit)))) {
      return `${label} is covered by ${name(hit)}`;
    }
    return null;
  };
  // A modal dialog makes the rest of the page inert: only its own controls count.
  const modal = document.querySelector("dialog[open]");
  const scope = modal ?? document;
  const controls = [...scope.querySelectorAll(selector)].filter(visible);
  for (const el of controls) {
    el.scrollIntoView({ block: "nearest", inline: "nearest" });
    const problem = usable(el, name(el));
    if (problem) problems.push(problem);
  }
  // Scrolling a panel must never have moved the call controls off the screen.
  for (const el of modal ? [] : document.querySelectorAll(".controls button")) {
    if (!visible(el)) continue;
    const problem = usable(el, `call control ${name(el)}`);
    if (problem) problems.push(problem);
  }
  return { count: controls.length, problems };
}"""


def unusable_controls(page: Page, at_least: int = 1, page_may_scroll: bool = False) -> list[str]:
    """What is wrong with the visible controls of `page` (empty: all usable).

    `page_may_scroll`: a document page (the dashboard, a form) may be taller than
    the window; it must never be wider. The call screen may be neither."""
    result = page.evaluate(CHECK_CONTROLS, page_may_scroll)
    assert result["count"] >= at_least, f"only {result['count']} controls checked"
    problems: list[str] = result["problems"]
    return problems
