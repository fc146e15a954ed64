// The unetseg page: no framework, no CDN, no build step; ES modules that talk to the same API a program uses
// (see /docs). This module wires the page's controls to them and starts it.

import { $ } from "./api.js";
import { downloadMask, downloadPolygons, drawOverlay, objectAt, predictImage } from "./images.js";
import { onKey } from "./keys.js";
import { exportObjects, reviewObject, selectObject } from "./objects.js";
import { loadModels, page, run } from "./page.js";
import { onDown, onMove, onUp } from "./review/boxes.js";
import { exportTable, follow, playSelection, playView, stopped } from "./review/player.js";
import { change, openReview, reload, remove, selectedEvent } from "./review/store.js";
import { select } from "./review/table.js";
import { refresh, zoom } from "./review/view.js";

// a file, a model, a review
$("file").addEventListener("change", (e) => { if (e.target.files[0]) run(e.target.files[0]); e.target.value = ""; });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});
$("model").addEventListener("change", () => { if (page.file) run(page.file); });
$("review-list").addEventListener("change", () => { if ($("review-list").value) openReview($("review-list").value); });
$("token").addEventListener("change", () => { localStorage.setItem("unetseg-token", $("token").value); loadModels(); });

// images and their objects
$("opacity").addEventListener("input", drawOverlay);
let pending = null;
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  clearTimeout(pending);
  pending = setTimeout(predictImage, 250);
});
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
  if (ev.ctrlKey) { zoom(ev.deltaY < 0 ? 1 : -1, ev.clientX - $("boxes").getBoundingClientRect().left); return; }
  $("viewport").scrollLeft += ev.deltaX || ev.deltaY;
}, { passive: false });
$("zoom-in").addEventListener("click", () => zoom(1));
$("zoom-out").addEventListener("click", () => zoom(-1));
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
$("events").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-id]");
  if (row) select(row.dataset.id, true);
});

document.addEventListener("keydown", onKey);
setInterval(reload, 4000);  // other tabs' edits
loadModels();
