"""Inference: batching, restoring outputs to the original image size, post-processing, and files."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data.dataset import InputSpec
from .data.io import IMAGE_EXTENSIONS, MaskDecoder, read_image, read_mask_raw
from .data.spec import list_images
from .data.transforms import normalize, restore
from .errors import UnetsegError
from .fileio import atomic_write, write_json, write_png
from .modelfile import LoadedModel, load_model
from .postprocess import PostProcess, mask_to_polygons, postprocess_mask
from .viz import overlay, to_uint8_rgb


class InferenceDataset(Dataset):
    """Images (and, for evaluation, decoded masks) prepared for the network."""

    def __init__(self, images: list[Path], spec: InputSpec, masks: list[Path] | None = None,
                 decoder: MaskDecoder | None = None) -> None:
        self.images, self.spec, self.masks, self.decoder = images, spec, masks, decoder

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = read_image(self.images[i], self.spec.channels)
        fitted, placement = self.spec.prepare(image)
        item: dict[str, Any] = {"image": normalize(fitted, self.spec.mean, self.spec.std),
                                "placement": placement, "index": i}
        if self.masks is not None and self.decoder is not None:
            mask = self.decoder.decode(read_mask_raw(self.masks[i]), self.masks[i])
            if mask.shape != image.shape[:2]:
                raise UnetsegError(f"{self.images[i]}: image is {image.shape[1]}x{image.shape[0]} but its mask "
                                   f"{self.masks[i].name} is {mask.shape[1]}x{mask.shape[0]} (width x height)")
            item["mask"] = mask
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: [it[k] for it in items] for k in items[0]}
    out["image"] = torch.stack(out["image"])
    return out


def blend_weights(size: tuple[int, int], kind: str = "gaussian") -> torch.Tensor:
    """Per-pixel weights of one tile: a Gaussian (sigma = size / 8, as nnU-Net) or a linear ramp, both
    highest at the centre, so overlapping tiles hand over smoothly instead of meeting at a seam."""
    axes = []
    for n in size:
        pos = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        if kind == "gaussian":
            axes.append(torch.exp(-0.5 * (pos / (n / 8)) ** 2))
        elif kind == "linear":
            axes.append(1 - pos.abs() / (n / 2 + 1))
        else:
            raise UnetsegError(f"unknown blending {kind!r} (gaussian or linear)")
    return torch.clamp(axes[0][:, None] * axes[1][None, :], min=1e-3)


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts covering ``length``; the last tile ends at the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def sliding_window(forward: Any, x: torch.Tensor, tile: int, overlap: float = 0.25,
                   blend: str = "gaussian") -> torch.Tensor:
    """Logits of (N, C, H, W) input from overlapping ``tile`` x ``tile`` windows, blended."""
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    step_h, step_w = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    weights = blend_weights((th, tw), blend).to(x.device)
    out = norm = None
    for top in tile_starts(h, th, step_h):
        for left in tile_starts(w, tw, step_w):
            logits = forward(x[:, :, top:top + th, left:left + tw]).float()
            if out is None:
                out = torch.zeros((x.shape[0], logits.shape[1], h, w), device=logits.device)
                norm = torch.zeros((h, w), device=logits.device)
            out[:, :, top:top + th, left:left + tw] += logits * weights
            norm[top:top + th, left:left + tw] += weights
    return out / norm


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Predictor:
    """Runs a loaded model over images and returns class probabilities at each image's original size."""

    loaded: LoadedModel
    device: str = "auto"
    batch_size: int = 4
    workers: int = 0
    channels_last: bool = True
    backend: str = "torch"  # or "onnxruntime" (CPU)
    threads: int | None = None
    tile: int | None = None  # sliding-window tiles of this size for larger inputs
    tile_overlap: float = 0.25
    blend: str = "gaussian"
    tta: bool = False  # average over horizontal and vertical flips
    _device: torch.device = field(init=False)
    _forward: Any = field(init=False)

    def __post_init__(self) -> None:
        if self.tile and self.tile % self.loaded.input_spec.divisor:
            raise UnetsegError(f"tile {self.tile} is not divisible by the model's stride "
                               f"{self.loaded.input_spec.divisor}")
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.backend == "onnxruntime":
            from .export import OnnxBackend

            self._device, self.channels_last = torch.device("cpu"), False
            self.loaded.model.to(self._device).eval()
            self._forward = OnnxBackend(self.loaded, self.threads)
            return
        if self.backend != "torch":
            raise UnetsegError(f"unknown backend {self.backend!r} (torch or onnxruntime)")
        self._device = resolve_device(self.device)
        self.loaded.model.to(self._device).eval()
        if self.channels_last:
            self.loaded.model.to(memory_format=torch.channels_last)
        self._forward = self.loaded.model

    def loader(self, dataset: InferenceDataset) -> DataLoader:
        # Native-size (pad) inputs differ in shape, so they go one at a time.
        bs = 1 if self.loaded.input_spec.mode == "pad" or self.tile else self.batch_size
        return DataLoader(dataset, batch_size=bs, num_workers=self.workers, collate_fn=_collate)

    @torch.inference_mode()
    def run(self, dataset: InferenceDataset) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        """Yield (item, probabilities (C, H, W)) for each image, in order."""
        for batch in self.loader(dataset):
            x = batch["image"].to(self._device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.logits(x)
            for j in range(x.shape[0]):
                probs = self.activate(restore(logits[j], batch["placement"][j]))
                yield {k: v[j] for k, v in batch.items() if k != "image"}, probs.cpu()

    @torch.inference_mode()
    def probabilities(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """Class probabilities (C, H, W) for in-memory float images (H, W, C) in [0, 1], in one batch."""
        spec = self.loaded.input_spec
        prepared = [spec.prepare(img) for img in images]
        x = torch.stack([normalize(fitted, spec.mean, spec.std) for fitted, _ in prepared]).to(self._device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.logits(x)
        return [self.activate(restore(logits[j], p)).cpu() for j, (_, p) in enumerate(prepared)]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network logits, tiled and flip-averaged as configured."""

        def once(t: torch.Tensor) -> torch.Tensor:
            if self.tile and max(t.shape[2:]) > self.tile:
                return sliding_window(self._forward, t, self.tile, self.tile_overlap, self.blend)
            return self._forward(t).float()

        out = once(x)
        if self.tta:
            out = (out + once(x.flip(3)).flip(3) + once(x.flip(2)).flip(2)) / 3
        return out

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.loaded.binary else torch.softmax(logits, dim=0)

    def to_classes(self, probs: torch.Tensor, threshold: float | None = None) -> np.ndarray:
        """Probabilities -> uint8 class-index mask."""
        if self.loaded.binary:
            t = self.loaded.threshold if threshold is None else threshold
            return (probs[0] > t).numpy().astype(np.uint8)
        return probs.argmax(0).numpy().astype(np.uint8)


def resolve_inputs(spec: str | Path | list) -> list[Path]:
    """A file, a folder (its images) or a glob pattern -> image paths."""
    if isinstance(spec, list):
        return [Path(p) for p in spec]
    path = Path(spec)
    if path.is_dir():
        files = list_images(path)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(spec), recursive=True)
                       if Path(p).suffix.lower() in IMAGE_EXTENSIONS and Path(p).is_file())
        if not files and not glob.has_magic(str(spec)):
            raise UnetsegError(f"{spec}: no such file or folder")
    if not files:
        raise UnetsegError(f"{spec}: no images found")
    return files


@dataclass
class PredictResult:
    output: Path
    masks: list[Path]


def predict(model: str | Path | LoadedModel, inputs: str | Path | list, output: str | Path, *,
            threshold: float | None = None, postprocess: PostProcess | None = None, overlays: bool = False,
            probabilities: bool = False, contours: bool = False, overwrite: bool = False,
            device: str = "auto", batch_size: int = 4, workers: int = 0, backend: str = "torch",
            threads: int | None = None, tile: int | None = None, tile_overlap: float = 0.25,
            blend: str = "gaussian", tta: bool = False, coco_results: str | Path | None = None,
            coco_json: str | Path | None = None) -> PredictResult:
    """Write a mask PNG per input image (at its original size) and optional extras into ``output``.

    Masks: binary 0/255, multi-class an indexed PNG whose value is the class and whose palette draws it.
    Extras: ``overlays/<stem>.png``, ``probabilities/<stem>.png`` (binary, 0-255) or ``.npy`` (float16
    C x H x W), ``contours/<stem>.json``, and ``coco_results``: one COCO results file (an RLE per class
    and region) whose image and category ids come from ``coco_json`` when given (matched by file name and
    class name), else from the input order and class index. Existing files are kept unless ``overwrite``.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    files = resolve_inputs(inputs)
    out = Path(output)
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise UnetsegError(f"{f}: same name as {stems[f.stem]}; their outputs would collide")
        stems[f.stem] = f
    targets = _targets(out, [f.stem for f in files], loaded.binary, overlays, probabilities, contours)
    if coco_results:
        targets.append(Path(coco_results))
    image_ids, category_ids = _coco_ids(files, loaded.classes, coco_json)
    results: list[dict] = []
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise UnetsegError(f"{existing[0]}: already exists ({len(existing)} output files would be "
                               "replaced); choose another --output or pass --overwrite")
    pp = postprocess or PostProcess()
    predictor = Predictor(loaded, device=device, batch_size=batch_size, workers=workers, backend=backend,
                          threads=threads, tile=tile, tile_overlap=tile_overlap, blend=blend, tta=tta)
    palette = [list(c) for c in loaded.colours]
    written = []
    for item, probs in predictor.run(InferenceDataset(files, loaded.input_spec)):
        src = files[item["index"]]
        mask = postprocess_mask(predictor.to_classes(probs, threshold), pp, loaded.binary)
        written.append(write_mask(out / f"{src.stem}.png", mask, loaded.binary, palette))
        if overlays:
            image = to_uint8_rgb(read_image(src))
            write_png(out / "overlays" / f"{src.stem}.png", overlay(image, mask, loaded.colours, loaded.binary))
        if probabilities:
            _write_probabilities(out / "probabilities", src.stem, probs, loaded.binary)
        if coco_results:
            from .data.coco import mask_to_coco_results

            results += mask_to_coco_results(mask, image_ids[src.name], category_ids, probs.numpy())
        if contours:
            write_json(out / "contours" / f"{src.stem}.json", {
                "image": str(src), "height": mask.shape[0], "width": mask.shape[1],
                "objects": mask_to_polygons(mask, loaded.classes, loaded.binary)}, indent=None)
    if coco_results:
        write_json(coco_results, results, indent=None)
    return PredictResult(out, written)


def _coco_ids(files: list[Path], classes: list[str], coco_json: str | Path | None
              ) -> tuple[dict[str, int], dict[int, int]]:
    """Image ids by file name and category ids by class index (background left out)."""
    if coco_json is None:
        return {f.name: i for i, f in enumerate(files)}, {c: c for c in range(1, len(classes))}
    data = json.loads(Path(coco_json).read_text())
    by_file = {Path(img["file_name"]).name: int(img["id"]) for img in data.get("images", [])}
    missing = [f.name for f in files if f.name not in by_file]
    if missing:
        raise UnetsegError(f"{coco_json}: no image entry for {missing[0]} ({len(missing)} inputs unlisted)")
    by_name: dict[str, int] = {}
    for cat in data.get("categories", []):  # the last category of a name wins (Roboflow repeats a placeholder)
        by_name[cat["name"]] = int(cat["id"])
    return by_file, {c: by_name[name] for c, name in enumerate(classes) if c > 0 and name in by_name}


def write_mask(path: Path, mask: np.ndarray, binary: bool, palette: list[list[int]]) -> Path:
    if binary:
        return write_png(path, (mask * 255).astype(np.uint8))
    return write_png(path, mask, palette=palette)


def _write_probabilities(folder: Path, stem: str, probs: torch.Tensor, binary: bool) -> None:
    if binary:
        write_png(folder / f"{stem}.png", (probs[0].numpy() * 255 + 0.5).astype(np.uint8))
    else:
        atomic_write(folder / f"{stem}.npy", lambda p: np.save(p, probs.numpy().astype(np.float16)))


def _targets(out: Path, stems: list[str], binary: bool, overlays: bool, probabilities: bool,
             contours: bool) -> list[Path]:
    paths = []
    for s in stems:
        paths.append(out / f"{s}.png")
        if overlays:
            paths.append(out / "overlays" / f"{s}.png")
        if probabilities:
            paths.append(out / "probabilities" / f"{s}{'.png' if binary else '.npy'}")
        if contours:
            paths.append(out / "contours" / f"{s}.json")
    return paths
