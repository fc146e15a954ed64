// The unetseg page: no framework, no CDN; talks to the same API a program uses.
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

function showError(message) {
  $("error").textContent = message ? "error: " + message : "";
  $("error").hidden = !message;
}

function status(text) { $("status").textContent = text; }

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
  try {
    state.models = await (await api("/models")).json();
  } catch (e) { showError(e.message); return; }
  $("model").innerHTML = "";
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name + " (" + m.kind + ", " + m.classes.length + " classes)";
    $("model").append(option);
  }
  status(state.models.length + " model(s) loaded");
}

function isAudio(file) {
  return file.type.startsWith("audio/") || /\.(wav|flac|ogg|mp3|aiff?)$/i.test(file.name);
}

async function run(file) {
  state.file = file;
  showError("");
  const kind = isAudio(file) ? "audio" : "image";
  if (!current() || current().kind !== kind) {
    const other = state.models.find((m) => m.kind === kind);
    if (!other) { showError("no " + kind + " model is served"); return; }
    $("model").value = other.name;
  }
  $("image-view").hidden = kind !== "image";
  $("audio-view").hidden = kind !== "audio";
  if (kind === "image") await runImage(); else await runAudio();
}

// ---------------------------------------------------------------------------------------------- images

async function runImage() {
  const model = current();
  $("threshold-label").hidden = !model.binary;
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = URL.createObjectURL(state.file);
  $("original").src = state.imageUrl;
  await predictImage();
}

async function predictImage() {
  const model = current();
  const params = new URLSearchParams({ model: model.name, format: "json", mask: "true" });
  if (model.binary) params.set("threshold", $("threshold").value);
  status("predicting…");
  try {
    const response = await api("/predict?" + params, { method: "POST", body: state.file });
    state.result = await response.json();
  } catch (e) { status(""); showError(e.message); return; }
  const mask = new Image();
  mask.onload = () => { state.maskImage = mask; drawOverlay(); status("done"); };
  mask.src = "data:image/png;base64," + state.result.mask_png;
  drawLegend();
}

function drawOverlay() {
  const original = $("original");
  if (!original.complete || !state.maskImage) { original.onload = drawOverlay; return; }
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
  for (let i = 0; i < mask.length; i += 4) {
    let colour;
    if (model.binary) { if (mask[i] < 128) continue; colour = fg; }
    else { if (mask[i] === bg[0] && mask[i + 1] === bg[1] && mask[i + 2] === bg[2]) continue; colour = mask.slice(i, i + 3); }
    for (let c = 0; c < 3; c++) base.data[i + c] = (1 - alpha) * base.data[i + c] + alpha * colour[c];
  }
  ctx.putImageData(base, 0, 0);
  canvas.dataset.ready = "1";
}

function drawLegend() {
  const body = $("legend").querySelector("tbody");
  body.innerHTML = "";
  for (const c of state.result.classes) {
    const row = body.insertRow();
    row.insertCell().innerHTML = '<span class="swatch" style="background: rgb(' + c.colour.join(",") + ')"></span>';
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = c.pixels.toLocaleString();
    row.insertCell().textContent = (100 * c.share).toFixed(2) + " %";
  }
}

// ------------------------------------------------------------------------------------------ recordings

async function runAudio() {
  const model = current();
  $("play-original").src = URL.createObjectURL(state.file);
  const params = new URLSearchParams({ model: model.name, format: "json", denoise: "true", spectrogram: "true" });
  status("detecting…");
  try {
    state.result = await (await api("/detect?" + params, { method: "POST", body: state.file })).json();
    const [picture, denoised] = await Promise.all([
      api(state.result.spectrogram.url).then((r) => r.blob()),
      api(state.result.denoised).then((r) => r.blob())]);
    state.denoised = denoised;
    $("play-denoised").src = URL.createObjectURL(denoised);
    const image = new Image();
    image.onload = () => drawSpectrogram(image);
    image.src = URL.createObjectURL(picture);
  } catch (e) { status(""); showError(e.message); return; }
  drawEvents();
  status(state.result.events.length + " events in " + state.result.duration.toFixed(1) + " s");
}

function hzToRow(hz, rows) {
  // rows[i] is the frequency of image row i (top first); interpolate for a box edge
  const n = rows.length;
  const ascending = rows[0] < rows[n - 1];
  for (let i = 0; i < n - 1; i++) {
    const a = rows[i], b = rows[i + 1];
    if ((hz >= Math.min(a, b)) && (hz <= Math.max(a, b))) return i + (hz - a) / ((b - a) || 1);
  }
  return (hz < Math.min(rows[0], rows[n - 1])) === ascending ? 0 : n - 1;
}

function drawSpectrogram(image) {
  const canvas = $("spectrogram");
  canvas.width = image.width; canvas.height = image.height;
  canvas.style.width = image.width + "px";
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  const spec = state.result.spectrogram;
  const xPerSecond = image.width / spec.seconds;
  const yScale = image.height / spec.row_hz.length;
  ctx.lineWidth = 2;
  ctx.font = "12px sans-serif";
  const model = current();
  state.result.events.forEach((e, i) => {
    const index = Math.max(1, model.classes.indexOf(e.label));
    ctx.strokeStyle = "rgb(" + (model.colours[index] || [255, 255, 0]).join(",") + ")";
    const top = e.high == null ? 0 : hzToRow(e.high, spec.row_hz) * yScale;
    const bottom = e.low == null ? image.height : hzToRow(e.low, spec.row_hz) * yScale;
    const y0 = Math.min(top, bottom), y1 = Math.max(top, bottom);
    ctx.strokeRect(e.begin * xPerSecond, y0, Math.max(2, (e.end - e.begin) * xPerSecond), Math.max(2, y1 - y0));
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(String(i + 1), e.begin * xPerSecond + 2, Math.max(12, y0 - 2));
  });
  canvas.dataset.ready = "1";
}

function drawEvents() {
  const body = $("events").querySelector("tbody");
  body.innerHTML = "";
  const f = (v, d) => (v == null ? "" : v.toFixed(d));
  state.result.events.forEach((e, i) => {
    const row = body.insertRow();
    for (const value of [i + 1, f(e.begin, 3), f(e.end, 3), f(e.low, 0), f(e.high, 0), e.label, f(e.score, 3)]) {
      row.insertCell().textContent = value;
    }
  });
}

// ------------------------------------------------------------------------------------------------ wiring

function stem() { return state.file ? state.file.name.replace(/\.[^.]*$/, "") : "output"; }

$("file").addEventListener("change", (e) => e.target.files[0] && run(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});
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
$("download-raven").addEventListener("click", () =>
  download(stem() + ".selections.txt", new Blob([state.result.raven], { type: "text/plain" })));
$("download-events").addEventListener("click", () =>
  download(stem() + ".events.json", new Blob([JSON.stringify(state.result.events, null, 1)], { type: "application/json" })));
$("download-denoised").addEventListener("click", () => state.denoised && download(stem() + ".denoised.wav", state.denoised));

loadModels();
