// The unetseg page: no framework, no CDN; talks to the same API a program uses (see /docs).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], file: null, result: null, imageUrl: null, maskImage: null };

function token() { return localStorage.getItem("unetseg-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).detail || message; } catch (e) { /* not JSON */ }
    if (typeof message !== "string") message = JSON.stringify(message);
    throw new Error(message);
  }
  return response;
}

async function json(path, method, body) {
  const options = { method, headers: { "Content-Type": "application/json" } };
  if (body !== undefined) options.body = JSON.stringify(body);
  return (await api(path, options)).json();
}

function showError(message) {
  $("error").textContent = message ? "error: " + message : "";
  $("error").hidden = !message;
}

function status(text) { $("status").textContent = text; }

function plural(n, word, many) { return n + " " + (n === 1 ? word : many || word + "s"); }

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function current() { return state.models.find((m) => m.name === $("model").value); }

async function loadModels() {
  const health = await (await fetch("/health")).json();
  $("token-label").hidden = !health.auth;
  $("token").value = token();
  state.reviewsKept = health.reviews === "kept";
  try {
    state.models = await (await api("/models")).json();
  } catch (e) { showError(e.message); return; }
  $("model").innerHTML = "";
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name + " (" + m.kind + ", " + plural(m.classes.length, "class", "classes") + ")";
    $("model").append(option);
  }
  status(plural(state.models.length, "model") + " loaded");
  await loadReviewList();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("review");
  if (wanted) await openReview(wanted);
}

function isAudio(file) {
  return file.type.startsWith("audio/") || /\.(wav|flac|ogg|mp3|aiff?|opus)$/i.test(file.name);
}

function hideViews() {
  $("image-view").hidden = true;
  $("audio-view").hidden = true;
  state.result = null;
}

async function run(file) {
  state.file = file;
  showError("");
  const kind = isAudio(file) ? "audio" : "image";
  if (!current() || current().kind !== kind) {
    const other = state.models.find((m) => m.kind === kind);
    if (!other) { hideViews(); showError("no " + kind + " model is served"); return; }
    $("model").value = other.name;
  }
  hideViews();  // a failed run never leaves an earlier result (or its downloads) on the page
  if (kind === "image") await runImage(); else await uploadRecording();
}

// ---------------------------------------------------------------------------------------------- images

async function runImage() {
  const model = current();
  $("threshold-label").hidden = !model.binary;
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = URL.createObjectURL(state.file);
  $("overlay").dataset.ready = "0";
  $("original").src = state.imageUrl;
  await predictImage();
}

async function predictImage() {
  const model = current();
  const params = new URLSearchParams({ model: model.name, format: "json", mask: "true", objects: "true",
    name: state.file.name });
  if (model.binary) params.set("threshold", $("threshold").value);
  status("predicting…");
  try {
    const response = await api("/predict?" + params, { method: "POST", body: state.file });
    state.result = await response.json();
  } catch (e) { status(""); hideViews(); showError(e.message); return; }
  $("image-view").hidden = false;
  setObjects(state.result);
  const mask = new Image();
  mask.onload = () => { state.maskImage = mask; drawOverlay(); status("done"); };
  mask.src = "data:image/png;base64," + state.result.mask_png;
  drawLegend();
}

function drawOverlay() {
  const original = $("original");
  if (!original.complete || !state.maskImage || !state.result) { original.onload = drawOverlay; return; }
  const canvas = $("overlay");
  const w = state.result.width, h = state.result.height;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(original, 0, 0, w, h);
  const base = ctx.getImageData(0, 0, w, h);
  const m = document.createElement("canvas");
  m.width = w; m.height = h;
  const mctx = m.getContext("2d");
  mctx.drawImage(state.maskImage, 0, 0);
  const mask = mctx.getImageData(0, 0, w, h).data;
  const alpha = $("opacity").value / 100;
  const model = current();
  const fg = model.colours[1];
  const bg = model.colours[0];
  const blend = (i, colour) => {
    for (let c = 0; c < 3; c++) base.data[i + c] = (1 - alpha) * base.data[i + c] + alpha * colour[c];
  };
  if (objects.complete) {  // drawn object by object: a deleted one disappears, a relabelled one takes its colour
    for (const o of objects.list) {
      if (o.state === "deleted") continue;
      const colour = model.colours[o.class];
      for (const p of o.pixels) blend(4 * p, colour);
    }
  } else {
    for (let i = 0; i < mask.length; i += 4) {
      let colour;
      if (model.binary) { if (mask[i] < 128) continue; colour = fg; }
      else { if (mask[i] === bg[0] && mask[i + 1] === bg[1] && mask[i + 2] === bg[2]) continue; colour = mask.slice(i, i + 3); }
      blend(i, colour);
    }
  }
  ctx.putImageData(base, 0, 0);
  drawObjectBoxes(ctx, w, h);
  canvas.dataset.ready = "1";
}

