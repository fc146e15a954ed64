// The unetseg page: no framework, no CDN, no build step; ES modules that talk to the same API a program uses
// (see /docs). This module wires the page's controls to them and starts it.

import { $ } from "./api.js";
import { downloadMask, downloadPolygons, drawOverlay, objectAt, predictImage } from "./images.js";
import { onKey } from "./keys.js";
import { exportObjects, objects, reviewObject, selectObject } from "./objects.js";
import { loadModels, page, run } from "./page.js";
import { onDown, onMove, onUp, setDrawMode } from "./review/boxes.js";
import { cancelFind, findRest } from "./review/find.js";
import { exportTable, follow, playSelection, playView, stopped } from "./review/player.js";
import { change, deleteReview, loadTable, openRecording, openReview, reload, remove, review, saveThreshold,
  selectedEvent, undoRedo } from "./review/store.js";
import { nextUnreviewed, select, sortBy } from "./review/table.js";
import { applyLook, drawFreqAxis, dropTiles, fit, overviewTo, refresh, zoom } from "./review/view.js";

// a file, a model, a review
const isTable = (file) => /\.(txt|csv|tsv)$/i.test(file.name);
function openFile(file) {  // an image or a recording runs; a table is drawn over the open review
  if (!isTable(file)) { run(file); return; }
  if (review.doc && !$("audio-view").hidden) { loadTable(file, "reference"); return; }
  showError(file.name + ": a table (Raven, Audacity or CSV); open a recording first, then drop the table on the " +
    "page to draw it as a reference layer");
}
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) openFile(file);
  e.target.value = "";
});
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]);
});
$("model").addEventListener("change", () => { if (page.file) run(page.file); });
$("review-list").addEventListener("change", () => { if ($("review-list").value) openReview($("review-list").value); });
$("recordings").addEventListener("change", () => { if ($("recordings").value) openRecording($("recordings").value); });
$("token").addEventListener("change", () => { localStorage.setItem("unetseg-token", $("token").value); loadModels(); });

// images and their objects
$("opacity").addEventListener("input", drawOverlay);
let pending = null, threshold = $("threshold").value;
$("threshold").addEventListener("change", () => {  // a new threshold gives new objects: a review of them is lost
  const reviewed = objects.list.filter((o) => o.state !== "unreviewed").length;
  if (reviewed && !confirm("A new threshold finds the objects again: the review of " + reviewed +
      " object(s) is lost (download it first with \"objects JSON\"). Go on?")) {
    $("threshold").value = threshold;
    $("threshold-value").textContent = Number(threshold).toFixed(2);
    return;
  }
  threshold = $("threshold").value;
  clearTimeout(pending);
  pending = setTimeout(predictImage, 100);
});
$("threshold").addEventListener("input", () => { $("threshold-value").textContent = Number($("threshold").value).toFixed(2); });
$("download-mask").addEventListener("click", downloadMask);
$("download-polygons").addEventListener("click", downloadPolygons);
$("overlay").addEventListener("click", (ev) => selectObject(objectAt(ev)));
$("objects").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-index]");
  if (row) selectObject(Number(row.dataset.index));
});
$("object-class").addEventListener("change", () => reviewObject({ class: Number($("object-class").value) }));
$("download-objects").addEventListener("click", exportObjects);

