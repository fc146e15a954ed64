// Geometry of the review's spectrogram, pure functions (tests/serve/test_page_modules.py): time <-> x at
// ``pxs`` pixels per second, Hz <-> y over the rows' frequencies (top row first), boxes and what a point hits.

export const HEIGHT = 320;  // pixels of the spectrogram on the page
export const EDGE = 6;  // pixels within which an edge of a box is grabbed

export function xOf(t, pxs) { return t * pxs; }
export function tOf(x, pxs) { return x / pxs; }

export function yOf(hz, rows, height = HEIGHT) {
  const n = rows.length;  // rows top first (highest frequency first)
  if (hz >= rows[0]) return 0;
  if (hz <= rows[n - 1]) return height;
  for (let i = 0; i < n - 1; i++) {
    if (hz <= rows[i] && hz >= rows[i + 1]) return ((i + (rows[i] - hz) / ((rows[i] - rows[i + 1]) || 1)) + 0.5) * height / n;
  }
  return height;
}

export function hzOf(y, rows, height = HEIGHT) {
  const n = rows.length;
  const r = Math.min(n - 1, Math.max(0, y * n / height - 0.5));
  const i = Math.min(n - 2, Math.floor(r));
  return rows[i] + (rows[i + 1] - rows[i]) * (r - i);
}

export function fileRows(nyquist, fft) {  // the rows of the file's own spectrogram (tile view=file), top first:
  const n = fft / 2, step = 2 * nyquist / fft, rows = [];  // bins 0 .. fft/2 - 1 (the Nyquist bin left out)
  for (let i = 0; i < n; i++) rows.push((n - 1 - i) * step);
  return rows;
}

export function fitPxs(duration, width) {  // pixels per second that show a whole recording (within bounds)
  return Math.min(4000, Math.max(0.05, width / Math.max(duration, 1e-3)));
}

export function boxOf(e, view) {  // an event's box in track pixels; view: {pxs, rows, height, band}
  // an event with no band spans the band the model saw (view.band, [low, high] Hz), else the whole height
  const h = view.height || HEIGHT, band = view.band;
  const high = e.high != null ? e.high : band ? band[1] : null, low = e.low != null ? e.low : band ? band[0] : null;
  const y0 = high == null ? 0 : yOf(high, view.rows, h), y1 = low == null ? h : yOf(low, view.rows, h);
  return { x0: xOf(e.begin, view.pxs), x1: xOf(e.end, view.pxs), y0: Math.min(y0, y1), y1: Math.max(y0, y1) };
}

export function numberOf(e) {  // the event's number on the page and in exports: its id's (e12 -> 12), never renumbered
  const m = /^e(\d+)$/.exec(e.id);
  return m ? Number(m[1]) : 0;
}

export function sortEvents(events) {
  return events.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
}

export function hit(events, selected, x, y, view) {  // track pixels -> {event, mode} of the box there, or null
  const list = sortEvents(events).filter((e) => e.state !== "deleted");
  const order = list.filter((e) => e.id === selected).concat(list.filter((e) => e.id !== selected));
  for (const e of order) {
    const b = boxOf(e, view);
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

export function niceStep(span, target) {  // a round step (1, 2 or 5 times a power of ten) giving about target ticks
  const raw = span / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function clock(t, step, duration) {  // seconds, or m:ss past a minute
  const digits = step < 0.1 ? 2 : step < 1 ? 1 : 0;
  if (duration < 60) return t.toFixed(digits) + " s";
  const m = Math.floor(t / 60), s = t - 60 * m;
  return m + ":" + (s < 10 ? "0" : "") + s.toFixed(digits);
}

export function round(v, digits) { const p = Math.pow(10, digits); return Math.round(v * p) / p; }
