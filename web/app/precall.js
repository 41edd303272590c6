// The pre-call step: name (guests), camera and microphone permission with a
// preview, the server's pre-call test (or skip), then "Join Meeting".

import { runPrecallTest } from "../sdk/visitroom.js";
import { announce, attachStream, fill, h, showScreen } from "./dom.js";

const CHECKS = [
  ["camera", "Camera"],
  ["microphone", "Microphone"],
  ["connection", "Connection"],
  ["bitrate", "Bandwidth"],
];
const STATUS_WORDS = { ok: "OK", poor: "Weak", fail: "Problem" };

/** Ask for camera and microphone; fall back to one of them when the other is missing. */
export async function requestDevices() {
  const media = navigator.mediaDevices;
  if (!media?.getUserMedia) return { stream: null, error: "This browser cannot use a camera here." };
  const attempts = [
    { audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } },
    { audio: true, video: false },
    { audio: false, video: true },
  ];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      return { stream: await media.getUserMedia(constraints), error: null };
    } catch (error) {
      lastError = error;
      if (error?.name === "NotAllowedError") break;
    }
  }
  const blocked = lastError?.name === "NotAllowedError";
  return {
    stream: null,
    error: blocked
      ? "Camera and microphone are blocked. Allow them in your browser's address bar, then choose Try again."
      : "No camera or microphone was found. You can still join and listen.",
  };
}

/** @param {MediaStream|null} stream */
function deviceSummary(stream) {
  const cam = stream?.getVideoTracks().length ? "Camera ready" : "No camera";
  const mic = stream?.getAudioTracks().length ? "microphone ready" : "no microphone";
  return `${cam}, ${mic}.`;
}

/**
 * Show the pre-call screen; resolves when the person chooses Join Meeting.
 * `parentJoin` (embedding) may bring a name to prefill or a guest token that
 * makes the name field unnecessary, if it arrives before Join Meeting.
 * @param {{askName: boolean, heading?: string, initialName?: string,
 *   parentJoin?: Promise<{token: string|null, name: string|null}>|null}} options
 * @returns {Promise<{name: string|null, token: string|null, stream: MediaStream|null, micOn: boolean, cameraOn: boolean}>}
 */
