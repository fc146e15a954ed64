// The objects of an image, reviewed in the page (kept in the page only; downloaded as COCO JSON).

import { $, download, plural } from "./api.js";
import { drawOverlay, image } from "./images.js";
import { current, page, stem } from "./page.js";
import { rlePixels } from "./rle.js";

export const objects = { list: [], selected: null, complete: false, owner: null };

export function setObjects(result, classes) {
  const list = result.objects || [];
  objects.list = list.map((o) => Object.assign({}, o, { state: "unreviewed", detected: o.class, pixels: rlePixels(o.rle) }));
  objects.complete = list.length < 1000;
  objects.selected = null;
  objects.owner = new Int32Array(result.width * result.height).fill(-1);
  objects.list.forEach((o, k) => { for (const p of o.pixels) objects.owner[p] = k; });
  const select = $("object-class");
  select.innerHTML = "";
  classes.forEach((name, c) => {
    if (c === 0) return;
    const option = document.createElement("option"); option.value = c; option.textContent = name; select.append(option);
  });
  drawObjects();
}

export function drawObjectBoxes(ctx, scale, classes) {  // scale: image pixels per pixel on the screen
  const w = image.result.width, h = image.result.height;
  ctx.font = "bold " + Math.round(12 * scale) + "px sans-serif";
  objects.list.forEach((o, k) => {
    if (o.state === "deleted") return;
    const [x, y, bw, bh] = o.box, selected = objects.selected === k;
    if (!selected && objects.list.length > 60 && o.area < 0.0005 * w * h) return;  // a crowd of specks: the table has them
    ctx.lineWidth = (selected ? 3 : 1.5) * scale;
    ctx.strokeStyle = selected ? "#fff" : "rgba(255,255,255,0.7)";
    ctx.strokeRect(x, y, bw, bh);
    const text = String(k + 1) + (selected ? " " + classes[o.class] : "");
    const tw = ctx.measureText(text).width + 4 * scale;
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(x, Math.max(0, y - 15 * scale), tw, 15 * scale);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 2 * scale, Math.max(12 * scale, y - 3 * scale));
  });
}

function drawObjects() {
  const classes = current().classes;
  const body = $("objects").querySelector("tbody");
  body.innerHTML = "";
  objects.list.forEach((o, k) => {
    const row = body.insertRow();
    row.dataset.index = k;
    row.className = (objects.selected === k ? "selected " : "") + o.state;
    for (const v of [k + 1, classes[o.class], o.score.toFixed(3), o.area.toLocaleString(), o.state]) {
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

export function reviewObject(changes) {
  const o = objects.list[objects.selected];
  if (!o) return;
  Object.assign(o, changes);
  if (changes.class !== undefined && changes.state === undefined) o.state = o.class === o.detected ? "accepted" : "corrected";
  drawObjects();
  drawOverlay();
}

export function selectObject(k) {
  objects.selected = k;
  drawObjects();
  drawOverlay();
}

export function exportObjects() {
  const names = current().classes;
  const kept = objects.list.filter((o) => o.state !== "deleted");
  const body = {
    image: page.file.name, width: image.result.width, height: image.result.height, model: image.result.model,
    categories: names.slice(1).map((name, i) => ({ id: i + 1, name })),
    annotations: kept.map((o, i) => ({ id: i + 1, category_id: o.class, category: names[o.class], segmentation: o.rle,
      bbox: o.box, area: o.area, score: o.score, review: o.state, detected_category: names[o.detected] })),
  };
  download(stem() + ".objects.json", new Blob([JSON.stringify(body, null, 1)], { type: "application/json" }));
}

export function objectKeys() {  // the keys of the object review, for the keyboard router
  const n = objects.list.length, k = objects.selected;
  if (!n) return {};
  const keys = {
    n: () => selectObject(k === null ? 0 : Math.min(n - 1, k + 1)),
    p: () => selectObject(k === null ? n - 1 : Math.max(0, k - 1)),
    a: () => reviewObject({ state: "accepted" }), d: () => reviewObject({ state: "deleted" }),
    u: () => k !== null && reviewObject({ state: "unreviewed", class: objects.list[k].detected }),
    Escape: () => selectObject(null),
  };
  keys.ArrowRight = keys.n; keys.ArrowLeft = keys.p; keys.Delete = keys.d;
  return keys;
}
