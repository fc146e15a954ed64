// Listening (a clip of the recording, band-passed or denoised, with a playhead the view follows) and exports.

import { $, api, download, showError, status } from "../api.js";
import { drawBoxes } from "./boxes.js";
import { round, xOf } from "./geometry.js";
import { numberOf, review, selectedEvent } from "./store.js";

const LEAD_IN = 0.25;  // seconds heard before a call: its onset is not cut
import { inView, refresh } from "./view.js";

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

export function follow() {  // the playhead follows the player, and the view follows the playhead
  if (!review.playing) return;
  const player = $("player"), viewport = $("viewport");
  const x = xOf(review.playing.begin + player.currentTime, review.pxs);
  if (x > viewport.scrollLeft + viewport.clientWidth - 20) { viewport.scrollLeft = x - 40; refresh(); } else drawBoxes();
  if (!player.paused && !player.ended) requestAnimationFrame(follow);
}

export function stopped() { review.playing = null; drawBoxes(); }

export function playSelection(band) {
  const e = selectedEvent();
  if (!e) { playView(); return; }
  if (band && e.low == null) status("event #" + numberOf(e) + " has no band of its own: playing the whole band");
  play(Math.max(0, e.begin - LEAD_IN), Math.min(review.doc.duration, e.end + LEAD_IN / 2), band ? e : null);
}

export function playView() {
  const [t0, t1] = inView();
  play(t0, t1, null);
}

export async function exportTable(format) {
  const suffix = { raven: ".selections.txt", audacity: ".labels.txt", csv: ".events.csv" }[format];
  const params = new URLSearchParams({ format, deleted: $("export-deleted").checked ? "true" : "false" });
  try {
    const text = await (await api("/reviews/" + encodeURIComponent(review.doc.name) + "/export?" + params)).text();
    download(review.doc.name + ".reviewed" + suffix, new Blob([text], { type: "text/plain" }));
  } catch (err) { showError(err.message); }
}
