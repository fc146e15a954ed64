// An image through /predict: the mask over the image, its legend and downloads.

import { $, api, download, showError, status } from "./api.js";
import { drawObjectBoxes, objects, setObjects } from "./objects.js";
import { current, hideViews, page, stem } from "./page.js";

export const image = { result: null, url: null, mask: null };

export function clearImage() { image.result = null; }

export async function runImage() {
  const model = current();
  $("threshold-label").hidden = !model.binary;
  if (image.url) URL.revokeObjectURL(image.url);
  image.url = URL.createObjectURL(page.file);
  $("overlay").dataset.ready = "0";
  $("original").src = image.url;
  await predictImage();
}

export async function predictImage() {
  const model = current();
  const params = new URLSearchParams({ model: model.name, format: "json", mask: "true", objects: "true",
    name: page.file.name });
  if (model.binary) params.set("threshold", $("threshold").value);
  status("predicting…");
  try {
    const response = await api("/predict?" + params, { method: "POST", body: page.file });
    image.result = await response.json();
  } catch (e) { status(""); hideViews(); showError(e.message); return; }
  $("image-view").hidden = false;
  setObjects(image.result, model.classes);
  const mask = new Image();
  mask.onload = () => { image.mask = mask; drawOverlay(); status("done"); };
  mask.src = "data:image/png;base64," + image.result.mask_png;
  drawLegend();
}

export function drawOverlay() {
  const original = $("original");
  if (!original.complete || !image.mask || !image.result) { original.onload = drawOverlay; return; }
  const canvas = $("overlay");
  const w = image.result.width, h = image.result.height;
  const work = document.createElement("canvas");  // the blend at the image's own size
  work.width = w; work.height = h;
  const ctx = work.getContext("2d");
  ctx.drawImage(original, 0, 0, w, h);
  const base = ctx.getImageData(0, 0, w, h);
  const m = document.createElement("canvas");
  m.width = w; m.height = h;
  const mctx = m.getContext("2d");
  mctx.drawImage(image.mask, 0, 0);
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
  // shown enlarged by a whole factor (pixels kept sharp), so that boxes and tags are drawn at the size a person
  // sees, whatever the image's size: a 128 px image's tags are not 6 times too big
  const shown = canvas.getBoundingClientRect().width || w, k = Math.max(1, Math.ceil(shown / w));
  canvas.width = w * k; canvas.height = h * k;
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(work, 0, 0, w * k, h * k);
  out.save();
  out.scale(k, k);
  drawObjectBoxes(out, w / shown, model.classes);
  out.restore();
  canvas.dataset.ready = "1";
}

function drawLegend() {
  const body = $("legend").querySelector("tbody");
  body.innerHTML = "";
  for (const c of image.result.classes) {
    const row = body.insertRow();
    // class 0 (background) is not drawn over the image: no swatch for it
    row.insertCell().innerHTML = c.index === 0 ? "<small>not drawn</small>"
      : '<span class="swatch" style="background: rgb(' + c.colour.join(",") + ')"></span>';
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = c.pixels.toLocaleString();
    row.insertCell().textContent = (100 * c.share).toFixed(2) + " %";
  }
}

export function downloadMask() {  // never the input's own name: a saved mask must not replace the image
  const bytes = Uint8Array.from(atob(image.result.mask_png), (c) => c.charCodeAt(0));
  download(stem() + ".mask.png", new Blob([bytes], { type: "image/png" }));
}

export function downloadPolygons() {
  const { mask_png, ...rest } = image.result;
  download(stem() + ".polygons.json", new Blob([JSON.stringify(rest, null, 1)], { type: "application/json" }));
}

export function objectAt(ev) {  // the object under a click on the overlay, or null
  if (!image.result || !objects.owner) return null;
  const rect = $("overlay").getBoundingClientRect();
  const x = Math.floor((ev.clientX - rect.left) * image.result.width / rect.width);
  const y = Math.floor((ev.clientY - rect.top) * image.result.height / rect.height);
  const k = objects.owner[y * image.result.width + x];
  return k >= 0 ? k : null;
}
