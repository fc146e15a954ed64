// The table of the review's events (sorted by any column, filtered by state, label and score), the
// selection, and stepping through the boxes in time.

import { $, plural, status } from "../api.js";
import { boxOf, numberOf } from "./geometry.js";
import { minScore, review, reviewTitle, selectedEvent, shown, sortedEvents, view } from "./store.js";
import { refresh } from "./view.js";

const KEYS = { number: numberOf, begin: (e) => e.begin, end: (e) => e.end, low: (e) => e.low ?? -1,
  high: (e) => e.high ?? -1, label: (e) => e.label, score: (e) => e.score ?? -1, state: (e) => e.state };

function tableOrder() {
  const key = KEYS[review.sort.key] || KEYS.begin, sign = review.sort.up ? 1 : -1;
  return review.doc.events.filter(shown).sort((a, b) => {
    const x = key(a), y = key(b);
    return sign * (x < y ? -1 : x > y ? 1 : 0) || a.begin - b.begin;
  });
}

export function sortBy(key) {
  if (!KEYS[key]) return;
  review.sort = { key, up: review.sort.key === key ? !review.sort.up : key !== "score" };  // scores: highest first
  refresh();
}

export function drawTable() {
  const body = $("events").querySelector("tbody");
  const f = (v, d) => (v == null ? "" : v.toFixed(d));
  body.innerHTML = "";
  const list = tableOrder();
  for (const e of list) {
    const row = body.insertRow();
    row.dataset.id = e.id;
    row.className = (review.selected === e.id ? "selected " : "") + e.state;
    for (const value of [numberOf(e), f(e.begin, 3), f(e.end, 3), f(e.low, 0), f(e.high, 0), e.label, f(e.score, 3), e.state]) {
      row.insertCell().textContent = value;
    }
  }
  for (const th of $("events").querySelectorAll("th[data-key]")) {
    th.dataset.sorted = th.dataset.key === review.sort.key ? (review.sort.up ? "up" : "down") : "";
  }
  const counts = {};
  for (const e of review.doc.events) counts[e.state] = (counts[e.state] || 0) + 1;
  const hidden = review.doc.events.length - list.length;
  $("counts").textContent = Object.entries(counts).map(([k, v]) => v + " " + k).join(", ") +
    (hidden ? " · " + hidden + " hidden by the threshold or filters" : "");
  const under = review.doc.events.filter((e) => e.score != null && e.score < minScore()).length;
  $("min-score-hidden").textContent = under ? plural(under, "event") + " below" : "";
  const option = [...$("review-list").options].find((o) => o.value === review.doc.name);
  if (option) option.textContent = reviewTitle(review.doc.name, review.doc.events.length, counts.unreviewed || 0);
  $("undo").disabled = !review.doc.undo;
  $("redo").disabled = !review.doc.redo;
  const e = selectedEvent();
  $("selected").textContent = e ? "#" + numberOf(e) + " " + e.begin.toFixed(3) + "–" + e.end.toFixed(3) + " s" +
    (e.low == null ? " (no band of its own)" : ", " + Math.round(e.low) + "–" + Math.round(e.high) + " Hz") + ", " + e.state
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

export function step(direction) {  // the next (or previous) box in time that is shown and not deleted
  const list = sortedEvents().filter(shown);
  let i = list.findIndex((e) => e.id === review.selected);
  if (i < 0) i = direction > 0 ? -1 : list.length;
  for (let j = i + direction; j >= 0 && j < list.length; j += direction) {
    if (list[j].state !== "deleted") { select(list[j].id, true); return; }
  }
}

export function nextUnreviewed() {  // the next unreviewed event in time after the selection (wrapping round)
  const list = sortedEvents().filter((e) => shown(e) && e.state === "unreviewed");
  if (!list.length) { status("no unreviewed event is shown"); return; }
  const now = selectedEvent(), after = now ? list.find((e) => e.begin > now.begin || (e.begin === now.begin && e.id > now.id)) : null;
  select((after || list[0]).id, true);
}
