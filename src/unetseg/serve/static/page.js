// What the page shows: the served models, the file dropped, and which view (image or recording) is open.

import { $, api, plural, showError, status, token } from "./api.js";
import { clearImage, runImage } from "./images.js";
import { loadReviewList, openReview, uploadRecording } from "./review/store.js";

export const page = { models: [], file: null, reviewsKept: false };

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
  } catch (e) { showError(e.message); return; }
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

function isAudio(file) {
  return file.type.startsWith("audio/") || /\.(wav|flac|ogg|mp3|aiff?|opus)$/i.test(file.name);
}

export async function run(file) {
  page.file = file;
  showError("");
  const kind = isAudio(file) ? "audio" : "image";
  if (!current() || current().kind !== kind) {
    const other = page.models.find((m) => m.kind === kind);
    if (!other) { hideViews(); showError("no " + kind + " model is served"); return; }
    $("model").value = other.name;
  }
  hideViews();  // a failed run never leaves an earlier result (or its downloads) on the page
  if (kind === "image") await runImage(); else await uploadRecording();
}
