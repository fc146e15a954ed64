// The table of the review's events, the selection, and stepping through the boxes in time.

import { $ } from "../api.js";
import { boxOf } from "./geometry.js";
import { numberOf, review, reviewTitle, selectedEvent, sortedEvents, view } from "./store.js";
import { refresh } from "./view.js";

export function drawTable() {
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

export function select(id, scroll) {
  review.selected = id;
  const e = selectedEvent();
  if (e && scroll) {
    const viewport = $("viewport"), b = boxOf(e, view());
    if (b.x0 < viewport.scrollLeft || b.x1 > viewport.scrollLeft + viewport.clientWidth) {
      viewport.scrollLeft = Math.max(0, (b.x0 + b.x1) / 2 - viewport.clientWidth / 2);
    }
  }
  refresh();
}

export function step(direction) {  // the next (or previous) box in time that is not deleted, from the selected one
  const list = sortedEvents();
  let i = list.findIndex((e) => e.id === review.selected);
  if (i < 0) i = direction > 0 ? -1 : list.length;
  for (let j = i + direction; j >= 0 && j < list.length; j += direction) {
    if (list[j].state !== "deleted") { select(list[j].id, true); return; }
  }
}
