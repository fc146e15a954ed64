// The one keyboard router: the keys of the view that is open (the image's objects or the recording's review).

import { $ } from "./api.js";
import { objectKeys } from "./objects.js";
import { activeView } from "./page.js";
import { playSelection } from "./review/player.js";
import { change, remove, review, selectedEvent } from "./review/store.js";
import { step } from "./review/table.js";
import { refresh, zoom } from "./review/view.js";

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
    "+": () => zoom(1), "=": () => zoom(1), "-": () => zoom(-1),
    Escape: () => { review.selected = null; $("player").pause(); $("viewport").focus(); refresh(); },
  };
  keys.Delete = keys.d; keys.Backspace = keys.d; keys.Enter = keys.a;
  return keys;
}

export function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const focus = document.activeElement.tagName, typing = ["INPUT", "SELECT", "TEXTAREA"].includes(focus);
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
