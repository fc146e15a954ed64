"""What the server serves: its options, the models (loaded once, each an image engine with its batcher or an
audio detector), and the files a response links to."""

from __future__ import annotations

import dataclasses
import functools
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from unetseg.core.errors import UnetsegError
from unetseg.core.recent import Recent
from unetseg.models.modelfile import LoadedModel, load_model
from unetseg.serve.batcher import Batcher
from unetseg.serve.limits import ServeOptions


class ServedModel:
    """One model file, loaded once: an image engine with its batcher, or an audio detector."""

    def __init__(self, name: str, loaded: LoadedModel, options: ServeOptions) -> None:
        from unetseg.inference import Engine, InferenceOptions

        self.name, self.loaded = name, loaded
        self.kind = "audio" if loaded.meta.get("spectrogram") else "image"
        self.inference = InferenceOptions(backend=options.backend, batch_size=options.max_batch,
                                          threads=options.threads)
        self.lock = threading.Lock()
        self.variants: Recent[Any] = Recent(options.variants)
        if self.kind == "image":
            self.engine = Engine(loaded, self.inference)
            # class maps, then the instance head's maps when the model has the head (for /predict's objects)
            self.batcher = Batcher(functools.partial(self.engine.probabilities, head=True), options.max_batch)
        else:
            from unetseg.audio.detect import Detector

            self.detector = Detector(loaded, inference=self.inference)

    def engine_for(self, tile: int | None, tta: bool) -> Any:
        """An engine with other tiles or flips, sharing the chosen backend kind: the last few settings are
        kept, the least recently used dropped (memory stays bounded whatever the requests ask)."""
        from unetseg.inference import Engine

        key = (tile, tta)
        with self.lock:
            engine = self.variants.get(key)
            if engine is None:
                opts = dataclasses.replace(self.inference, backend=self.engine.backend_name, tile=tile, tta=tta)
                engine = Engine(self.loaded, opts)
                self.variants.put(key, engine)
            return engine

    def describe(self) -> dict[str, Any]:
        meta = self.loaded.meta
        return {"name": self.name, "kind": self.kind, "classes": meta["classes"], "binary": meta["binary"],
                "colours": meta["colours"], "input": meta["input"], "threshold": meta.get("threshold", 0.5),
                "events": meta.get("events"), "spectrogram": meta.get("spectrogram"),
                "backend": (self.engine if self.kind == "image" else self.detector.engine).backend_name,
                "sha256": self.loaded.digest}

    def close(self) -> None:
        if self.kind == "image":
            self.batcher.close()


class FileStore:
    """Outputs a response links to (denoised audio, spectrograms): fetched once, or gone after ``ttl`` s."""

    def __init__(self, ttl: float = 600.0, limit: int = 64) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="unetseg-serve-"))
        self.ttl, self.limit = ttl, limit
        self.files: dict[str, tuple[Path, str, float]] = {}
        self.lock = threading.Lock()

    def add(self, source: Path, media_type: str) -> str:
        key = secrets.token_urlsafe(16)
        target = self.root / key
        shutil.move(str(source), target)
        with self.lock:
            self._expire()
            self.files[key] = (target, media_type, time.monotonic())
        return f"/files/{key}"

    def take(self, key: str) -> tuple[Path, str] | None:
        with self.lock:
            self._expire()
            entry = self.files.pop(key, None)
        return (entry[0], entry[1]) if entry else None

    def _expire(self) -> None:
        now = time.monotonic()
        old = [k for k, (_, _, t) in self.files.items() if now - t > self.ttl]
        old += sorted(self.files, key=lambda k: self.files[k][2])[: max(0, len(self.files) - self.limit + 1)]
        for k in set(old):
            path, _, _ = self.files.pop(k)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load_models(paths: list[str | Path], options: ServeOptions) -> dict[str, ServedModel]:
    """Model files -> served models named by file stem, or by run folder for a run's best/last model
    (``name-2`` when two share a name)."""
    if not paths:
        raise UnetsegError("give at least one --model")
    models: dict[str, ServedModel] = {}
    for path in paths:
        loaded = load_model(path)
        base = loaded.name  # best.safetensors of a run is named after its run folder
        name, n = base, 2
        while name in models:
            name, n = f"{base}-{n}", n + 1
        models[name] = ServedModel(name, loaded, options)
    return models
