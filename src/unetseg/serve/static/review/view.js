// What is in view: zoom (pixels per second; each recording opens fitted, or as it was left), the tiles of
// the file's spectrogram fetched for the span in view (never the whole recording), the axes, the overview
// strip of the whole recording, and ``refresh`` after any change.

import { $, api, showError, status } from "../api.js";
import { drawBoxes } from "./boxes.js";
import { HEIGHT, clock, fitPxs, niceStep, tOf, xOf, yOf } from "./geometry.js";
import { display, review, rows, visibleEvents } from "./store.js";
import { drawTable } from "./table.js";

const TILE = 512;  // pixels per tile
const MIN_PXS = 0.05, MAX_PXS = 8000;
const FIT_SECONDS = 1200;  // a longer recording opens showing its first 10 minutes (the overview shows it all)
const STATE_COLOURS = { unreviewed: "#999", accepted: "#3c3", corrected: "#f90", added: "#39f", deleted: "#555" };

function dropTile(k, tile) {
  tile.img.remove();
  if (tile.url) URL.revokeObjectURL(tile.url);
  review.tiles.delete(k);
}

export function dropTiles() { for (const [k, tile] of review.tiles) dropTile(k, tile); }

function viewKey() { return "unetseg-view-" + review.doc.name; }

export function keepView() {  // this recording's zoom and place, kept in this browser across reloads
  if (!review.doc) return;
  localStorage.setItem(viewKey(), JSON.stringify({ pxs: review.pxs, left: tOf($("viewport").scrollLeft, review.pxs) }));
}

export function fit() {  // the whole recording in view
  setZoom(fitPxs(review.doc.duration, $("viewport").clientWidth), 0);
  $("viewport").scrollLeft = 0;
  refresh();
}

export function openView() {  // as this recording was left, else the whole recording in view
  let kept = null;
  try { kept = JSON.parse(localStorage.getItem(viewKey()) || "null"); } catch (e) { kept = null; }
  dropTiles();
  if (kept && kept.pxs >= MIN_PXS && kept.pxs <= MAX_PXS) {
    setZoom(kept.pxs, 0);
    $("viewport").scrollLeft = xOf(kept.left || 0, kept.pxs);
  } else if (review.doc.duration <= FIT_SECONDS) {
    fit();
  } else {
    setZoom(fitPxs(FIT_SECONDS / 2, $("viewport").clientWidth), 0);
    $("viewport").scrollLeft = 0;
  }
}

function shownPxs(pxs) { return pxs >= 10 ? Math.round(pxs) : pxs >= 1 ? pxs.toFixed(1) : pxs.toFixed(2); }

export function setZoom(pxs, anchorX) {
  const viewport = $("viewport");
  const anchor = tOf(viewport.scrollLeft + anchorX, review.pxs);
  review.pxs = Math.min(MAX_PXS, Math.max(MIN_PXS, pxs));
  $("zoom-value").textContent = shownPxs(review.pxs) + " px/s";
  $("zoom-value").dataset.pxs = review.pxs;  // exact, for scripts
  $("track").style.width = Math.ceil(review.doc.duration * review.pxs) + "px";
  dropTiles();
  viewport.scrollLeft = Math.max(0, xOf(anchor, review.pxs) - anchorX);
  refresh();
}

export function zoom(step, anchorX) {  // twice (or half) the pixels per second
  setZoom(review.pxs * Math.pow(2, step), anchorX === undefined ? $("viewport").clientWidth / 2 : anchorX);
}

export function inView() {  // [t0, t1] seconds in view
  const viewport = $("viewport");
  return [tOf(viewport.scrollLeft, review.pxs),
    Math.min(review.doc.duration, tOf(viewport.scrollLeft + viewport.clientWidth, review.pxs))];
}

export function refresh() {
  if (!review.doc) return;
  loadTiles();
  drawBoxes();
  drawTable();
  drawTimeAxis();
  drawOverview();
  const [t0, t1] = inView();
  $("view-range").textContent = "showing " + t0.toFixed(1) + "–" + t1.toFixed(1) + " s of " +
    review.doc.duration.toFixed(1) + " s (" + Math.round(100 * Math.min(1, (t1 - t0) / review.doc.duration)) + " %)";
  keepView();
}

export function applyLook() {  // brightness and contrast: the browser's filter on the tiles, nothing refetched
  $("track").style.filter = "brightness(" + $("brightness").value + "%) contrast(" + $("contrast").value + "%)";
}

