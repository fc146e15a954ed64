"""The one sliding-window core: overlapping windows, blended with weights that peak at their centre.

Images use square tiles (``sliding_window``); recordings use full-height windows over spectrogram
columns that arrive block by block (``ColumnStream``). Both take their window positions from
``window_starts`` and their weights from ``blend_weights``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import torch

from unetseg.core.errors import UnetsegError


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Starts of windows of ``size`` every ``step`` covering ``length``; the last window ends at the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, max(1, step)))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def blend_weights(shape: tuple[int, ...], kind: str = "gaussian") -> torch.Tensor:
    """Weights of one window of ``shape`` (one axis or two): a Gaussian (sigma = size / 8, as nnU-Net) or
    a linear ramp per axis, highest at the centre, so overlapping windows hand over without a seam."""
    out = torch.ones(())
    for n in shape:
        pos = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        if kind == "gaussian":
            axis = torch.exp(-0.5 * (pos / (n / 8)) ** 2)
        elif kind == "linear":
            axis = 1 - pos.abs() / (n / 2 + 1)
        else:
            raise UnetsegError(f"unknown blending {kind!r} (gaussian or linear)")
        out = out[..., None] * axis
    return torch.clamp(out, min=1e-3)


def sliding_window(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
                   overlap: float = 0.25, blend: str = "gaussian") -> torch.Tensor:
    """Outputs of (N, C, H, W) input from overlapping ``tile`` x ``tile`` windows, blended."""
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    weights = blend_weights((th, tw), blend).to(x.device)
    out = norm = None
    for top in window_starts(h, th, int(th * (1 - overlap))):
        for left in window_starts(w, tw, int(tw * (1 - overlap))):
            logits = forward(x[:, :, top:top + th, left:left + tw]).float()
            if out is None:
                out = torch.zeros((x.shape[0], logits.shape[1], h, w), device=logits.device)
                norm = torch.zeros((h, w), device=logits.device)
            out[:, :, top:top + th, left:left + tw] += logits * weights
            norm[top:top + th, left:left + tw] += weights
    return out / norm


class Blend:
    """Columns ``[first, upto)`` of a ``ColumnStream``, to be blended from the windows over them: a column under
    one window is its output times its weight over the weight; under several, their weighted sum (in the order
    the windows ran) over the weights' sum. It holds its windows' outputs (never changed after the model gave
    them), so it can be blended later and in another thread than the stream's (``ColumnStream.advance``)."""

    def __init__(self, first: int, upto: int, shape: tuple[int, int],
                 windows: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        self.first, self.upto, self.shape, self.windows = first, upto, shape, windows

    def __call__(self) -> np.ndarray:
        first, upto = self.first, self.upto
        channels, rows = self.shape
        k = max(0, upto - first)
        out = np.empty((channels, rows, k), np.float32)
        if not k:
            return out
        ends = {e for s, o, _ in self.windows for e in (s, s + o.shape[-1])}
        edges = sorted({first, upto} | {e for e in ends if first < e < upto})
        for a, b in pairwise(edges):
            under = [(o[..., a - s:b - s], w[a - s:b - s]) for s, o, w in self.windows
                     if s <= a and b <= s + o.shape[-1]]
            target = out[..., a - first:b - first]
            if len(under) == 1:  # in place: no temporaries
                o, w = under[0]
                np.divide(np.multiply(o, w, out=target), np.maximum(w, 1e-8), out=target)
                continue
            acc = np.zeros((channels, rows, b - a), np.float32)
            wsum = np.zeros(b - a, np.float32)
            for o, w in under:
                acc += o * w
                wsum += w
            np.divide(acc, np.maximum(wsum, 1e-8), out=target)
        return out


class ColumnStream:
    """Full-height windows over image columns that arrive in blocks, in bounded memory.

    ``push`` takes the next columns and returns the blended outputs of the columns no later window can
    touch; ``finish`` returns the rest. Each window's outputs are kept as the model gave them until their
    columns are emitted, straight into the emitted block: a column is the weighted mean of the windows over it
    (``blend_weights``), with no running sums over the whole block, in the same operations and order as a
    plain weighted sum (the same bits as before). ``advance`` and ``end`` are ``push`` and ``finish`` with the
    blending left to the caller (a ``Blend``, run where the caller likes: detect runs it in its events thread,
    so the model's thread goes from window to window). The last window is only as wide
    as the columns left need (with the overlap, rounded up to ``pad_to``, at least ``min_width``), so short
    recordings cost little more than their length; a stream shorter than that is one window padded with zeros
    (silence in a spectrogram image) and cropped back.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], channels: int, width: int, overlap: int,
                 batch_size: int, blend: str = "linear", pad_to: int = 1, min_width: int = 1) -> None:
        if not 0 <= overlap < width:
            raise UnetsegError(f"window overlap must be in [0, {width}) columns, not {overlap}")
        self.predict, self.channels, self.width, self.batch = predict, channels, width, batch_size
        self.overlap, self.step, self.pad_to, self.blend = overlap, width - overlap, pad_to, blend
        self.min_width = -(-min(min_width, width) // pad_to) * pad_to
        self.weights = {width: blend_weights((width,), blend).numpy()}
        self.image: np.ndarray | None = None  # pending columns (rows, k)
        # (start column, outputs (C, rows, w), weights (w,)) of the windows whose columns are not all emitted
        self.outputs: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.base = 0  # stream column of image[:, 0]: every column before it is emitted
        self.next_start = 0  # stream column where the next window starts
        self.covered = 0  # columns [0, covered) have been seen by some window

    def push(self, columns: np.ndarray) -> np.ndarray:
        return self.advance(columns)()

    def finish(self) -> np.ndarray:
        return self.end()()

    def advance(self, columns: np.ndarray) -> Blend:
        """Run the windows the next ``columns`` complete; the columns no later window can touch, to blend."""
        self.image = columns if self.image is None else np.concatenate([self.image, columns], axis=1)
        end = self.base + self.image.shape[1]
        starts = []
        while self.next_start + self.width <= end:
            starts.append(self.next_start)
            self.covered = self.next_start + self.width
            self.next_start += self.step
        self._run(starts)
        # Keep the last window's worth of columns: the final window may reach back into them.
        return self._take(min(self.next_start, end - self.width))

    def end(self) -> Blend:
        """Run the last window; the columns left, to blend."""
        if self.image is None:
            return Blend(0, 0, (self.channels, 0), [])
        total = self.base + self.image.shape[1]
        if self.covered >= total:
            return self._take(total)
        need = total - max(0, self.covered - self.overlap)  # the columns left, and the overlap before them
        width = min(self.width, max(self.min_width, -(-need // self.pad_to) * self.pad_to))
        if total < width:  # shorter than one window: one padded window, cropped back
            k = self.image.shape[1]
            x = np.zeros((1, self.image.shape[0], width), self.image.dtype)
            x[0, :, :k] = self.image
            self.outputs.append((0, self.predict(x)[0][..., :k], np.ones(k, np.float32)))  # as it came
        else:  # one last window, aligned to the end
            self._run([total - width], width)
        return self._take(total)

    def _run(self, starts: list[int], width: int | None = None) -> None:
        width = width or self.width
        for i in range(0, len(starts), self.batch):
            chunk = starts[i:i + self.batch]
            x = np.stack([self.image[:, s - self.base:s - self.base + width] for s in chunk])
            if width not in self.weights:
                self.weights[width] = blend_weights((width,), self.blend).numpy()
            self.outputs += [(s, o, self.weights[width]) for s, o in zip(chunk, self.predict(x), strict=True)]

    def _take(self, upto: int) -> Blend:
        """Columns [base, upto) with the windows over them; the stream forgets them and every window that ends
        by ``upto``."""
        first = self.base
        k = max(0, upto - first)
        windows = [(s, o, w) for s, o, w in self.outputs if s < upto and s + o.shape[-1] > first] if k else []
        self.outputs = [(s, o, w) for s, o, w in self.outputs if s + o.shape[-1] > upto]
        blend = Blend(first, upto, (self.channels, self.image.shape[0]), windows)
        self.image = self.image[:, k:]
        self.base += k
        return blend
