// The one keyboard router: the keys of the view that is open (the image's objects or the recording's review).

import { $ } from "./api.js";
import { objectKeys } from "./objects.js";
import { activeView } from "./page.js";
import { setDrawMode } from "./review/boxes.js";
import { playSelection } from "./review/player.js";
import { change, remove, review, selectedEvent, undoRedo } from "./review/store.js";
import { nextUnreviewed, step } from "./review/table.js";
import { fit, refresh, zoom } from "./review/view.js";

function reviewKeys() {
  const e = selectedEvent();
  const keys = {
    n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
    a: async () => { if (e) { await change(e, { state: "accepted" }); step(1); } },
    d: async () => { if (e) { await remove(e); step(1); } },
    u: () => e && change(e, { state: "unreviewed" }),
    " ": () => { const player = $("player"); if (!player.paused) player.pause(); else playSelection(false); },
    b: () => playSelection(true),
    l: () => { if (e) $("label").focus(); },
    "+": () => zoom(1), "=": () => zoom(1), "-": () => zoom(-1), f: fit, N: nextUnreviewed,
    w: () => setDrawMode(!review.drawMode),
    Escape: () => { review.selected = null; $("player").pause(); $("viewport").focus(); refresh(); },
  };
  keys.Delete = keys.d; keys.Backspace = keys.d; keys.Enter = keys.a;
  return keys;
}

function undoKeys(ev, typing) {  // Ctrl+Z, Ctrl+Shift+Z and Ctrl+Y in a review (not while typing a label)
  if (activeView() !== "audio" || !review.doc || typing || ev.altKey) return false;
  const key = ev.key.toLowerCase();
  if (key === "z") { ev.preventDefault(); undoRedo(ev.shiftKey ? "redo" : "undo"); return true; }
  if (key === "y") { ev.preventDefault(); undoRedo("redo"); return true; }
  return false;
}

export function onKey(ev) {
  const focus = document.activeElement.tagName, typing = ["INPUT", "SELECT", "TEXTAREA"].includes(focus) &&
    document.activeElement.type !== "checkbox";
  if (ev.ctrlKey || ev.metaKey) { undoKeys(ev, typing && !["range", "select-one"].includes(document.activeElement.type)); return; }
  if (ev.altKey) return;
  let keys;
  if (activeView() === "image") {
    if (typing) return;
    keys = objectKeys();
  } else if (activeView() === "audio" && review.doc) {
    if ((typing || focus === "BUTTON") && ev.key !== "Escape") return;  // Escape leaves the label or a button
    keys = reviewKeys();
  } else {
    return;
  }
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
}
