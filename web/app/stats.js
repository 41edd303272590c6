// The Call info panel: what getStats() says about the connection, what I send and
// what I receive from whom. Useful when a patient says "I can't see you".

import { fill, h } from "./dom.js";

const POLL_MS = 2000;
const ROLE_LABELS = { microphone: "Microphone", camera: "Camera", screen: "Screen" };

/**
 * @param {{
 *   room: import("../sdk/visitroom.js").VisitRoom,
 *   names: Map<string, string>,
 *   onClose: () => void,
 * }} options
 */
export function statsPanel({ room, names, onClose }) {
  const summary = h("p", { class: "hint", testid: "stats-connection", role: "status" });
  const slotChoice = h(
    "select",
    {
      id: "video-slots",
      testid: "select-video-slots",
      onchange: (event) => room.media.setSlots({ video: Number(event.target.value) }).catch(() => undefined),
    },
    [1, 2, 4, 6, 8].map((n) => h("option", { value: String(n), text: String(n) })),
  );
  const sending = h("tbody");
  const receiving = h("tbody");
  const panel = h(
    "aside",
    { class: "side-panel", testid: "stats-panel", "aria-labelledby": "stats-heading", hidden: true },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "stats-heading", tabindex: "-1", text: "Call info" }),
      h("button", { type: "button", class: "icon-button", testid: "btn-close-stats", "aria-label": "Close call info", text: "✕", onclick: onClose }),
    ),
    summary,
    h("div", { class: "field" }, h("label", { for: "video-slots", text: "Videos to receive at most" }), slotChoice),
    h("table", { class: "stats" }, h("caption", { text: "Sending" }), head(["Stream", "Quality", "Rate"]), sending),
    h("table", { class: "stats" }, h("caption", { text: "Receiving" }), head(["From", "Quality", "Frames / packets"]), receiving),
  );
  let timer = null;
  let previous = new Map();
  let previousAt = 0;

  function head(labels) {
    return h("thead", {}, h("tr", {}, labels.map((l) => h("th", { scope: "col", text: l }))));
  }

  function quality(s) {
    if (s.kind !== "video") return "Audio";
    const size = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "—";
    return s.framesPerSecond ? `${size}, ${Math.round(s.framesPerSecond)} fps` : size;
  }

  /** "Direct (UDP)." or "Relayed through a TURN server over TLS." */
  function pathText(path) {
    if (!path) return "";
    if (path.localType === "relay") return `Relayed through a TURN server over ${(path.relayProtocol ?? "?").toUpperCase()}.`;
    return `Direct (${path.localProtocol.toUpperCase()}).`;
  }

  async function refresh() {
    const stats = room._media?.pc ? await room.media.stats() : null;
    if (!stats) {
      summary.textContent = "Audio and video are not connected.";
      fill(sending);
      fill(receiving);
      return;
    }
    const now = performance.now();
    const seconds = previousAt ? (now - previousAt) / 1000 : 0;
    const rate = (key, bytes) => {
      const before = previous.get(key);
      return seconds && before !== undefined ? `${Math.round(((bytes - before) * 8) / 1000 / seconds)} kbps` : "…";
    };
    const rtt = stats.roundTripTimeMs === null ? "—" : `${Math.round(stats.roundTripTimeMs)} ms`;
    const up = stats.availableOutgoingKbps === null ? "—" : `${Math.round(stats.availableOutgoingKbps)} kbps`;
    summary.textContent = `${pathText(stats.path)} Round trip ${rtt}, upload bandwidth ${up}.`;
    summary.dataset.localType = stats.path?.localType ?? "";
    summary.dataset.relayProtocol = stats.path?.relayProtocol ?? "";
    summary.dataset.remoteProtocol = stats.path?.remoteProtocol ?? "";
    const next = new Map();
    fill(
      sending,
      stats.outbound.map((s) => {
        next.set(`out:${s.mid}`, s.bytesSent);
        return h(
          "tr",
          { testid: "stats-row", dataset: { direction: "out", kind: s.kind, role: s.role ?? "", bytes: String(s.bytesSent) } },
          h("td", { text: ROLE_LABELS[s.role] ?? s.kind }),
          h("td", { text: quality(s) }),
          h("td", { text: rate(`out:${s.mid}`, s.bytesSent) }),
        );
      }),
    );
    fill(
      receiving,
      stats.inbound
        .filter((s) => s.participantId)
        .map((s) => {
          next.set(`in:${s.mid}`, s.bytesReceived);
          const count = s.kind === "video" ? `${s.framesDecoded} frames` : `${s.packetsReceived} packets`;
          return h(
            "tr",
            {
              testid: "stats-row",
              dataset: { direction: "in", kind: s.kind, mid: s.mid, participantId: s.participantId, framesDecoded: String(s.framesDecoded), packetsReceived: String(s.packetsReceived) },
            },
            h("td", { text: `${names.get(s.participantId) ?? "Participant"} (${s.kind})` }),
            h("td", { text: quality(s) }),
            h("td", { text: `${count}, ${s.packetsLost} lost` }),
          );
        }),
    );
    previous = next;
    previousAt = now;
  }

  return {
    element: panel,
    start() {
      slotChoice.value = String(room.media.videoSlots);
      clearInterval(timer);
      refresh();
      timer = setInterval(refresh, POLL_MS);
    },
    stop() {
      clearInterval(timer);
      timer = null;
    },
  };
}