// ---- objects of an image, reviewed in the page

const objects = { list: [], selected: null, complete: false, owner: null };

function rleCounts(s) {  // COCO's compressed RLE string -> run lengths (pycocotools' rleFrString)
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20; p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function rlePixels(rle) {  // -> row-major pixel indices (COCO runs are column-major, zeros first)
  const [h, w] = rle.size, out = [];
  let i = 0;
  rleCounts(rle.counts).forEach((run, n) => {
    if (n % 2) for (let j = i; j < i + run; j++) out.push((j % h) * w + Math.floor(j / h));
    i += run;
  });
  return Uint32Array.from(out);
}

function setObjects(result) {
  const list = result.objects || [];
  objects.list = list.map((o) => Object.assign({}, o, { state: "unreviewed", detected: o.class, pixels: rlePixels(o.rle) }));
  objects.complete = list.length < 1000;
  objects.selected = null;
  objects.owner = new Int32Array(result.width * result.height).fill(-1);
  objects.list.forEach((o, k) => { for (const p of o.pixels) objects.owner[p] = k; });
  const select = $("object-class");
  select.innerHTML = "";
  current().classes.forEach((name, c) => {
    if (c === 0) return;
    const option = document.createElement("option"); option.value = c; option.textContent = name; select.append(option);
  });
  drawObjects();
}

function drawObjectBoxes(ctx, w, h) {
  const scale = Math.max(1, Math.max(w, h) / 700);  // lines and tags readable whatever the image's size
  ctx.font = "bold " + Math.round(12 * scale) + "px sans-serif";
  objects.list.forEach((o, k) => {
    if (o.state === "deleted") return;
    const [x, y, bw, bh] = o.box, selected = objects.selected === k;
    if (!selected && objects.list.length > 60 && o.area < 0.0005 * w * h) return;  // a crowd of specks: the table has them
    ctx.lineWidth = (selected ? 3 : 1.5) * scale;
    ctx.strokeStyle = selected ? "#fff" : "rgba(255,255,255,0.7)";
    ctx.strokeRect(x, y, bw, bh);
    const text = String(k + 1) + (selected ? " " + current().classes[o.class] : "");
    const tw = ctx.measureText(text).width + 4 * scale;
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(x, Math.max(0, y - 15 * scale), tw, 15 * scale);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 2 * scale, Math.max(12 * scale, y - 3 * scale));
  });
}

function drawObjects() {
  const body = $("objects").querySelector("tbody");
  body.innerHTML = "";
  objects.list.forEach((o, k) => {
    const row = body.insertRow();
    row.dataset.index = k;
    row.className = (objects.selected === k ? "selected " : "") + o.state;
    for (const v of [k + 1, current().classes[o.class], o.score.toFixed(3), o.area.toLocaleString(), o.state]) {
      row.insertCell().textContent = v;
    }
  });
  const counts = {};
  for (const o of objects.list) counts[o.state] = (counts[o.state] || 0) + 1;
  $("object-counts").textContent = plural(objects.list.length, "object") + (objects.complete ? "" : " (the largest 1000)") +
    ": " + Object.entries(counts).map(([k, v]) => v + " " + k).join(", ");
  const o = objects.list[objects.selected];
  $("object-class").disabled = !o;
  if (o) $("object-class").value = o.class;
}

function reviewObject(changes) {
  const o = objects.list[objects.selected];
  if (!o) return;
  Object.assign(o, changes);
  if (changes.class !== undefined && changes.state === undefined) o.state = o.class === o.detected ? "accepted" : "corrected";
  drawObjects();
  drawOverlay();
}

