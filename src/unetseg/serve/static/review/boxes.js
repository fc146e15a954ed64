// The boxes over the spectrogram: drawn on their canvas (numbered, coloured by label, the tag by state,
// dashed until reviewed, deleted ones faint), reference layers (grey, never edited), the model's band; and
// moved, resized and drawn with the mouse. Drawing is its own tool (the draw button or key w, or Shift+drag),
// so a drag over a box that spans the band draws rather than moves it. A drag redraws the boxes only; the
// table follows on release.

import { $ } from "../api.js";
import { HEIGHT, boxOf, hit, hzOf, numberOf, round, tOf, xOf, yOf } from "./geometry.js";
import { add, change, colourOf, review, rows, shown, view } from "./store.js";
import { refresh } from "./view.js";

const CURSORS = { move: "move", l: "ew-resize", r: "ew-resize", t: "ns-resize", b: "ns-resize", lt: "nwse-resize",
  rb: "nwse-resize", rt: "nesw-resize", lb: "nesw-resize" };
const TAGS = { unreviewed: "rgba(40,40,40,0.85)", accepted: "rgba(20,110,20,0.9)", corrected: "rgba(160,90,0,0.9)",
  added: "rgba(20,80,170,0.9)" };

function drawBand(ctx, width) {  // the model's band: shade what it does not hear
  const band = review.doc.model_band, r = rows();
  if (!band || !review.doc.model || !review.doc.model.name) return;
  const top = yOf(band[1], r), bottom = yOf(band[0], r);
  ctx.fillStyle = "rgba(0,0,0,0.35)";
  ctx.fillRect(0, 0, width, top);
  ctx.fillRect(0, bottom, width, HEIGHT - bottom);
  ctx.strokeStyle = "rgba(255,255,255,0.5)"; ctx.setLineDash([2, 4]); ctx.lineWidth = 1;
  for (const y of [top, bottom]) { ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(width, y + 0.5); ctx.stroke(); }
  ctx.setLineDash([]);
}

function drawLayers(ctx, left, right) {
  const geometry = view();
  ctx.font = "11px sans-serif";
  for (const layer of review.doc.layers || []) {
    if (!$("show-layers").checked) return;
    for (const e of layer.events) {
      const b = boxOf(e, geometry);
      if (b.x1 < left || b.x0 > right) continue;
      ctx.strokeStyle = "rgba(230,230,230,0.9)"; ctx.lineWidth = 1; ctx.setLineDash([2, 2]);
      ctx.strokeRect(b.x0 - left, b.y0, Math.max(2, b.x1 - b.x0), Math.max(2, b.y1 - b.y0));
      ctx.setLineDash([]);
      ctx.fillStyle = "rgba(230,230,230,0.9)";
      ctx.fillText(e.label || "", b.x0 - left + 2, Math.min(HEIGHT - 2, b.y1 + 11));
    }
  }
}

export function drawBoxes() {
  const canvas = $("boxes"), viewport = $("viewport"), geometry = view();
  canvas.width = viewport.clientWidth; canvas.height = HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const left = viewport.scrollLeft, right = left + viewport.clientWidth;
  drawBand(ctx, canvas.width);
  drawLayers(ctx, left, right);
  const tags = [];
  const events = review.doc.events.filter(shown).sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (const e of events) {
    const b = boxOf(e, geometry);
    if (b.x1 < left || b.x0 > right) continue;
    const c = colourOf(e.label), selected = review.selected === e.id, w = Math.max(2, b.x1 - b.x0);
    if (e.state === "deleted") {  // still there to see (and to restore), never in the way
      ctx.strokeStyle = "rgba(160,160,160,0.6)"; ctx.lineWidth = 1; ctx.setLineDash([1, 3]);
      ctx.strokeRect(b.x0 - left, b.y0, w, Math.max(2, b.y1 - b.y0));
      ctx.setLineDash([]);
      if (!selected) continue;
    }
    if (selected) {  // the selected box: a white halo and a light fill
      ctx.fillStyle = "rgba(255,255,255,0.18)";
      ctx.fillRect(b.x0 - left, b.y0, b.x1 - b.x0, b.y1 - b.y0);
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 5;
      ctx.strokeRect(b.x0 - left - 2, b.y0 - 2, w + 4, Math.max(2, b.y1 - b.y0) + 4);
    }
    ctx.strokeStyle = "rgb(" + c.join(",") + ")";
    ctx.lineWidth = selected ? 3 : 2;
    ctx.setLineDash(e.state === "unreviewed" ? [6, 3] : []);
    ctx.strokeRect(b.x0 - left, b.y0, w, Math.max(2, b.y1 - b.y0));
    ctx.setLineDash([]);
    // a tag: number, label and score on the state's colour; moved down where tags would overlap
    const mark = { accepted: " ✓", corrected: " ✎", added: " +", deleted: " ✗" }[e.state] || "";
    const n = numberOf(e);
    const text = n + " " + (e.label || "?") + (e.score == null ? "" : " " + e.score.toFixed(2)) + mark;
    ctx.font = "bold 12px sans-serif";
    const full = ctx.measureText(text).width + 6;
    const tag = full <= Math.max(b.x1 - b.x0, 40) || selected ? text : String(n) + mark;  // the table has the rest
    const tw = ctx.measureText(tag).width + 6;
    let x = Math.max(0, b.x0 - left), y = Math.max(0, b.y0 - 16);
    while (tags.some((t) => x < t.x + t.w && t.x < x + tw && y < t.y + 15 && t.y < y + 15) && y < HEIGHT - 15) y += 15;
    tags.push({ x, y, w: tw });
    ctx.fillStyle = TAGS[e.state] || TAGS.unreviewed;
    ctx.fillRect(x, y, tw, 15);
    ctx.fillStyle = selected ? "#fff" : "rgb(" + c.join(",") + ")";
    ctx.fillText(tag, x + 3, y + 12);
  }
  if (review.drawing) {
    const d = review.drawing;
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.setLineDash([4, 2]);
    ctx.strokeRect(Math.min(d.x0, d.x1) - left, Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
    ctx.setLineDash([]);
  }
  if (review.playing) {
    const x = xOf(review.playing.begin + $("player").currentTime, review.pxs) - left;
    ctx.strokeStyle = "#f33"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, HEIGHT); ctx.stroke();
  }
}

