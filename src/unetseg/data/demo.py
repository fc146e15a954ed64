"""A built-in dataset for the demo and tests: spectrogram-like images of tonal bird calls in noise.

Each image is a time (columns) x frequency (rows, high at the top) magnitude picture: coloured
background noise stronger at low frequencies, broadband clicks (vertical stripes, not calls), and 0-3
tonal calls - constant, chirping or warbling tones, sometimes with a harmonic. The mask holds exactly
the call pixels, so the segmentation task is well defined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetseg.core.fileio import write_png, write_text

SPLITS = {"train": 160, "valid": 32, "test": 32}


def tonal_call_image(rng: np.random.Generator, height: int = 128, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 image, uint8 0/1 mask) pair."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    image = 0.12 + 0.18 * (rows / height) + rng.rayleigh(0.07, (height, width)).astype(np.float32)
    for col in rng.choice(width, size=rng.integers(0, 4), replace=False):  # broadband clicks
        span = slice(int(rng.integers(0, height // 2)), height)
        image[span, col:col + int(rng.integers(1, 3))] += rng.uniform(0.1, 0.3)
    mask = np.zeros((height, width), bool)
    n_calls = 0 if rng.random() < 0.1 else int(rng.integers(1, 4))
    for _ in range(n_calls):
        duration = int(rng.integers(12, 60))
        t0 = int(rng.integers(0, width - duration))
        t = np.arange(t0, t0 + duration, dtype=np.float32)
        f0 = rng.uniform(0.15, 0.85) * height
        slope = rng.choice([0.0, rng.uniform(-0.8, 0.8)])
        wobble = rng.choice([0.0, rng.uniform(2, 6)])
        track = f0 + slope * (t - t0) + wobble * np.sin(2 * np.pi * (t - t0) / rng.uniform(8, 20))
        half_width = rng.choice([1.0, 1.5, 2.0])
        amplitude = rng.uniform(0.25, 0.6)
        tracks = [track] + ([track - (height - track)] if rng.random() < 0.3 else [])  # a harmonic above
        for tr in tracks:
            inside = np.abs(rows - tr[None, :]) <= half_width
            block = image[:, t0:t0 + duration]
            block[inside] = np.maximum(block[inside], 0.25 + amplitude * rng.uniform(0.8, 1.0))
            mask[:, t0:t0 + duration] |= inside
    picture = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return picture, mask.astype(np.uint8)


def make_demo_dataset(root: str | Path, seed: int = 0, size: int = 128) -> Path:
    """Write ``root/{train,valid,test}/{images,masks}`` (masks 0/255) unless already complete."""
    root = Path(root)
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    for split, n in SPLITS.items():
        for i in range(n):
            image, mask = tonal_call_image(rng, size, size)
            name = f"{split}_{i:04d}.png"
            write_png(root / split / "images" / name, image)
            write_png(root / split / "masks" / name, mask * 255)
    write_text(done, f"seed {seed}\n")
    return root