export function precallStep({ askName, heading = "Get ready for your visit", initialName = "", parentJoin = null, nameMaxLength = null }) {
  return new Promise((resolve) => {
    let token = null;
    let stream = null;
    let micOn = true;
    let cameraOn = true;
    let testDone = false;
    let testRunning = false;
    /** @type {Promise<void>} */
    let acquiring = Promise.resolve();

    const nameInput = askName
      ? h("input", {
          id: "guest-name",
          testid: "input-name",
          type: "text",
          autocomplete: "name",
          maxlength: nameMaxLength, // from the server (the room's `/window`)
          required: true,
          value: initialName,
          "aria-describedby": "name-error",
        })
      : null;
    const nameError = h("p", { id: "name-error", class: "field-error", testid: "name-error", hidden: true });
    const preview = h("video", {
      testid: "precall-preview",
      class: "preview-video mirrored",
      autoplay: true,
      muted: true,
      playsinline: true,
      "aria-label": "Your camera preview",
    });
    preview.muted = true;
    const noVideo = h("div", { class: "preview-empty", text: "Camera off" });
    const permissions = h("p", { testid: "precall-permissions", class: "device-status", role: "status" }, "Asking for camera and microphone…");
    const retry = h("button", { type: "button", class: "secondary", testid: "btn-allow-devices", hidden: true, text: "Try again", onclick: () => (acquiring = acquire()) });
    const micButton = h("button", { type: "button", class: "toggle", testid: "precall-mic", onclick: () => toggleMic() }, "Microphone on");
    const camButton = h("button", { type: "button", class: "toggle", testid: "precall-camera", onclick: () => toggleCamera() }, "Camera on");
    const runButton = h("button", { type: "button", class: "secondary", testid: "btn-run-test", text: "Run test", onclick: () => runTest() });
    const skipButton = h("button", { type: "button", class: "link-button", testid: "btn-skip-test", text: "Skip test", onclick: () => finishTest(null) });
    const progress = h("p", { class: "test-progress", testid: "precall-progress", role: "status", hidden: true });
    const result = h("div", { class: "precall-result", testid: "precall-result", hidden: true });
    const joinButton = h("button", { type: "submit", class: "primary", testid: "btn-join", hidden: true, text: "Join Meeting" });

    const nameField = nameInput && h("div", { class: "field" }, h("label", { for: "guest-name", text: "Your name" }), nameInput, nameError);
    const form = h(
      "form",
      { class: "precall-form", novalidate: true, onsubmit: (event) => onJoin(event) },
      nameField,
      h("div", { class: "preview" }, preview, noVideo),
      h("div", { class: "device-row" }, permissions, retry),
      h("div", { class: "toggle-row", role: "group", "aria-label": "Devices" }, micButton, camButton),
      h("div", { class: "test-row" }, h("p", { class: "hint", text: "Check your camera, microphone and connection before you join." }), h("div", { class: "button-row" }, runButton, skipButton)),
      progress,
      result,
      joinButton,
    );
    const screen = h(
      "section",
      { class: "card precall", testid: "screen-precall", "aria-labelledby": "precall-title" },
      h("h1", { id: "precall-title", text: heading }),
      form,
    );
    showScreen(screen, { focus: nameInput && !initialName ? nameInput : null });

    async function acquire() {
      retry.hidden = true;
      permissions.textContent = "Asking for camera and microphone…";
      stopStream();
      const got = await requestDevices();
      stream = got.stream;
      permissions.textContent = got.error ?? deviceSummary(stream);
      retry.hidden = !got.error;
      micButton.disabled = !stream?.getAudioTracks().length;
      camButton.disabled = !stream?.getVideoTracks().length;
      applyToggles();
      if (stream?.getVideoTracks().length) attachStream(preview, stream);
    }

    function stopStream() {
      stream?.getTracks().forEach((t) => t.stop());
      stream = null;
    }

    function applyToggles() {
      stream?.getAudioTracks().forEach((t) => (t.enabled = micOn));
      stream?.getVideoTracks().forEach((t) => (t.enabled = cameraOn));
      const hasVideo = Boolean(stream?.getVideoTracks().length) && cameraOn;
      preview.hidden = !hasVideo;
      noVideo.hidden = hasVideo;
      setToggle(micButton, micOn && !micButton.disabled, "Microphone on", "Microphone off");
      setToggle(camButton, cameraOn && !camButton.disabled, "Camera on", "Camera off");
    }

    function toggleMic() {
      micOn = !micOn;
      applyToggles();
    }

    function toggleCamera() {
      cameraOn = !cameraOn;
      applyToggles();
    }

    async function runTest() {
      if (testRunning) return;
      testRunning = true;
      runButton.disabled = true;
      skipButton.disabled = true;
      progress.hidden = false;
      progress.textContent = "Testing your camera, microphone and connection…";
      await acquiring;
      result.hidden = true;
      // The test needs live tracks even if the person turned them off for the visit.
      stream?.getTracks().forEach((t) => (t.enabled = true));
      const verdict = await runPrecallTest({
        stream,
        onProgress: ({ elapsedMs }) => {
          progress.textContent = `Testing… ${Math.ceil(elapsedMs / 1000)} s`;
        },
      });
      applyToggles();
      testRunning = false;
      runButton.disabled = false;
      skipButton.disabled = false;
      runButton.textContent = "Run test again";
      progress.hidden = true;
      showVerdict(verdict);
      finishTest(verdict);
    }

    function showVerdict(verdict) {
      const summary = {
        ok: "Everything looks good.",
        poor: "You can join, but the call may not be smooth.",
        fail: "Something is not working. You can still join, or fix it and run the test again.",
      }[verdict.overall];
      fill(
        result,
        h("p", { class: `verdict verdict-${verdict.overall}`, testid: "precall-verdict", dataset: { status: verdict.overall }, text: summary }),
        h(
          "ul",
          { class: "checks" },
          CHECKS.map(([key, label]) =>
            h(
              "li",
              { class: `check check-${verdict[key].status}`, testid: `verdict-${key}`, dataset: { status: verdict[key].status } },
              h("span", { class: "check-label", text: label }),
              h("span", { class: "check-status", text: STATUS_WORDS[verdict[key].status] }),
              h("span", { class: "check-detail", text: verdict[key].detail }),
            ),
          ),
        ),
      );
      result.hidden = false;
      announce(`Test finished. ${summary}`);
    }

    function finishTest(verdict) {
      testDone = true;
      joinButton.hidden = false;
      if (!verdict) announce("Test skipped.");
      joinButton.focus();
    }

    async function onJoin(event) {
      event.preventDefault();
      if (!testDone || testRunning || joining) return;
      const needName = nameInput && !token;
      const name = needName ? nameInput.value.trim().replace(/\s+/g, " ") : null;
      if (needName && !name) {
        nameError.textContent = "Enter your name so the host knows who is waiting.";
        nameError.hidden = false;
        nameInput.setAttribute("aria-invalid", "true");
        nameInput.focus();
        return;
      }
      // Join with the devices the person saw in the preview, not before they are ready.
      joining = true;
      joinButton.disabled = true;
      await acquiring;
      resolve({ name, token, stream, micOn, cameraOn });
    }

    parentJoin?.then((join) => {
      if (join.token) {
        token = join.token;
        if (nameField) nameField.hidden = true;
      } else if (join.name && nameInput && !nameInput.value) {
        nameInput.value = join.name;
      }
    });
    let joining = false;
    acquiring = acquire();
  });
}

/**
 * A device button whose text says what it is now ("Camera on"); `data-state` mirrors it.
 * @param {HTMLButtonElement} button @param {boolean} on @param {string} onText @param {string} offText
 * @param {string} [label] accessible name when the visible text alone is ambiguous
 */
export function setToggle(button, on, onText, offText, label) {
  button.textContent = on ? onText : offText;
  button.dataset.state = on ? "on" : "off";
  button.classList.toggle("off", !on);
  if (label) button.setAttribute("aria-label", label);
}