function point(ev) {
  const rect = $("boxes").getBoundingClientRect();
  return { x: ev.clientX - rect.left + $("viewport").scrollLeft, y: Math.min(HEIGHT, Math.max(0, ev.clientY - rect.top)) };
}

function drawing(ev) { return review.drawMode || ev.shiftKey; }

function grab(p) { return hit(review.doc.events.filter(shown), review.selected, p.x, p.y, view()); }

export function setDrawMode(on) {
  review.drawMode = on;
  $("draw-mode").classList.toggle("on", on);
  $("draw-mode").setAttribute("aria-pressed", on ? "true" : "false");
  $("boxes").style.cursor = on ? "crosshair" : "default";
}

export function onDown(ev) {
  if (!review.doc || ev.button !== 0) return;
  $("viewport").focus();
  const p = point(ev), found = drawing(ev) ? null : grab(p);
  if (found) {
    review.selected = found.event.id;
    review.drag = { event: found.event, mode: found.mode, start: p, box: boxOf(found.event, view()),
      original: Object.assign({}, found.event), moved: false };
  } else {
    review.drawing = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  }
  refresh();
  ev.preventDefault();
}

export function onMove(ev) {
  if (!review.doc) return;
  const p = point(ev);
  if (review.drawing) { review.drawing.x1 = p.x; review.drawing.y1 = p.y; drawBoxes(); return; }
  const d = review.drag;
  if (!d) {
    const found = drawing(ev) ? null : grab(p);
    $("boxes").style.cursor = found ? CURSORS[found.mode] : "crosshair";
    return;
  }
  const dx = p.x - d.start.x, dy = p.y - d.start.y;
  if (Math.abs(dx) + Math.abs(dy) < 3 && !d.moved) return;
  d.moved = true;
  const b = Object.assign({}, d.box), e = d.event, o = d.original, r = rows();
  if (d.mode === "move") { b.x0 += dx; b.x1 += dx; b.y0 += dy; b.y1 += dy; }
  if (d.mode.includes("l")) b.x0 = Math.min(b.x1 - 2, b.x0 + dx);
  if (d.mode.includes("r")) b.x1 = Math.max(b.x0 + 2, b.x1 + dx);
  if (d.mode.includes("t")) b.y0 = Math.min(b.y1 - 2, b.y0 + dy);
  if (d.mode.includes("b")) b.y1 = Math.max(b.y0 + 2, b.y1 + dy);
  const span = o.end - o.begin, duration = review.doc.duration;
  e.begin = Math.max(0, tOf(b.x0, review.pxs));
  e.end = Math.min(duration, tOf(b.x1, review.pxs));
  if (d.mode === "move") {
    if (e.begin === 0) e.end = Math.min(duration, span);
    if (e.end === duration) e.begin = Math.max(0, duration - span);
  }
  if (o.low != null) {
    if (d.mode === "move") {
      const h = d.box.y1 - d.box.y0;
      b.y0 = Math.min(HEIGHT - h, Math.max(0, b.y0)); b.y1 = b.y0 + h;
    }
    e.high = hzOf(Math.max(0, b.y0), r);
    e.low = hzOf(Math.min(HEIGHT, b.y1), r);
  }
  drawBoxes();
}

export async function onUp() {
  if (review.drawing) {
    const d = review.drawing, r = rows();
    review.drawing = null;
    if (Math.abs(d.x1 - d.x0) < 4 || Math.abs(d.y1 - d.y0) < 4) { review.selected = null; refresh(); return; }
    const begin = tOf(Math.min(d.x0, d.x1), review.pxs);
    const end = Math.min(review.doc.duration, tOf(Math.max(d.x0, d.x1), review.pxs));
    await add({ begin: round(Math.max(0, begin), 4), end: round(end, 4),
      low: round(Math.max(0, hzOf(Math.max(d.y0, d.y1), r)), 1), high: round(hzOf(Math.min(d.y0, d.y1), r), 1) });
    return;
  }
  const d = review.drag;
  if (!d) return;
  review.drag = null;
  if (!d.moved) { refresh(); return; }
  const e = d.event, fields = { begin: round(e.begin, 4), end: round(e.end, 4) };
  if (d.original.low != null) { fields.low = round(e.low, 1); fields.high = round(e.high, 1); }
  Object.assign(e, d.original);  // the server's answer sets the new box
  await change(e, fields);
}
