// The room: a video grid of the receive slots, self view, call controls, the
// knock notification, the People panel and breakout rooms.

import { breakoutBanner, breakoutPanel } from "./breakouts.js";
import { announce, attachStream, confirmAction, fill, h, initials, menuButton, showScreen } from "./dom.js";
import { peoplePanel } from "./people.js";
import { setToggle } from "./precall.js";
import { statsPanel } from "./stats.js";

const MAX_AVATAR_TILES = 12;
const TOAST_MS = 8000;

/**
 * @param {{
 *   room: import("../sdk/visitroom.js").VisitRoom,
 *   stream: MediaStream|null,
 *   micOn: boolean,
 *   cameraOn: boolean,
 *   selfName: string,
 *   onLeave: () => void,
 *   onEndForAll: () => void,
 * }} options
 */
export function roomScreen({ room, stream, micOn, cameraOn, selfName, onLeave, onEndForAll }) {
  const isHost = room.isHost;
  const names = new Map([[room.participantId, selfName]]);
  const cleanups = [];
  const listen = (emitter, type, fn) => cleanups.push(emitter.on(type, fn));
  let screenTrack = null;

  // --- grid -------------------------------------------------------------------------
  const grid = h("div", { class: "grid", testid: "video-grid", role: "list", "aria-label": "Participants' video" });
  const audioBox = h("div", { class: "audio-sinks", hidden: true });
  /** @type {Map<string, HTMLElement>} */
  const tiles = new Map();
  /** @type {Map<string, HTMLAudioElement>} */
  const audioSinks = new Map();
  /** @type {Map<MediaStreamTrack, MediaStream>} */
  const streams = new Map();

  const streamOf = (track) => {
    if (!streams.has(track)) streams.set(track, new MediaStream([track]));
    return streams.get(track);
  };

  function tile(key, { kind, pid, label, stream: tileStream, mirrored = false, avatarName = label, status = null }) {
    let el = tiles.get(key);
    if (!el) {
      const video = h("video", { autoplay: true, playsinline: true, muted: true, class: mirrored ? "mirrored" : "" });
      video.muted = true;
      const avatar = h("div", { class: "avatar", "aria-hidden": "true" });
      const caption = h("figcaption", { testid: "tile-name" });
      const note = h("span", { class: "tile-status", testid: "tile-status" });
      el = h("figure", { class: "tile", testid: "video-tile", role: "listitem", dataset: { key } }, video, avatar, caption, note);
      tiles.set(key, el);
    }
    const [video, avatar, caption, note] = el.children;
    el.dataset.kind = kind;
    el.dataset.participantId = pid ?? "";
    caption.textContent = label;
    note.textContent = status ?? "";
    note.hidden = !status;
    const showVideo = Boolean(tileStream);
    video.hidden = !showVideo;
    avatar.hidden = showVideo;
    if (showVideo) attachStream(video, tileStream);
    else video.srcObject = null;
    avatar.textContent = initials(avatarName);
    const speaking = pid != null && pid === room.activeSpeaker;
    el.classList.toggle("speaking", speaking);
    el.dataset.activeSpeaker = speaking ? "true" : "false";
    return el;
  }

  function selfLabel() {
    const parts = [`${names.get(room.participantId) ?? selfName} (you)`];
    if (!micOn || !stream?.getAudioTracks().length) parts.push("muted");
    return parts.join(", ");
  }

  function renderGrid() {
    const want = [];
    const hasCam = stream?.getVideoTracks().length && cameraOn;
    const me = names.get(room.participantId) ?? selfName;
    want.push(tile("self", { kind: "self", pid: room.participantId, label: selfLabel(), avatarName: me, stream: hasCam ? stream : null, mirrored: true }));
    if (screenTrack) want.push(tile("screen", { kind: "screen", pid: room.participantId, label: "Your screen", stream: streamOf(screenTrack) }));
    const slots = room._media ? room.media.slots : [];
    // Who sends live media, as the server says (null from a server that does not).
    const publishes = (pid, source) => (room._media ? room.media.publishes(pid, source) : null);
    const withVideo = new Set();
    for (const slot of slots) {
      if (slot.kind !== "video" || !slot.participantId || !slot.track) continue;
      if (!room.participants.has(slot.participantId)) continue;
      // A slot whose camera (or screen) was turned off shows the person, not a frozen frame.
      if (publishes(slot.participantId, slot.source ?? "camera") === false) continue;
      withVideo.add(slot.participantId);
      const name = names.get(slot.participantId) ?? "Participant";
      const label = slot.source === "screen" ? `${name} (screen)` : name;
      const el = tile(`slot:${slot.mid}`, { kind: "video", pid: slot.participantId, label, avatarName: name, stream: streamOf(slot.track) });
      el.dataset.source = slot.source ?? "";
      room.media.observeSlot(slot.mid, el.querySelector("video")); // the server sends what fits
      want.push(el);
    }
    const others = [...room.participants.values()].filter((p) => p.id !== room.participantId && !withVideo.has(p.id));
    const videoSlots = slots.filter((slot) => slot.kind === "video");
    const slotsFull = videoSlots.length > 0 && videoSlots.every((slot) => slot.participantId);
    // The server says who sends a live camera (`publishers`): the others have it off,
    // and whoever sends one but is not in a slot is shown without a slot. An older
    // server does not say: then, while a slot is free, whoever has none sends none,
    // and with every slot taken nobody can tell a camera off from a missing slot.
    const noSlot = (pid) => publishes(pid, "camera") ?? slotsFull;
    for (const person of others.slice(0, MAX_AVATAR_TILES)) {
      const missing = videoSlots.length > 0 && noSlot(person.id);
      const status = videoSlots.length === 0 ? null : missing ? "No video slot" : "Camera off";
      want.push(tile(`person:${person.id}`, { kind: missing ? "no-slot" : "avatar", pid: person.id, label: person.name, stream: null, status }));
    }
    if (others.length > MAX_AVATAR_TILES) {
      const extra = others.length - MAX_AVATAR_TILES;
      want.push(tile("more", { kind: "more", pid: null, label: `${extra} more`, stream: null }));
    }
    const keep = new Set(want.map((el) => el.dataset.key));
    for (const [key, el] of tiles) {
      if (!keep.has(key)) {
        if (key.startsWith("slot:") && room._media) room.media.observeSlot(key.slice(5), null);
        el.querySelector("video").srcObject = null;
        el.remove();
        tiles.delete(key);
      }
    }
    // Append in order; appending an element that is already there moves it without reloading video.
    want.forEach((el, index) => {
      if (grid.children[index] !== el) grid.insertBefore(el, grid.children[index] ?? null);
    });
    grid.dataset.count = String(Math.min(want.length, 9));
    renderAudio(slots);
  }

  function renderAudio(slots) {
    const live = new Set();
    for (const slot of slots) {
      if (slot.kind !== "audio" || !slot.track) continue;
      live.add(slot.mid);
      let sink = audioSinks.get(slot.mid);
      if (!sink) {
        sink = /** @type {HTMLAudioElement} */ (h("audio", { autoplay: true, testid: "audio-sink", dataset: { mid: slot.mid } }));
        audioSinks.set(slot.mid, sink);
        audioBox.append(sink);
      }
      attachStream(sink, streamOf(slot.track));
    }
    for (const [mid, sink] of audioSinks) {
      if (!live.has(mid)) {
        sink.srcObject = null;
        sink.remove();
        audioSinks.delete(mid);
      }
    }
  }

  // --- notifications ------------------------------------------------------------------
  const toasts = h("div", { class: "toasts", role: "region", "aria-label": "Notifications" });
  function notify(text, kind = "info", { testid = "toast", actions = [], sticky = false } = {}) {
    const close = () => toast.remove();
    const toast = h(
      "div",
      { class: `toast toast-${kind}`, testid, role: kind === "error" ? "alert" : "status" },
      h("p", { class: "toast-text", testid: `${testid}-text`, text }),
      h("div", { class: "button-row" }, actions.map((a) => h("button", { type: "button", class: `small ${a.primary ? "primary" : "secondary"}`, testid: a.testid, text: a.label, onclick: () => { close(); a.onClick(); } })),
        h("button", { type: "button", class: "icon-button small", "aria-label": "Dismiss", testid: `${testid}-dismiss`, text: "✕", onclick: close })),
    );
    toasts.append(toast);
    if (!sticky) setTimeout(close, TOAST_MS);
    return toast;
  }

  // The knock notification: one card that follows the lobby, with "Let in" for everyone.
  const knockText = h("p", { class: "toast-text", testid: "knock-text" });
  const knockToast = h(
    "div",
    { class: "toast toast-knock", testid: "knock-toast", role: "status", hidden: true },
    knockText,
    h(
      "div",
      { class: "button-row" },
      h("button", { type: "button", class: "small primary", testid: "btn-knock-let-in", text: "Let in", onclick: () => admitEveryone() }),
      h("button", { type: "button", class: "small secondary", testid: "btn-knock-view", text: "View", onclick: () => { dismissKnock(); openPanel("people"); } }),
      h("button", { type: "button", class: "icon-button small", testid: "btn-knock-dismiss", "aria-label": "Dismiss", text: "✕", onclick: () => dismissKnock() }),
    ),
  );
  let knockDismissed = false;
  /** Hide the card until someone else knocks (the People panel lists who waits). */
  function dismissKnock() {
    knockDismissed = true;
    knockToast.hidden = true;
  }

  function admitEveryone() {
    const count = room.waiting.size;
    room.admitAll().then(
      (ack) => {
        announce(`${ack.admitted?.length ?? count} let in.`);
        if (ack.room_full) notify("The visit is full: some guests are still waiting.", "warning");
      },
      (error) => notify(`That didn't work: ${error.message}`, "error"),
    );
  }

  function renderKnock() {
    const waiting = [...room.waiting.values()].sort((a, b) => a.knocked_at - b.knocked_at);
    if (!waiting.length) {
      knockToast.hidden = true;
      knockDismissed = false;
      return;
    }
    knockText.textContent =
      waiting.length === 1
        ? `${waiting[0].name} wants to join`
        : `${waiting[0].name} and ${waiting.length - 1} other${waiting.length > 2 ? "s" : ""} are waiting`;
    knockToast.hidden = knockDismissed || openName === "people";
  }

  // --- panels -------------------------------------------------------------------------
  const people = peoplePanel({ room, names, notify, onClose: () => closePanel() });
  const breakouts = isHost ? breakoutPanel({ room, names, notify, onClose: () => closePanel() }) : null;
  const info = statsPanel({ room, names, onClose: () => closePanel() });
  const banner = breakoutBanner({ room, notify });
  /** The side panels and the control that opens each. */
  const panels = { people: { view: people, button: null }, breakouts: { view: breakouts, button: null }, info: { view: info, button: null } };
  let openName = null;
  function openPanel(name) {
    openName = name;
    for (const [key, { view, button }] of Object.entries(panels)) {
      if (!view) continue;
      view.element.hidden = key !== name;
      button?.setAttribute("aria-expanded", String(key === name));
    }
    stage.classList.toggle("with-panel", Boolean(name));
    if (isHost) renderKnock();
    if (name === "info") info.start();
    else info.stop();
    panels[name]?.view?.render?.();
    panels[name]?.view?.element.querySelector("h2")?.focus();
  }
  function closePanel() {
    const was = openName;
    openName = null;
    info.stop();
    for (const { view, button } of Object.values(panels)) {
      if (view) view.element.hidden = true;
      button?.setAttribute("aria-expanded", "false");
    }
    stage.classList.remove("with-panel");
    if (isHost) renderKnock();
    panels[was]?.button?.focus();
  }
  const togglePanel = (name) => (openName === name ? closePanel() : openPanel(name));

  // --- controls -----------------------------------------------------------------------
  const hasMic = Boolean(stream?.getAudioTracks().length);
  const hasCam = Boolean(stream?.getVideoTracks().length);
  const micButton = h("button", { type: "button", class: "control toggle", testid: "btn-mic", disabled: !hasMic, onclick: () => toggleMic() });
  const camButton = h("button", { type: "button", class: "control toggle", testid: "btn-camera", disabled: !hasCam, onclick: () => toggleCamera() });
  const canShare = Boolean(navigator.mediaDevices?.getDisplayMedia);
  const screenButton = canShare
    ? h("button", { type: "button", class: "control toggle", testid: "btn-screen", dataset: { state: "off" }, text: "Share screen", onclick: () => toggleScreen() })
    : null;
  const badge = h("span", { class: "badge", testid: "people-badge", hidden: true });
  const panelButton = (name, testid, ...label) => {
    const view = panels[name].view;
    if (!view) return null;
    view.element.id = `${name}-panel`;
    const button = h("button", { type: "button", class: "control", testid, "aria-expanded": "false", "aria-controls": `${name}-panel`, onclick: () => togglePanel(name) }, ...label);
    panels[name].button = button;
    return button;
  };
  const peopleButton = panelButton("people", "btn-people", "People", badge);
  const breakoutButton = panelButton("breakouts", "btn-breakouts", "Breakouts");
  const infoButton = panelButton("info", "btn-stats", "Call info");
  const leaveItems = [{ label: "Leave meeting", testid: "btn-leave-room", onSelect: onLeave }];
  const confirmEnd = async (returnTo) => {
    const sure = await confirmAction({
      action: "end-for-all",
      title: "End the visit for everyone?",
      text: "Everyone in the visit and everyone waiting to join will be sent out, and the visit closes.",
      confirm: "End for all",
      returnTo,
    });
    if (sure) onEndForAll();
  };
  if (isHost) leaveItems.push({ label: "End meeting for all", testid: "btn-end-for-all", danger: true, onSelect: confirmEnd });
  const leave = menuButton({ label: "Leave", text: "Leave", testid: "btn-leave", class: "control leave", items: leaveItems });

  function applyDevices() {
    stream?.getAudioTracks().forEach((t) => (t.enabled = micOn));
    stream?.getVideoTracks().forEach((t) => (t.enabled = cameraOn));
    room.media.setCameraOff(!cameraOn); // send nothing, so the others see "Camera off"
    room.keepSessionData({ micOn, cameraOn }); // a reload keeps them as they are
    const mic = micOn && hasMic;
    const cam = cameraOn && hasCam;
    setToggle(micButton, mic, "Mute", "Unmute", mic ? "Mute microphone" : "Unmute microphone");
    setToggle(camButton, cam, "Stop video", "Start video", cam ? "Turn camera off" : "Turn camera on");
  }
  function toggleMic() {
    micOn = !micOn;
    applyDevices();
    renderGrid();
    announce(micOn ? "Microphone on" : "Microphone muted");
  }
  function toggleCamera() {
    cameraOn = !cameraOn;
    applyDevices();
    renderGrid();
    announce(cameraOn ? "Camera on" : "Camera off");
  }
  async function toggleScreen() {
    try {
      if (screenTrack) {
        screenTrack = null;
        await room.media.stopScreenShare();
      } else {
        screenTrack = await room.media.startScreenShare();
        screenTrack.addEventListener("ended", () => {
          screenTrack = null;
          updateScreenButton();
          renderGrid();
        });
      }
    } catch (error) {
      screenTrack = room.media.local.screen;
      if (error?.name !== "NotAllowedError") notify(`Screen sharing failed: ${error.message}`, "error");
    }
    updateScreenButton();
    renderGrid();
  }
  function updateScreenButton() {
    if (!screenButton) return;
    screenButton.dataset.state = screenTrack ? "on" : "off";
    screenButton.textContent = screenTrack ? "Stop sharing" : "Share screen";
  }

  const mediaNotice = h("p", { class: "media-notice", testid: "media-notice", role: "status", hidden: true });
  // The server's estimate of my downlink is low: others' video is reduced or paused.
  const weakConnection = h("p", { class: "weak-connection", testid: "weak-connection", role: "status", hidden: true, text: "Weak connection" });
  const controls = h(
    "nav",
    { class: "controls", "aria-label": "Call controls" },
    micButton,
    camButton,
    screenButton,
    peopleButton,
    breakoutButton,
    infoButton,
    leave,
  );
  const stage = h("div", { class: "stage" }, grid, weakConnection, people.element, breakouts?.element, info.element);
  const screen = h(
    "section",
    { class: "room", testid: "screen-room", dataset: { role: room.role }, "aria-labelledby": "room-title" },
    h("h1", { id: "room-title", class: "visually-hidden", text: "Video visit" }),
    banner.element,
    mediaNotice,
    stage,
    h("div", { class: "toast-stack" }, knockToast, toasts),
    controls,
    audioBox,
  );
  applyDevices();
  showScreen(screen, { focus: micButton.disabled ? peopleButton : micButton });

  // --- room events ----------------------------------------------------------------------
  function renderAll() {
    renderGrid();
    if (openName === "people") people.render();
    if (breakouts && openName === "breakouts") breakouts.render();
    banner.render();
    const waiting = room.waiting.size;
    badge.hidden = !isHost || waiting === 0;
    badge.textContent = String(waiting);
    peopleButton.setAttribute("aria-label", isHost && waiting ? `People, ${waiting} waiting` : "People");
    if (isHost) renderKnock();
  }

  listen(room, "rosterchange", () => {
    for (const p of room.participants.values()) names.set(p.id, p.name);
    renderAll();
  });
  listen(room, "participant_joined", (m) => announce(`${m.participant.name} joined.`));
  listen(room, "participant_left", (m) => {
    const reason = { removed: "was removed", ended: "left", disconnected: "lost connection", left: "left" }[m.reason] ?? "left";
    announce(`${names.get(m.participant_id) ?? "Someone"} ${reason}.`);
  });
  listen(room, "lobbychange", (waiting) => {
    for (const w of waiting) names.set(w.id, w.name);
    renderAll();
  });
  listen(room, "refusalschange", () => renderAll());
  listen(room, "knock", (m) => {
    knockDismissed = false;
    renderKnock();
    announce(`${m.participant.name} is waiting to join. Open People to let them in.`);
  });
  listen(room, "active_speaker", () => renderGrid());
  listen(room, "breakouts", () => renderAll());
  listen(room, "breakout", (m) => {
    announce(m.room ? `You are now in breakout room ${m.room.name}.` : "You are back in the main room.");
    renderAll();
  });
  listen(room, "broadcast", (m) => notify(m.text, "broadcast", { testid: "broadcast-message", sticky: true }));
  listen(room, "help_requested", (m) => {
    const where = room.breakouts?.rooms.find((r) => r.id === m.breakout_id);
    notify(`${names.get(m.participant_id) ?? "A participant"} asked for help${where ? ` in ${where.name}` : ""}.`, "help", {
      testid: "help-request",
      sticky: true,
      actions: [{ label: "Join", testid: "btn-help-join", primary: true, onClick: () => room.moveToBreakout(room.participantId, m.breakout_id).catch((e) => notify(e.message, "error")) }],
    });
  });
  let reconnecting = null;
  listen(room, "reconnecting", ({ attempt }) => {
    if (attempt > 1 && reconnecting?.isConnected) return;
    reconnecting = notify("Connection lost. Reconnecting…", "warning", { testid: "reconnecting", sticky: true });
    announce("Connection lost. Reconnecting…");
  });
  listen(room, "reconnected", () => {
    reconnecting?.remove();
    reconnecting = null;
    notify("Reconnected.", "info");
    announce("Reconnected.");
  });

  const timer = setInterval(() => {
    banner.tick();
    breakouts?.tick();
  }, 1000);
  cleanups.push(() => clearInterval(timer));

  // --- media ----------------------------------------------------------------------------
  const media = room.media;
  listen(media, "tracks", () => renderGrid());
  listen(media, "downlink", ({ weak, estimateKbps }) => {
    weakConnection.hidden = !weak;
    weakConnection.title = `About ${Math.round(estimateKbps)} kbit/s`;
  });
  listen(media, "connectionstate", ({ state }) => {
    screen.dataset.media = state;
    if (state === "connected") mediaNotice.hidden = true;
  });
  media
    .start({ audio: stream?.getAudioTracks()[0] ?? null, video: stream?.getVideoTracks()[0] ?? null })
    .catch((error) => {
      mediaNotice.textContent =
        error?.code === "unavailable"
          ? "Audio and video are not available on this server right now."
          : `Audio and video could not start (${error?.message ?? "unknown error"}).`;
      mediaNotice.hidden = false;
    });

  if (isHost) room.refreshLobby().catch(() => undefined);
  renderAll();

  return {
    element: screen,
    openPanel,
    /** Turn my microphone or camera on (true) or off (false), as its button would. */
    setDevices({ microphone, camera }) {
      if (typeof microphone === "boolean" && microphone !== micOn) toggleMic();
      if (typeof camera === "boolean" && camera !== cameraOn) toggleCamera();
      return { microphone: micOn && hasMic, camera: cameraOn && hasCam };
    },
    destroy() {
      for (const off of cleanups) off();
      info.stop();
      media.close();
      for (const el of [...tiles.values(), ...audioSinks.values()]) {
        const v = el.querySelector?.("video") ?? el;
        v.srcObject = null;
      }
      fill(grid);
    },
  };
}
