// The open review: its document (events with their states, layers, history), the selection, what is shown
// (display settings, filters, the score threshold), and the edits sent to the server.

import { $, api, json, plural, showError, status } from "../api.js";
import { hideViews, page } from "../page.js";
import { HEIGHT, fileRows, numberOf, sortEvents } from "./geometry.js";
import { resumeFind } from "./find.js";
import { drawFreqAxis, openView, refresh } from "./view.js";

export const review = { doc: null, pxs: 100, tiles: new Map(), selected: null, drag: null, drawing: null,
  playing: null, generation: 0, drawMode: false, sort: { key: "begin", up: true }, overview: null };
const PALETTE = [[255, 200, 0], [0, 220, 255], [255, 80, 200], [120, 255, 90], [255, 140, 60], [170, 140, 255]];

export function display() {  // the spectrogram's display settings (kept in this browser)
  return { fft: Number($("fft").value), colours: $("colours").value };
}

export function rows() { return fileRows(review.doc.sample_rate / 2, display().fft); }

export function view() { return { pxs: review.pxs, rows: rows(), height: HEIGHT, band: review.doc.model_band }; }

export function sortedEvents() { return sortEvents(review.doc.events); }

export { numberOf };

export function selectedEvent() { return review.doc && review.doc.events.find((e) => e.id === review.selected); }

export function minScore() { return Number($("min-score").value); }

export function shown(e) {  // whether an event passes the threshold and the table's filters (deleted ones: drawn faint)
  const state = $("filter-state").value, label = $("filter-label").value;
  if (e.score != null && e.score < minScore()) return false;
  if (state && e.state !== state) return false;
  return !label || e.label === label;
}

export function visibleEvents() { return review.doc.events.filter(shown); }

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

export async function uploadRecording() {  // a failed upload leaves the open review as it was
  const detect = $("detect").checked;
  const params = new URLSearchParams({ name: page.file.name, denoise: detect ? "true" : "false",
    detect: detect ? "true" : "false" });
  if (detect) params.set("model", $("model").value);
  status(detect ? "detecting…" : "opening…");
  try {
    const doc = await (await api("/reviews?" + params, { method: "POST", body: page.file })).json();
    await loadReviewList();
    await showReview(doc);
    if (doc.existing) status("this recording was reviewed before: its review " + doc.name + " is open");
  } catch (e) { status(""); showError(e.message); }
}

export async function openRecording(path) {  // a recording of the server's folder (serve --recordings)
  const detect = $("detect").checked;
  const params = new URLSearchParams({ path, detect: detect ? "true" : "false" });
  if (detect) params.set("model", $("model").value);
  status(detect ? "detecting…" : "opening…");
  try {
    const doc = await (await api("/recordings/review?" + params, { method: "POST" })).json();
    await loadReviewList();
    await showReview(doc);
  } catch (e) { status(""); showError(e.message); }
}

export async function openReview(name) {
  showError("");
  try { await showReview(await (await api("/reviews/" + encodeURIComponent(name))).json()); }
  catch (e) { hideViews(); showError(e.message); }
}

async function showReview(doc) {
  hideViews();
  showError("");
  review.doc = doc;
  review.generation += 1;
  review.selected = null;
  review.overview = null;
  history.replaceState(null, "", "#review=" + encodeURIComponent(doc.name));
  $("review-list").value = doc.name;
  $("audio-view").hidden = false;
  $("min-score").value = doc.view.min_score;
  $("min-score-value").textContent = Number(doc.view.min_score).toFixed(2);
  const band = doc.model_band, khz = (v) => (v / 1000).toFixed(1);
  let note = "The spectrogram shows the file's whole band, 0–" + khz(doc.sample_rate / 2) + " kHz (" +
    (doc.sample_rate / 1000).toFixed(2) + " kHz recording)";
  note += doc.model && doc.model.name ? "; the model " + doc.model.name + " hears " + khz(band[0]) + "–" + khz(band[1]) +
    " kHz (the band between the marks), and an event with no band of its own spans that band"
    : "; no model has looked at it: draw boxes, then \"find the rest\"";
  if (doc.model && doc.model.name && doc.spectrogram_rate !== doc.sample_rate) {
    note += " (it resamples to " + (doc.spectrogram_rate / 1000).toFixed(2) + " kHz; the denoised audio is at that rate)";
  }
  if (doc.model && doc.model.name && !doc.events.length) {
    note += ". The model found no event in this recording: nothing it hears in its band rose above its " +
      "threshold (a recording outside the band or the kind of sound it learned finds nothing); draw a few boxes " +
      "and use \"find the rest\", or open it with another model";
  }
  note += ". " + (page.reviewsKept ? "Every change is saved in the review folder at once."
    : "Reviews are not kept after the server stops: start it with --review DIR to keep them.");
  $("audio-note").textContent = note;
  $("denoised").disabled = !doc.denoised;
  labelsChanged();
  openView();
  drawFreqAxis();
  refresh();
  $("viewport").dataset.ready = "1";
  status(counted());
  resumeFind();
}