function selectObject(k) {
  objects.selected = k;
  drawObjects();
  drawOverlay();
}

function exportObjects() {
  const names = current().classes;
  const kept = objects.list.filter((o) => o.state !== "deleted");
  const body = {
    image: state.file.name, width: state.result.width, height: state.result.height, model: state.result.model,
    categories: names.slice(1).map((name, i) => ({ id: i + 1, name })),
    annotations: kept.map((o, i) => ({ id: i + 1, category_id: o.class, category: names[o.class], segmentation: o.rle,
      bbox: o.box, area: o.area, score: o.score, review: o.state, detected_category: names[o.detected] })),
  };
  download(stem() + ".objects.json", new Blob([JSON.stringify(body, null, 1)], { type: "application/json" }));
}

function drawLegend() {
  const body = $("legend").querySelector("tbody");
  body.innerHTML = "";
  for (const c of state.result.classes) {
    const row = body.insertRow();
    // class 0 (background) is not drawn over the image: no swatch for it
    row.insertCell().innerHTML = c.index === 0 ? "<small>not drawn</small>"
      : '<span class="swatch" style="background: rgb(' + c.colour.join(",") + ')"></span>';
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = c.pixels.toLocaleString();
    row.insertCell().textContent = (100 * c.share).toFixed(2) + " %";
  }
}

// ------------------------------------------------------------------------------------ recordings: review

const TILE = 512;  // pixels per tile
const HEIGHT = 320;  // pixels of the spectrogram on the page
const ZOOMS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];  // pixels per second
const review = { doc: null, pxs: 100, tiles: new Map(), selected: null, drag: null, playing: null, generation: 0 };
const PALETTE = [[255, 200, 0], [0, 220, 255], [255, 80, 200], [120, 255, 90], [255, 140, 60], [170, 140, 255]];

