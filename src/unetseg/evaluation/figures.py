"""Pictures: coloured masks, overlays, labelled panels, and the training history plot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from unetseg.core.fileio import atomic_write, write_png
from unetseg.data.images import IGNORE

IGNORE_COLOUR = (255, 255, 255)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Float HxWxC image in [0, 1] (any channel count) -> uint8 HxWx3."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return (np.clip(image[:, :, :3], 0, 1) * 255 + 0.5).astype(np.uint8)


def colourize(mask: np.ndarray, colours: list[tuple[int, int, int]]) -> np.ndarray:
    """Class-index mask -> RGB image (ignored pixels white)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(colours)] = np.asarray(colours, np.uint8)
    lut[IGNORE] = IGNORE_COLOUR
    return lut[mask]


def overlay(image: np.ndarray, mask: np.ndarray, colours: list[tuple[int, int, int]], binary: bool,
            alpha: float = 0.5) -> np.ndarray:
    """Blend class colours onto a uint8 RGB image; binary masks paint the foreground only."""
    if binary:
        colours = [colours[0], colours[1] if tuple(colours[1]) != (0, 0, 0) else (230, 25, 75)]
    paint = (mask != IGNORE) & ((mask > 0) if binary else True)
    out = image.copy()
    blended = (1 - alpha) * image + alpha * colourize(mask, colours)
    out[paint] = blended[paint].astype(np.uint8)
    return out


def panel(tiles: list[np.ndarray], titles: list[str], height: int = 256) -> np.ndarray:
    """Tiles side by side, each scaled to ``height`` rows, with a title strip above each."""
    strip = 22
    cells = []
    for tile, title in zip(tiles, titles, strict=True):
        scale = height / tile.shape[0]
        width = max(1, round(tile.shape[1] * scale))
        tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_NEAREST)
        head = np.full((strip, width, 3), 255, np.uint8)
        cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cell = np.concatenate([head, tile], axis=0)
        cells.append(np.pad(cell, ((0, 0), (0, 4), (0, 0)), constant_values=255))
    return np.concatenate(cells, axis=1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    return write_png(path, image)


def plot_history(rows: list[dict], path: str | Path) -> Path:
    """Loss and IoU curves per epoch from metrics.csv rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]

    def series(key: str) -> list[float]:
        return [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, series("train_loss"), "o-", label="train")
    ax1.plot(epochs, series("val_loss"), "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    ax2.plot(epochs, series("val_iou"), "o-", color="tab:green", label="validation IoU")
    ax2.plot(epochs, series("val_dice"), "o-", color="tab:olive", label="validation Dice")
    ax2.set(xlabel="epoch", ylabel="score", title="IoU / Dice", ylim=(0, 1))
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return Path(path)


def plot_evaluation(matrix: np.ndarray, per_class: dict[str, dict], path_confusion: str | Path,
                    path_iou: str | Path) -> None:
    """A confusion matrix normalised per true class (each row sums to 1) and a per-class IoU bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_class)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true",
           title="Confusion matrix (share of each true class)")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_write(path_confusion, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)

    ious = [per_class[c]["iou"] for c in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * n + 2), 3.5))
    ax.bar(range(n), [0 if v is None else v for v in ious], color="tab:blue")
    for i, v in enumerate(ious):
        ax.text(i, (v or 0) + 0.02, "n/a" if v is None else f"{v:.2f}", ha="center", fontsize=8)
    ax.set(xticks=range(n), ylim=(0, 1.1), ylabel="IoU", title="IoU per class")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path_iou, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