function counted() { return plural(review.doc.events.length, "event") + " in " + review.doc.duration.toFixed(1) + " s"; }

export function labelsChanged() {  // the label list (typing) and the label filter follow the review's labels
  const doc = review.doc;
  const labels = [...new Set([...doc.classes.slice(1), ...doc.events.map((e) => e.label)])].filter((l) => l);
  $("labels").innerHTML = "";
  for (const l of labels) { const o = document.createElement("option"); o.value = l; $("labels").append(o); }
  const filter = $("filter-label"), keep = filter.value;
  filter.innerHTML = '<option value="">any label</option>';
  for (const l of labels) { const o = document.createElement("option"); o.value = l; o.textContent = l; filter.append(o); }
  filter.value = labels.includes(keep) ? keep : "";
}

export function showConflict(text) {
  $("conflict").textContent = text;
  $("conflict").hidden = !text;
}

function base() { return "/reviews/" + encodeURIComponent(review.doc.name); }

function eventPath(e) { return base() + "/events/" + encodeURIComponent(e.id); }

function applied(answer) {
  const events = review.doc.events, i = events.findIndex((e) => e.id === answer.event.id);
  if (i < 0) events.push(answer.event); else events[i] = answer.event;
  review.doc.revision = Math.max(review.doc.revision, answer.revision);
  review.doc.undo += 1;
  review.doc.redo = 0;
  if (answer.overwrote) {
    showConflict("Event #" + numberOf(answer.event) + " had been changed in another tab or by another reviewer; " +
      "your edit replaced it (the last write wins).");
  }
  labelsChanged();
  refresh();
  status(counted());
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
    const answer = await json(base() + "/events", "POST", Object.assign({ label }, box));
    applied(answer);
    review.selected = answer.event.id;
    refresh();
  } catch (err) { showError(err.message); }
}

export function replaced(doc) {  // the whole review from the server (undo, redo, a layer, found events)
  review.doc = doc;
  if (!selectedEvent()) review.selected = null;
  labelsChanged();
  refresh();
}

export async function undoRedo(which) {
  try {
    replaced(await json(base() + "/" + which, "POST"));
    status(which === "undo" ? "undone" : "redone");
  } catch (err) { status(err.message); }
}

export async function saveThreshold() {
  try { await json(base(), "PATCH", { min_score: minScore() }); } catch (err) { showError(err.message); }
}

export async function loadTable(file, as) {  // another person's table: a reference layer, or the review's events
  const params = new URLSearchParams({ table: file.name, as });
  try {
    replaced(await (await api(base() + "/layers?" + params, { method: "POST", body: file })).json());
    status(as === "reference" ? "reference layer " + file.name + " shown" : "events of " + file.name + " added");
  } catch (err) { showError(err.message); }
}

export async function deleteReview() {
  const name = review.doc.name;
  if (!confirm("Take the review " + name + " out of the list? Its folder moves to .deleted in the review folder.")) return;
  try {
    await json("/reviews/" + encodeURIComponent(name), "DELETE");
    review.doc = null;
    hideViews();
    history.replaceState(null, "", "#");
    await loadReviewList();
    status("review " + name + " deleted (moved to .deleted)");
  } catch (err) { showError(err.message); }
}

export async function reload() {  // the server's state (other tabs' edits), keeping the selection and a box being dragged
  if (!review.doc || review.drag || document.hidden) return;
  try {
    const doc = await (await api(base())).json();
    if (doc.name !== review.doc.name || doc.revision === review.doc.revision) return;
    const selected = selectedEvent(), mine = selected && selected.revision;
    replaced(doc);
    const now = selectedEvent();
    if (now && mine !== undefined && now.revision !== mine) {
      showConflict("Event #" + numberOf(now) + " was just changed in another tab; the page shows that change.");
    }
  } catch (err) { /* the next poll tries again */ }
}
