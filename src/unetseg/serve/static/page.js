// What the page shows: the served models, the file dropped, and which view (image or recording) is open.

import { $, api, plural, showError, status, token } from "./api.js";
import { clearImage, runImage } from "./images.js";
import { loadReviewList, openReview, uploadRecording } from "./review/store.js";

export const page = { models: [], file: null, reviewsKept: false, refused: null };

export function current() { return page.models.find((m) => m.name === $("model").value); }

export function stem() { return page.file ? page.file.name.replace(/\.[^.]*$/, "") : "output"; }

export function hideViews() {
  $("image-view").hidden = true;
  $("audio-view").hidden = true;
  clearImage();
}

export function activeView() { return !$("image-view").hidden ? "image" : !$("audio-view").hidden ? "audio" : null; }

export async function loadModels() {
  const health = await (await fetch("/health")).json();
  $("token-label").hidden = !health.auth;
  $("token").value = token();
  page.reviewsKept = health.reviews === "kept";
  try {
    page.models = await (await api("/models")).json();
  } catch (e) {
    page.models = [];
    page.refused = health.auth ? "the server wants a token: enter the right one above (" + e.message + ")" : e.message;
    showError(page.refused);
    return;
  }
  page.refused = null;
  showError("");
  $("recordings-label").hidden = !health.recordings;
  if (health.recordings) await loadRecordings();
  $("model").innerHTML = "";
  for (const m of page.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name + " (" + m.kind + ", " + plural(m.classes.length, "class", "classes") + ")";
    $("model").append(option);
  }
  status(plural(page.models.length, "model") + " loaded");
  await loadReviewList();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("review");
  if (wanted) await openReview(wanted);
}

async function loadRecordings() {
  try {
    const list = await (await api("/recordings")).json();
    $("recordings").innerHTML = '<option value="">(choose)</option>';
    for (const r of list) {
      const option = document.createElement("option");
      option.value = r.path;
      option.textContent = r.path + " (" + (r.bytes / 2 ** 20).toFixed(1) + " MB)";
      $("recordings").append(option);
    }
  } catch (e) { showError(e.message); }
}

function isAudio(file) {
  return file.type.startsWith("audio/") || /\.(wav|flac|ogg|mp3|aiff?|opus)$/i.test(file.name);
}

export async function run(file) {
  page.file = file;
  showError("");
  const kind = isAudio(file) ? "audio" : "image";
  if (page.refused) { showError(page.refused); return; }
  const annotate = kind === "audio" && !$("detect").checked;  // a recording to annotate from scratch needs no model
  if (!annotate && (!current() || current().kind !== kind)) {
    const other = page.models.find((m) => m.kind === kind);
    if (!other) { showError("no " + kind + " model is served" + (kind === "audio" ? " (untick \"detect events\" to annotate with none)" : "")); return; }
    $("model").value = other.name;
  }
  if (kind === "image") { hideViews(); await runImage(); }  // a failed run never leaves an earlier result (or its downloads)
  else await uploadRecording();  // a failed upload leaves the open review open
}