async function loadReviewList() {
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

function reviewTitle(name, events, unreviewed) {
  return name + " (" + plural(events, "event") + ", " + (events - unreviewed) + " reviewed)";
}

async function uploadRecording() {
  const model = current();
  const params = new URLSearchParams({ model: model.name, name: state.file.name, denoise: "true" });
  status("detecting…");
  try {
    const doc = await (await api("/reviews?" + params, { method: "POST", body: state.file })).json();
    await loadReviewList();
    await showReview(doc);
  } catch (e) { status(""); hideViews(); showError(e.message); }
}

async function openReview(name) {
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
  for (const [, tile] of review.tiles) { tile.img.remove(); if (tile.url) URL.revokeObjectURL(tile.url); }
  review.tiles.clear();
  $("viewport").scrollLeft = 0;
  setZoom(review.pxs, 0);
  const top = doc.row_hz[0] / 1000, rate = doc.sample_rate / 1000, model = doc.spectrogram_rate / 1000;
  let note = "The model hears 0–" + top.toFixed(1) + " kHz";
  if (doc.spectrogram_rate !== doc.sample_rate) {
    note += " (it resamples to " + model.toFixed(2) + " kHz; this recording is " + rate.toFixed(2) + " kHz, so " +
      "nothing above " + top.toFixed(1) + " kHz is shown or searched; the denoised audio is at " + model.toFixed(2) + " kHz)";
  }
  note += ". " + (state.reviewsKept ? "Every change is saved in the review folder at once."
    : "Reviews are not kept after the server stops: start it with --review DIR to keep them.");
  $("audio-note").textContent = note;
  $("denoised").disabled = !doc.denoised;
  const labels = new Set([...doc.classes.slice(1), ...doc.events.map((e) => e.label)]);
  $("labels").innerHTML = "";
  for (const l of labels) { const o = document.createElement("option"); o.value = l; $("labels").append(o); }
  drawFreqAxis();
  refresh();
  const spectrogram = $("viewport");
  spectrogram.dataset.ready = "1";
  status(plural(doc.events.length, "event") + " in " + doc.duration.toFixed(1) + " s");
}

function sortedEvents() {
  return review.doc.events.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
}

function numberOf(event) { return sortedEvents().indexOf(event) + 1; }

function colourOf(label) {
  const model = state.models.find((m) => m.classes.includes(label) && m.kind === "audio");
  if (model) { const c = model.colours[model.classes.indexOf(label)]; if (c && (c[0] || c[1] || c[2])) return c; }
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

// ---- geometry: time <-> x (track pixels), Hz <-> y

function xOf(t) { return t * review.pxs; }
function tOf(x) { return x / review.pxs; }

function yOf(hz) {
  const rows = review.doc.row_hz, n = rows.length;  // rows top first (highest frequency first)
  if (hz >= rows[0]) return 0;
  if (hz <= rows[n - 1]) return HEIGHT;
  for (let i = 0; i < n - 1; i++) {
    if (hz <= rows[i] && hz >= rows[i + 1]) return ((i + (rows[i] - hz) / ((rows[i] - rows[i + 1]) || 1)) + 0.5) * HEIGHT / n;
  }
  return HEIGHT;
}

function hzOf(y) {
  const rows = review.doc.row_hz, n = rows.length;
  const r = Math.min(n - 1, Math.max(0, y * n / HEIGHT - 0.5));
  const i = Math.min(n - 2, Math.floor(r));
  return rows[i] + (rows[i + 1] - rows[i]) * (r - i);
}

function boxOf(e) {  // in track pixels
  const y0 = e.high == null ? 0 : yOf(e.high), y1 = e.low == null ? HEIGHT : yOf(e.low);
  return { x0: xOf(e.begin), x1: xOf(e.end), y0: Math.min(y0, y1), y1: Math.max(y0, y1) };
}

// ---- zoom, scroll and tiles

function setZoom(pxs, anchorX) {
  const view = $("viewport");
  const anchor = tOf(view.scrollLeft + anchorX);
  review.pxs = pxs;
  $("zoom-value").textContent = pxs + " px/s";
  $("track").style.width = Math.ceil(review.doc.duration * pxs) + "px";
  for (const [, tile] of review.tiles) { tile.img.remove(); if (tile.url) URL.revokeObjectURL(tile.url); }
  review.tiles.clear();
  view.scrollLeft = Math.max(0, xOf(anchor) - anchorX);
  refresh();
}

function zoom(step, anchorX) {
  const i = ZOOMS.indexOf(review.pxs);
  const next = ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, (i < 0 ? 6 : i) + step))];
  if (next !== review.pxs) setZoom(next, anchorX === undefined ? $("viewport").clientWidth / 2 : anchorX);
}