// the review of a recording
$("viewport").addEventListener("scroll", refresh);
window.addEventListener("resize", refresh);
$("boxes").addEventListener("mousedown", onDown);
window.addEventListener("mousemove", onMove);
window.addEventListener("mouseup", onUp);
$("boxes").addEventListener("wheel", (ev) => {
  ev.preventDefault();
  if (ev.ctrlKey) { zoom(ev.deltaY < 0 ? 0.25 : -0.25, ev.clientX - $("boxes").getBoundingClientRect().left); return; }
  $("viewport").scrollLeft += ev.deltaX || ev.deltaY;
}, { passive: false });
$("zoom-in").addEventListener("click", () => zoom(1));
$("zoom-out").addEventListener("click", () => zoom(-1));
$("fit").addEventListener("click", fit);
$("draw-mode").addEventListener("click", () => setDrawMode(!review.drawMode));
$("undo").addEventListener("click", () => undoRedo("undo"));
$("redo").addEventListener("click", () => undoRedo("redo"));
$("find").addEventListener("click", findRest);
$("find-cancel").addEventListener("click", cancelFind);
$("next-unreviewed").addEventListener("click", nextUnreviewed);
$("delete-review").addEventListener("click", deleteReview);
$("brightness").addEventListener("input", applyLook);
$("contrast").addEventListener("input", applyLook);
for (const id of ["colours", "fft"]) {
  $(id).addEventListener("change", () => {
    localStorage.setItem("unetseg-" + id, $(id).value);
    if (review.doc) { dropTiles(); drawFreqAxis(); refresh(); }
  });
  if (localStorage.getItem("unetseg-" + id)) $(id).value = localStorage.getItem("unetseg-" + id);
}
let scoreSave = null;
$("min-score").addEventListener("input", () => {
  $("min-score-value").textContent = Number($("min-score").value).toFixed(2);
  refresh();
  clearTimeout(scoreSave);
  scoreSave = setTimeout(saveThreshold, 300);  // kept with the review
});
$("filter-state").addEventListener("change", refresh);
$("show-layers").addEventListener("change", refresh);
$("filter-label").addEventListener("change", refresh);
$("table-file").addEventListener("change", (e) => {
  if (e.target.files[0] && review.doc) loadTable(e.target.files[0], $("table-as").value);
  e.target.value = "";
});
$("events").querySelector("thead").addEventListener("click", (ev) => {
  const th = ev.target.closest("th[data-key]");
  if (th) sortBy(th.dataset.key);
});
let overviewDrag = false;
$("overview").addEventListener("mousedown", (ev) => { overviewDrag = true; overviewTo(ev); });
window.addEventListener("mousemove", (ev) => { if (overviewDrag) overviewTo(ev); });
window.addEventListener("mouseup", () => { overviewDrag = false; });
// a click on a button leaves the keys to the spectrogram (a button with the focus would take space and Enter)
$("audio-view").addEventListener("click", (ev) => { if (ev.target.closest("button")) $("viewport").focus({ preventScroll: true }); });
$("play-selection").addEventListener("click", () => playSelection($("band-pass").checked));
$("play-view").addEventListener("click", playView);
$("player").addEventListener("play", () => requestAnimationFrame(follow));
$("player").addEventListener("ended", stopped);
$("export-raven").addEventListener("click", () => exportTable("raven"));
$("export-audacity").addEventListener("click", () => exportTable("audacity"));
$("export-csv").addEventListener("click", () => exportTable("csv"));
$("accept").addEventListener("click", () => { const e = selectedEvent(); if (e) change(e, { state: "accepted" }); });
$("delete").addEventListener("click", () => { const e = selectedEvent(); if (e) remove(e); });
$("restore").addEventListener("click", () => { const e = selectedEvent(); if (e) change(e, { state: "unreviewed" }); });
$("label").addEventListener("change", () => {
  const e = selectedEvent();
  if (e && $("label").value.trim() !== e.label) change(e, { label: $("label").value.trim() });
});
$("label").addEventListener("keydown", (ev) => {
  if (ev.key !== "Enter" && ev.key !== "Escape") return;
  ev.stopPropagation();  // the key is the label's, not a shortcut for the box (Enter would accept it too)
  $("viewport").focus();
});
$("events").querySelector("tbody").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-id]");
  if (row) { select(row.dataset.id, true); $("viewport").focus({ preventScroll: true }); }
});

document.addEventListener("keydown", onKey);
window.addEventListener("hashchange", () => {  // a link to another review (#review=NAME) opens it
  const wanted = new URLSearchParams(location.hash.slice(1)).get("review");
  if (wanted && (!review.doc || review.doc.name !== wanted)) openReview(wanted);
});
setInterval(reload, 4000);  // other tabs' edits
loadModels();
