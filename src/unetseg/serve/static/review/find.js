// "Find the rest": the model fine-tuned on the reviewed boxes in the background (the server runs it), a
// progress bar while it runs, then its detections after the last reviewed box join the review as unreviewed.

import { $, api, json, plural, showError, status } from "../api.js";
import { replaced, review } from "./store.js";

let polling = null;

function show(job) {
  $("find-progress").hidden = job.done;
  $("find-progress").value = job.progress;
  $("find").disabled = !job.done;
  $("find-cancel").hidden = job.done;
  const where = " after " + job.after.toFixed(2) + " s";
  $("find-status").textContent = job.phase === "done" ? plural(job.added, "event") + " found" + where + " (" +
      job.elapsed_s.toFixed(0) + " s); they are unreviewed"
    : job.phase === "failed" ? "the search failed: " + job.error
    : job.phase === "cancelled" ? "cancelled"
    : job.phase + "… (" + plural(job.shots, "reviewed box", "reviewed boxes") + ", " + job.elapsed_s.toFixed(0) + " s)";
  $("find-status").dataset.phase = job.phase;
}

async function poll(name) {
  try {
    const job = await (await api("/reviews/" + encodeURIComponent(name) + "/find")).json();
    if (!review.doc || review.doc.name !== name) { clearInterval(polling); polling = null; return; }
    if (job.done) {
      clearInterval(polling); polling = null;
      // the review's new events are drawn before the status says "done", so what it says is on the page
      if (job.phase === "done") replaced(await (await api("/reviews/" + encodeURIComponent(name))).json());
      show(job);
      status($("find-status").textContent);
    } else show(job);
  } catch (err) { clearInterval(polling); polling = null; showError(err.message); }
}

export async function findRest() {
  const name = review.doc.name;
  try {
    show(await json("/reviews/" + encodeURIComponent(name) + "/find", "POST"));
    status("finding the rest in the background; keep reviewing meanwhile");
    if (!polling) polling = setInterval(() => poll(name), 1000);
  } catch (err) { showError(err.message); }
}

export async function cancelFind() {
  try { show(await json("/reviews/" + encodeURIComponent(review.doc.name) + "/find", "DELETE")); }
  catch (err) { showError(err.message); }
}

export async function resumeFind() {  // a search still running when the review is opened again: follow it
  const name = review.doc.name;
  $("find-status").textContent = "";
  $("find-progress").hidden = true;
  $("find-cancel").hidden = true;
  $("find").disabled = false;
  try {
    const job = await (await api("/reviews/" + encodeURIComponent(name) + "/find")).json();
    show(job);
    if (!job.done && !polling) polling = setInterval(() => poll(name), 1000);
  } catch (err) { /* no search */ }
}
