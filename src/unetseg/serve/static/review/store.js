// The open review: its document (events with their states), the selection, and the edits sent to the server.

import { $, api, json, plural, showError, status } from "../api.js";
import { hideViews, page } from "../page.js";
import { HEIGHT, sortEvents } from "./geometry.js";
import { drawFreqAxis, refresh, setZoom } from "./view.js";

export const review = { doc: null, pxs: 100, tiles: new Map(), selected: null, drag: null, drawing: null,
  playing: null, generation: 0 };
const PALETTE = [[255, 200, 0], [0, 220, 255], [255, 80, 200], [120, 255, 90], [255, 140, 60], [170, 140, 255]];

export function view() { return { pxs: review.pxs, rows: review.doc.row_hz, height: HEIGHT }; }

export function sortedEvents() { return sortEvents(review.doc.events); }

export function numberOf(event) { return sortedEvents().indexOf(event) + 1; }

export function selectedEvent() { return review.doc && review.doc.events.find((e) => e.id === review.selected); }

export function colourOf(label) {
  const model = page.models.find((m) => m.classes.includes(label) && m.kind === "audio");
  if (model) { const c = model.colours[model.classes.indexOf(label)]; if (c && (c[0] || c[1] || c[2])) return c; }
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

export function reviewTitle(name, events, unreviewed) {
  return name + " (" + plural(events, "event") + ", " + (events - unreviewed) + " reviewed)";
}

export async function loadReviewList() {
  let list = [];
  try { list = await (await api("/reviews")).json(); } catch (e) { return; }
  const select = $("review-list");
  const keep = select.value;
  select.innerHTML = '<option value="">(none)</option>';
  for (const r of list) {
    if (r.error) continue;
    const option = document.createElement("option");
    option.value = r.name;
    option.textContent = reviewTitle(r.name, r.events, r.states.unreviewed);
    select.append(option);
  }
  select.value = keep;
}

export async function uploadRecording() {
  const model = $("model").value;
  const params = new URLSearchParams({ model, name: page.file.name, denoise: "true" });
  status("detecting…");
  try {
    const doc = await (await api("/reviews?" + params, { method: "POST", body: page.file })).json();
    await loadReviewList();
    await showReview(doc);
  } catch (e) { status(""); hideViews(); showError(e.message); }
}

export async function openReview(name) {
  showError("");
  try { await showReview(await (await api("/reviews/" + encodeURIComponent(name))).json()); }
  catch (e) { hideViews(); showError(e.message); }
}

async function showReview(doc) {
  hideViews();
  review.doc = doc;
  review.generation += 1;
  review.selected = null;
  history.replaceState(null, "", "#review=" + encodeURIComponent(doc.name));
  $("review-list").value = doc.name;
  $("audio-view").hidden = false;
  $("viewport").scrollLeft = 0;
  setZoom(review.pxs, 0);
  const top = doc.row_hz[0] / 1000, rate = doc.sample_rate / 1000, model = doc.spectrogram_rate / 1000;
  let note = "The model hears 0–" + top.toFixed(1) + " kHz";
  if (doc.spectrogram_rate !== doc.sample_rate) {
    note += " (it resamples to " + model.toFixed(2) + " kHz; this recording is " + rate.toFixed(2) + " kHz, so " +
      "nothing above " + top.toFixed(1) + " kHz is shown or searched; the denoised audio is at " + model.toFixed(2) + " kHz)";
  }
  note += ". " + (page.reviewsKept ? "Every change is saved in the review folder at once."
    : "Reviews are not kept after the server stops: start it with --review DIR to keep them.");
  $("audio-note").textContent = note;
  $("denoised").disabled = !doc.denoised;
  const labels = new Set([...doc.classes.slice(1), ...doc.events.map((e) => e.label)]);
  $("labels").innerHTML = "";
  for (const l of labels) { const o = document.createElement("option"); o.value = l; $("labels").append(o); }
  drawFreqAxis();
  refresh();
  $("viewport").dataset.ready = "1";
  status(plural(doc.events.length, "event") + " in " + doc.duration.toFixed(1) + " s");
}

function showConflict(text) {
  $("conflict").textContent = text;
  $("conflict").hidden = !text;
}

function eventPath(e) {
  return "/reviews/" + encodeURIComponent(review.doc.name) + "/events/" + encodeURIComponent(e.id);
}

function applied(answer) {
  const events = review.doc.events, i = events.findIndex((e) => e.id === answer.event.id);
  if (i < 0) events.push(answer.event); else events[i] = answer.event;
  review.doc.revision = Math.max(review.doc.revision, answer.revision);
  if (answer.overwrote) {
    showConflict("Event #" + numberOf(answer.event) + " had been changed in another tab or by another reviewer; " +
      "your edit replaced it (the last write wins).");
  }
  refresh();
}

export async function change(e, fields) {
  try { applied(await json(eventPath(e), "PATCH", Object.assign({ seen: e.revision }, fields))); }
  catch (err) { showError(err.message); await reload(); }
}

export async function remove(e) {
  try { applied(await json(eventPath(e) + "?seen=" + e.revision, "DELETE")); } catch (err) { showError(err.message); }
}

export async function add(box) {
  const label = $("label").value || (review.doc.classes[1] || "");
  try {
    const answer = await json("/reviews/" + encodeURIComponent(review.doc.name) + "/events", "POST", Object.assign({ label }, box));
    applied(answer);
    review.selected = answer.event.id;
    refresh();
  } catch (err) { showError(err.message); }
}

export async function reload() {  // the server's state (other tabs' edits), keeping the selection and a box being dragged
  if (!review.doc || review.drag || document.hidden) return;
  try {
    const doc = await (await api("/reviews/" + encodeURIComponent(review.doc.name))).json();
    if (doc.name !== review.doc.name || doc.revision === review.doc.revision) return;
    const selected = selectedEvent(), mine = selected && selected.revision;
    review.doc.events = doc.events;
    review.doc.revision = doc.revision;
    const now = selectedEvent();
    if (now && mine !== undefined && now.revision !== mine) {
      showConflict("Event #" + numberOf(now) + " was just changed in another tab; the page shows that change.");
    }
    refresh();
  } catch (err) { /* the next poll tries again */ }
}