function refresh() {
  if (!review.doc) return;
  loadTiles();
  drawBoxes();
  drawTimeAxis();
  const view = $("viewport");
  const t0 = tOf(view.scrollLeft), t1 = Math.min(review.doc.duration, tOf(view.scrollLeft + view.clientWidth));
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
    if (k < first - 4 || k > last + 4) { tile.img.remove(); if (tile.url) URL.revokeObjectURL(tile.url); review.tiles.delete(k); }
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

function niceStep(span, target) {
  const raw = span / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function clock(t, step) {
  const digits = step < 0.1 ? 2 : step < 1 ? 1 : 0;
  if (review.doc.duration < 60) return t.toFixed(digits) + " s";
  const m = Math.floor(t / 60), s = t - 60 * m;
  return m + ":" + (s < 10 ? "0" : "") + s.toFixed(digits);
}

function drawTimeAxis() {
  const canvas = $("time-axis"), view = $("viewport");
  canvas.width = view.clientWidth;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif";
  const t0 = tOf(view.scrollLeft), span = tOf(view.clientWidth);
  const step = niceStep(span, view.clientWidth / 90);
  for (let t = Math.ceil(t0 / step) * step; t <= t0 + span; t += step) {
    const x = xOf(t) - view.scrollLeft;
    ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, 6); ctx.stroke();
    ctx.fillText(clock(t, step), x + 2, 18);
  }
}

function drawFreqAxis() {
  const canvas = $("freq-axis"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#333"; ctx.strokeStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "right";
  const rows = review.doc.row_hz, top = rows[0], bottom = rows[rows.length - 1];
  const step = niceStep(top - bottom, 8);
  for (let hz = Math.ceil(bottom / step) * step; hz <= top; hz += step) {
    const y = yOf(hz);
    ctx.beginPath(); ctx.moveTo(54, y + 0.5); ctx.lineTo(60, y + 0.5); ctx.stroke();
    ctx.fillText((hz / 1000).toFixed(step < 1000 ? 1 : 0), 51, Math.min(HEIGHT - 2, Math.max(10, y + 4)));
  }
  ctx.save(); ctx.translate(10, HEIGHT / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText("kHz", 0, 0); ctx.restore();
}

// ---- boxes

function drawBoxes() {
  const canvas = $("boxes"), view = $("viewport");
  canvas.width = view.clientWidth; canvas.height = HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const left = view.scrollLeft, right = left + view.clientWidth;
  const tags = [];
  sortedEvents().forEach((e, i) => {
    if (e.state === "deleted") return;
    const b = boxOf(e);
    if (b.x1 < left || b.x0 > right) return;
    const c = colourOf(e.label), selected = review.selected === e.id;
    ctx.strokeStyle = "rgb(" + c.join(",") + ")";
    ctx.lineWidth = selected ? 3 : 2;
    ctx.setLineDash(e.state === "unreviewed" ? [6, 3] : []);
    ctx.strokeRect(b.x0 - left, b.y0, Math.max(2, b.x1 - b.x0), Math.max(2, b.y1 - b.y0));
    ctx.setLineDash([]);
    if (selected) {
      ctx.fillStyle = "rgba(255,255,255,0.12)";
      ctx.fillRect(b.x0 - left, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    }
    // a tag: number, label and score, white on the label's colour darkened; moved down where tags would overlap
    const mark = { accepted: " ✓", corrected: " ✎", added: " +" }[e.state] || "";
    const text = (i + 1) + " " + (e.label || "?") + (e.score == null ? "" : " " + e.score.toFixed(2)) + mark;
    ctx.font = "bold 12px sans-serif";
    const full = ctx.measureText(text).width + 6;
    const short = String(i + 1) + mark;  // a crowded or narrow box shows its number; the table has the rest
    const tag = full <= Math.max(b.x1 - b.x0, 40) || selected ? text : short;
    const w = ctx.measureText(tag).width + 6;
    let x = Math.max(0, b.x0 - left), y = Math.max(0, b.y0 - 16);
    while (tags.some((t) => x < t.x + t.w && t.x < x + w && y < t.y + 15 && t.y < y + 15) && y < HEIGHT - 15) y += 15;
    tags.push({ x, y, w });
    ctx.fillStyle = "rgba(0,0,0,0.75)";
    ctx.fillRect(x, y, w, 15);
    ctx.fillStyle = "rgb(" + c.join(",") + ")";
    ctx.fillText(tag, x + 3, y + 12);
  });
  if (review.drawing) {
    const d = review.drawing;
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.setLineDash([4, 2]);
    ctx.strokeRect(Math.min(d.x0, d.x1) - left, Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
    ctx.setLineDash([]);
  }
  if (review.playing) {
    const x = xOf(review.playing.begin + $("player").currentTime) - left;
    ctx.strokeStyle = "#f33"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, HEIGHT); ctx.stroke();
  }
  drawTable();
}

function drawTable() {
  const body = $("events").querySelector("tbody");
  const f = (v, d) => (v == null ? "" : v.toFixed(d));
  body.innerHTML = "";
  sortedEvents().forEach((e, i) => {
    const row = body.insertRow();
    row.dataset.id = e.id;
    row.className = (review.selected === e.id ? "selected " : "") + e.state;
    for (const value of [i + 1, f(e.begin, 3), f(e.end, 3), f(e.low, 0), f(e.high, 0), e.label, f(e.score, 3), e.state]) {
      row.insertCell().textContent = value;
    }
  });
  const counts = {};
  for (const e of review.doc.events) counts[e.state] = (counts[e.state] || 0) + 1;
  $("counts").textContent = Object.entries(counts).map(([k, v]) => v + " " + k).join(", ");
  const option = [...$("review-list").options].find((o) => o.value === review.doc.name);
  if (option) option.textContent = reviewTitle(review.doc.name, review.doc.events.length, counts.unreviewed || 0);
  const e = selectedEvent();
  $("selected").textContent = e ? "#" + numberOf(e) + " " + e.begin.toFixed(3) + "–" + e.end.toFixed(3) + " s, " + e.state
    : "no box selected";
  for (const id of ["label", "accept", "delete", "restore"]) $(id).disabled = !e;
  if (e && document.activeElement !== $("label")) $("label").value = e.label;
}

function selectedEvent() { return review.doc && review.doc.events.find((e) => e.id === review.selected); }

function select(id, scroll) {
  review.selected = id;
  const e = selectedEvent();
  if (e && scroll) {
    const view = $("viewport"), b = boxOf(e);
    if (b.x0 < view.scrollLeft || b.x1 > view.scrollLeft + view.clientWidth) {
      view.scrollLeft = Math.max(0, (b.x0 + b.x1) / 2 - view.clientWidth / 2);
    }
  }
  refresh();
}

function step(direction) {  // the next (or previous) box in time that is not deleted, from the selected one
  const list = sortedEvents();
  let i = list.findIndex((e) => e.id === review.selected);
  if (i < 0) i = direction > 0 ? -1 : list.length;
  for (let j = i + direction; j >= 0 && j < list.length; j += direction) {
    if (list[j].state !== "deleted") { select(list[j].id, true); return; }
  }
}

function showConflict(text) {
  $("conflict").textContent = text;
  $("conflict").hidden = !text;
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

async function change(e, fields) {
  const path = "/reviews/" + encodeURIComponent(review.doc.name) + "/events/" + encodeURIComponent(e.id);
  try { applied(await json(path, "PATCH", Object.assign({ seen: e.revision }, fields))); }
  catch (err) { showError(err.message); await reload(); }
}

async function remove(e) {
  const path = "/reviews/" + encodeURIComponent(review.doc.name) + "/events/" + encodeURIComponent(e.id) + "?seen=" + e.revision;
  try { applied(await json(path, "DELETE")); } catch (err) { showError(err.message); }
}

async function add(box) {
  const label = $("label").value || (review.doc.classes[1] || "");
  try {
    const answer = await json("/reviews/" + encodeURIComponent(review.doc.name) + "/events", "POST", Object.assign({ label }, box));
    applied(answer);
    select(answer.event.id, false);
  } catch (err) { showError(err.message); }
}

async function reload() {  // the server's state (other tabs' edits), keeping the selection and a box being dragged
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

// ---- the mouse on the boxes

const EDGE = 6;

function hit(x, y) {  // track pixels -> {event, mode}
  const list = sortedEvents().filter((e) => e.state !== "deleted");
  const order = list.filter((e) => e.id === review.selected).concat(list.filter((e) => e.id !== review.selected));
  for (const e of order) {
    const b = boxOf(e);
    if (x < b.x0 - EDGE || x > b.x1 + EDGE || y < b.y0 - EDGE || y > b.y1 + EDGE) continue;
    const banded = e.low != null;
    // edges grab within 6 px, less on a small box: its middle always moves it
    const ex = Math.min(EDGE, (b.x1 - b.x0) / 4), ey = Math.min(EDGE, (b.y1 - b.y0) / 4);
    const edges = (Math.abs(x - b.x0) <= ex ? "l" : Math.abs(x - b.x1) <= ex ? "r" : "") +
      (banded && Math.abs(y - b.y0) <= ey ? "t" : banded && Math.abs(y - b.y1) <= ey ? "b" : "");
    if (edges) return { event: e, mode: edges };
    if (x >= b.x0 && x <= b.x1 && y >= b.y0 && y <= b.y1) return { event: e, mode: "move" };
  }
  return null;
}

function point(ev) {
  const rect = $("boxes").getBoundingClientRect();
  return { x: ev.clientX - rect.left + $("viewport").scrollLeft, y: Math.min(HEIGHT, Math.max(0, ev.clientY - rect.top)) };
}

function onDown(ev) {
  if (!review.doc || ev.button !== 0) return;
  $("viewport").focus();
  const p = point(ev), found = hit(p.x, p.y);
  if (found) {
    review.selected = found.event.id;
    review.drag = { event: found.event, mode: found.mode, start: p, box: boxOf(found.event),
      original: Object.assign({}, found.event), moved: false };
  } else {
    review.drawing = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  }
  refresh();
  ev.preventDefault();
}

function onMove(ev) {
  if (!review.doc) return;
  const p = point(ev);
  if (review.drawing) { review.drawing.x1 = p.x; review.drawing.y1 = p.y; drawBoxes(); return; }
  const d = review.drag;
  if (!d) {
    const found = hit(p.x, p.y);
    const cursors = { move: "move", l: "ew-resize", r: "ew-resize", t: "ns-resize", b: "ns-resize", lt: "nwse-resize",
      rb: "nwse-resize", rt: "nesw-resize", lb: "nesw-resize" };
    $("boxes").style.cursor = found ? cursors[found.mode] : "crosshair";
    return;
  }
  const dx = p.x - d.start.x, dy = p.y - d.start.y;
  if (Math.abs(dx) + Math.abs(dy) < 3 && !d.moved) return;
  d.moved = true;
  const b = Object.assign({}, d.box), e = d.event, o = d.original;
  if (d.mode === "move") { b.x0 += dx; b.x1 += dx; b.y0 += dy; b.y1 += dy; }
  if (d.mode.includes("l")) b.x0 = Math.min(b.x1 - 2, b.x0 + dx);
  if (d.mode.includes("r")) b.x1 = Math.max(b.x0 + 2, b.x1 + dx);
  if (d.mode.includes("t")) b.y0 = Math.min(b.y1 - 2, b.y0 + dy);
  if (d.mode.includes("b")) b.y1 = Math.max(b.y0 + 2, b.y1 + dy);
  const span = o.end - o.begin, duration = review.doc.duration;
  e.begin = Math.max(0, tOf(b.x0));
  e.end = Math.min(duration, tOf(b.x1));
  if (d.mode === "move") {
    if (e.begin === 0) e.end = Math.min(duration, span);
    if (e.end === duration) e.begin = Math.max(0, duration - span);
  }
  if (o.low != null) {
    if (d.mode === "move") {
      const h = d.box.y1 - d.box.y0;
      b.y0 = Math.min(HEIGHT - h, Math.max(0, b.y0)); b.y1 = b.y0 + h;
    }
    e.high = hzOf(Math.max(0, b.y0));
    e.low = hzOf(Math.min(HEIGHT, b.y1));
  }
  drawBoxes();
}

async function onUp(ev) {
  if (review.drawing) {
    const d = review.drawing;
    review.drawing = null;
    if (Math.abs(d.x1 - d.x0) < 4 || Math.abs(d.y1 - d.y0) < 4) { review.selected = null; refresh(); return; }
    const begin = tOf(Math.min(d.x0, d.x1)), end = Math.min(review.doc.duration, tOf(Math.max(d.x0, d.x1)));
    await add({ begin: round(Math.max(0, begin), 4), end: round(end, 4),
      low: round(hzOf(Math.max(d.y0, d.y1)), 1), high: round(hzOf(Math.min(d.y0, d.y1)), 1) });
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

function round(v, digits) { const p = Math.pow(10, digits); return Math.round(v * p) / p; }

// ---- listening

async function play(begin, end, band) {
  const params = new URLSearchParams({ begin: round(begin, 4), end: round(end, 4) });
  if (band && band.low != null) { params.set("low", round(band.low, 1)); params.set("high", round(band.high, 1)); }
  if ($("denoised").checked) params.set("denoised", "true");
  try {
    const blob = await (await api("/reviews/" + encodeURIComponent(review.doc.name) + "/audio?" + params)).blob();
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    review.playing = { begin };
    await player.play();
    follow();
  } catch (err) { showError(err.message); }
}

function follow() {  // the playhead follows the player, and the view follows the playhead
  if (!review.playing) return;
  const player = $("player"), view = $("viewport");
  const x = xOf(review.playing.begin + player.currentTime);
  if (x > view.scrollLeft + view.clientWidth - 20) { view.scrollLeft = x - 40; refresh(); } else drawBoxes();
  if (!player.paused && !player.ended) requestAnimationFrame(follow);
}

function playSelection(band) {
  const e = selectedEvent();
  if (!e) { playView(); return; }
  play(e.begin, e.end, band ? e : null);
}

function playView() {
  const view = $("viewport");
  play(tOf(view.scrollLeft), Math.min(review.doc.duration, tOf(view.scrollLeft + view.clientWidth)), null);
}

// ---- exports

async function exportTable(format) {
  const suffix = { raven: ".selections.txt", audacity: ".labels.txt", csv: ".events.csv" }[format];
  const params = new URLSearchParams({ format, deleted: $("export-deleted").checked ? "true" : "false" });
  try {
    const text = await (await api("/reviews/" + encodeURIComponent(review.doc.name) + "/export?" + params)).text();
    download(review.doc.name + ".reviewed" + suffix, new Blob([text], { type: "text/plain" }));
  } catch (err) { showError(err.message); }
}

// ------------------------------------------------------------------------------------------------ wiring

function stem() { return state.file ? state.file.name.replace(/\.[^.]*$/, "") : "output"; }

$("file").addEventListener("change", (e) => { if (e.target.files[0]) run(e.target.files[0]); e.target.value = ""; });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});
$("model").addEventListener("change", () => { if (state.file) run(state.file); });
$("review-list").addEventListener("change", () => { if ($("review-list").value) openReview($("review-list").value); });
$("opacity").addEventListener("input", drawOverlay);
let pending = null;
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  clearTimeout(pending);
  pending = setTimeout(predictImage, 250);
});
$("token").addEventListener("change", () => { localStorage.setItem("unetseg-token", $("token").value); loadModels(); });
$("download-mask").addEventListener("click", () => {
  const bytes = Uint8Array.from(atob(state.result.mask_png), (c) => c.charCodeAt(0));
  download(stem() + ".png", new Blob([bytes], { type: "image/png" }));
});
$("download-polygons").addEventListener("click", () => {
  const { mask_png, ...rest } = state.result;
  download(stem() + ".json", new Blob([JSON.stringify(rest, null, 1)], { type: "application/json" }));
});

$("overlay").addEventListener("click", (ev) => {
  if (!state.result) return;
  const rect = $("overlay").getBoundingClientRect();
  const x = Math.floor((ev.clientX - rect.left) * state.result.width / rect.width);
  const y = Math.floor((ev.clientY - rect.top) * state.result.height / rect.height);
  const k = objects.owner ? objects.owner[y * state.result.width + x] : -1;
  selectObject(k >= 0 ? k : null);
});
$("objects").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-index]");
  if (row) selectObject(Number(row.dataset.index));
});
$("object-class").addEventListener("change", () => reviewObject({ class: Number($("object-class").value) }));
$("download-objects").addEventListener("click", exportObjects);
document.addEventListener("keydown", (ev) => {
  if ($("image-view").hidden || !objects.list.length || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
  const n = objects.list.length, k = objects.selected;
  const keys = {
    n: () => selectObject(k === null ? 0 : Math.min(n - 1, k + 1)),
    p: () => selectObject(k === null ? n - 1 : Math.max(0, k - 1)),
    a: () => reviewObject({ state: "accepted" }), d: () => reviewObject({ state: "deleted" }),
    u: () => k !== null && reviewObject({ state: "unreviewed", class: objects.list[k].detected }),
    Escape: () => selectObject(null),
  };
  keys.ArrowRight = keys.n; keys.ArrowLeft = keys.p; keys.Delete = keys.d;
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
});

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
$("player").addEventListener("ended", () => { review.playing = null; drawBoxes(); });
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

document.addEventListener("keydown", (ev) => {
  if (!review.doc || $("audio-view").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(document.activeElement.tagName) && ev.key !== "Escape") return;
  const e = selectedEvent();
  const keys = {
    n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
    a: async () => { if (e) { await change(e, { state: "accepted" }); step(1); } },
    d: async () => { if (e) { await remove(e); step(1); } },
    u: () => e && change(e, { state: "unreviewed" }),
    " ": () => { const player = $("player"); if (!player.paused) player.pause(); else playSelection(false); },
    b: () => playSelection(true),
    l: () => { if (e) $("label").focus(); },
    "+": () => zoom(1), "=": () => zoom(1), "-": () => zoom(-1),
    Escape: () => { review.selected = null; $("player").pause(); $("viewport").focus(); refresh(); },
  };
  keys.Delete = keys.d; keys.Backspace = keys.d; keys.Enter = keys.a;
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
});

setInterval(reload, 4000);  // other tabs' edits
loadModels();
