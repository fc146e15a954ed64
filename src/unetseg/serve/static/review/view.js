// What is in view: zoom (pixels per second), the tiles of the spectrogram fetched for the span in view (never
// the whole recording), the time and frequency axes, and ``refresh`` after any change.

import { $, api, showError } from "../api.js";
import { drawBoxes } from "./boxes.js";
import { HEIGHT, clock, niceStep, tOf, xOf, yOf } from "./geometry.js";
import { review } from "./store.js";
import { drawTable } from "./table.js";

const TILE = 512;  // pixels per tile
const ZOOMS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];  // pixels per second

function dropTile(k, tile) {
  tile.img.remove();
  if (tile.url) URL.revokeObjectURL(tile.url);
  review.tiles.delete(k);
}

export function setZoom(pxs, anchorX) {
  const view = $("viewport");
  const anchor = tOf(view.scrollLeft + anchorX, review.pxs);
  review.pxs = pxs;
  $("zoom-value").textContent = pxs + " px/s";
  $("track").style.width = Math.ceil(review.doc.duration * pxs) + "px";
  for (const [k, tile] of review.tiles) dropTile(k, tile);
  view.scrollLeft = Math.max(0, xOf(anchor, pxs) - anchorX);
  refresh();
}

export function zoom(step, anchorX) {
  const i = ZOOMS.indexOf(review.pxs);
  const next = ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, (i < 0 ? 6 : i) + step))];
  if (next !== review.pxs) setZoom(next, anchorX === undefined ? $("viewport").clientWidth / 2 : anchorX);
}

export function inView() {  // [t0, t1] seconds in view
  const view = $("viewport");
  return [tOf(view.scrollLeft, review.pxs), Math.min(review.doc.duration, tOf(view.scrollLeft + view.clientWidth, review.pxs))];
}

export function refresh() {
  if (!review.doc) return;
  loadTiles();
  drawBoxes();
  drawTable();
  drawTimeAxis();
  const [t0, t1] = inView();
  $("view-range").textContent = "showing " + t0.toFixed(1) + "–" + t1.toFixed(1) + " s of " +
    review.doc.duration.toFixed(1) + " s (" + Math.round(100 * Math.min(1, (t1 - t0) / review.doc.duration)) +
    " %); scroll sideways for the rest";
}

function loadTiles() {
  const view = $("viewport");
  const first = Math.max(0, Math.floor(view.scrollLeft / TILE) - 1);
  const last = Math.min(Math.ceil(review.doc.duration * review.pxs / TILE) - 1,
    Math.floor((view.scrollLeft + view.clientWidth) / TILE) + 1);
  for (const [k, tile] of review.tiles) {  // the page holds a few screens of tiles, never the whole recording
    if (k < first - 4 || k > last + 4) dropTile(k, tile);
  }
  const generation = review.generation, pxs = review.pxs, name = review.doc.name;
  for (let k = first; k <= last; k++) {
    if (review.tiles.has(k)) continue;
    const img = document.createElement("img");
    img.style.left = k * TILE + "px";
    img.width = TILE;
    img.alt = "";
    const tile = { img, url: null };
    review.tiles.set(k, tile);
    $("track").append(img);
    const params = new URLSearchParams({ begin: (k * TILE / pxs).toFixed(6), seconds: (TILE / pxs).toFixed(6), width: TILE });
    api("/reviews/" + encodeURIComponent(name) + "/tile?" + params).then((r) => r.blob()).then((blob) => {
      if (review.generation !== generation || review.pxs !== pxs || review.tiles.get(k) !== tile) return;
      tile.url = URL.createObjectURL(blob);
      img.src = tile.url;
      img.dataset.loaded = "1";
    }).catch((e) => showError(e.message));
  }
}

function drawTimeAxis() {
  const canvas = $("time-axis"), view = $("viewport");
  canvas.width = view.clientWidth;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif";
  const t0 = tOf(view.scrollLeft, review.pxs), span = tOf(view.clientWidth, review.pxs);
  const step = niceStep(span, view.clientWidth / 90);
  for (let t = Math.ceil(t0 / step) * step; t <= t0 + span; t += step) {
    const x = xOf(t, review.pxs) - view.scrollLeft;
    ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, 6); ctx.stroke();
    ctx.fillText(clock(t, step, review.doc.duration), x + 2, 18);
  }
}

export function drawFreqAxis() {
  const canvas = $("freq-axis"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "right";
  const rows = review.doc.row_hz, top = rows[0], bottom = rows[rows.length - 1];
  const step = niceStep(top - bottom, 8);
  for (let hz = Math.ceil(bottom / step) * step; hz <= top; hz += step) {
    const y = yOf(hz, rows);
    ctx.beginPath(); ctx.moveTo(54, y + 0.5); ctx.lineTo(60, y + 0.5); ctx.stroke();
    ctx.fillText((hz / 1000).toFixed(step < 1000 ? 1 : 0), 51, Math.min(HEIGHT - 2, Math.max(10, y + 4)));
  }
  ctx.save(); ctx.translate(10, HEIGHT / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText("kHz", 0, 0); ctx.restore();
}
