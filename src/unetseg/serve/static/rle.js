// COCO run-length encodings, decoded in the page (pure functions; tests/serve/test_page_modules.py).

export function rleCounts(s) {  // COCO's compressed RLE string -> run lengths (pycocotools' rleFrString)
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20; p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

export function rlePixels(rle) {  // -> row-major pixel indices (COCO runs are column-major, zeros first)
  const [h, w] = rle.size, out = [];
  let i = 0;
  rleCounts(rle.counts).forEach((run, n) => {
    if (n % 2) for (let j = i; j < i + run; j++) out.push((j % h) * w + Math.floor(j / h));
    i += run;
  });
  return Uint32Array.from(out);
}