function loadTiles() {
  const viewport = $("viewport");
  const first = Math.max(0, Math.floor(viewport.scrollLeft / TILE) - 1);
  const last = Math.min(Math.ceil(review.doc.duration * review.pxs / TILE) - 1,
    Math.floor((viewport.scrollLeft + viewport.clientWidth) / TILE) + 1);
  for (const [k, tile] of review.tiles) {  // the page holds a few screens of tiles, never the whole recording
    if (k < first - 4 || k > last + 4) dropTile(k, tile);
  }
  const generation = review.generation, pxs = review.pxs, name = review.doc.name, look = display();
  for (let k = first; k <= last; k++) {
    if (review.tiles.has(k)) continue;
    const img = document.createElement("img");
    img.style.left = k * TILE + "px";
    img.width = TILE;
    img.alt = "";
    const tile = { img, url: null };
    review.tiles.set(k, tile);
    $("track").append(img);
    const params = new URLSearchParams({ begin: (k * TILE / pxs).toFixed(6), seconds: (TILE / pxs).toFixed(6),
      width: TILE, view: "file", fft: look.fft, colours: look.colours });
    api("/reviews/" + encodeURIComponent(name) + "/tile?" + params).then((r) => r.blob()).then((blob) => {
      if (review.generation !== generation || review.pxs !== pxs || review.tiles.get(k) !== tile) return;
      tile.url = URL.createObjectURL(blob);
      img.src = tile.url;
      img.dataset.loaded = "1";
    }).catch((e) => showError(e.message));
  }
}

function drawTimeAxis() {  // ticks up to the file's end, not past it
  const canvas = $("time-axis"), viewport = $("viewport");
  canvas.width = viewport.clientWidth;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif";
  const [t0, t1] = inView(), span = tOf(viewport.clientWidth, review.pxs);
  const step = niceStep(span, viewport.clientWidth / 90);
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
    const x = xOf(t, review.pxs) - viewport.scrollLeft;
    ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, 6); ctx.stroke();
    ctx.fillText(clock(t, step, review.doc.duration), x + 2, 18);
  }
}

export function drawFreqAxis() {
  const canvas = $("freq-axis"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "right";
  const r = rows(), top = r[0], bottom = r[r.length - 1];
  const step = niceStep(top - bottom, 8);
  for (let hz = Math.ceil(bottom / step) * step; hz <= top; hz += step) {
    const y = yOf(hz, r);
    ctx.beginPath(); ctx.moveTo(54, y + 0.5); ctx.lineTo(60, y + 0.5); ctx.stroke();
    ctx.fillText((hz / 1000).toFixed(step < 1000 ? 1 : 0), 51, Math.min(HEIGHT - 2, Math.max(10, y + 4)));
  }
  ctx.save(); ctx.translate(10, HEIGHT / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText("kHz", 0, 0); ctx.restore();
}

async function loadOverview() {
  const doc = review.doc, width = Math.max(16, Math.min(4096, $("overview").clientWidth || 800));
  review.overview = { width, db: null };
  try {
    const line = await (await api("/reviews/" + encodeURIComponent(doc.name) + "/overview?width=" + width)).json();
    if (review.doc === doc || (review.doc && review.doc.name === doc.name)) { review.overview.db = line.db; drawOverview(); }
  } catch (e) { status("no overview: " + e.message); }
}

export function drawOverview() {  // the whole recording: loudness, events by state, and the span in view
  const canvas = $("overview"), doc = review.doc;
  canvas.width = canvas.clientWidth || 800;
  if (!review.overview) { loadOverview(); }
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.fillStyle = "#111"; ctx.fillRect(0, 0, w, h);
  const db = review.overview && review.overview.db;
  if (db) {
    ctx.strokeStyle = "#7ab"; ctx.beginPath();
    db.forEach((v, i) => { const x = i * w / db.length, y = h - 12 - (h - 14) * Math.max(0, v + 90) / 90; if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
  }
  for (const e of visibleEvents()) {  // a tick per event below the line, coloured by its state
    ctx.fillStyle = STATE_COLOURS[e.state] || "#999";
    ctx.fillRect(Math.floor(e.begin / doc.duration * w), h - 10, Math.max(1, (e.end - e.begin) / doc.duration * w), 10);
  }
  const [t0, t1] = inView();
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
  ctx.strokeRect(t0 / doc.duration * w + 1, 1, Math.max(3, (t1 - t0) / doc.duration * w - 2), h - 2);
}

export function overviewTo(ev) {  // a click or drag on the overview centres the view there
  if (!review.doc) return;
  const rect = $("overview").getBoundingClientRect(), viewport = $("viewport");
  const t = (ev.clientX - rect.left) / rect.width * review.doc.duration;
  viewport.scrollLeft = Math.max(0, xOf(t, review.pxs) - viewport.clientWidth / 2);
  refresh();
}
