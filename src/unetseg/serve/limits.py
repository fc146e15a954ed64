"""The server's limits and security (``ServeOptions``): each field is a flag of ``unetseg serve`` with its
default and bounds defined once here. Light: the command line reads it before anything heavy is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unetseg.core.config import check_fields, option
from unetseg.inference.options import BACKENDS


@dataclass
class ServeOptions:
    """Limits and security of the server (each is a flag of ``unetseg serve``)."""

    token: str | None = option(None, "require 'Authorization: Bearer TOKEN' on every request but /health and the "
                               "page itself", metavar="T", default_text="$UNETSEG_TOKEN, else none")
    cors: list[str] | None = None  # browser origins allowed (--cors, repeated)
    max_upload_mb: float = option(2048.0, "largest upload (written to disk as it arrives); 413 above", metavar="MB",
                                  gt=0.0, le=65536.0)
    max_pixels: int = option(40_000_000, "largest image in pixels; 413 above", metavar="N", ge=1, le=2**40)
    max_seconds: float = option(3600.0, "longest recording; 413 above", metavar="S", gt=0.0, le=10**6)
    queue: int = option(16, "requests inside the server at once; 503 with Retry-After above", metavar="N", ge=1,
                        le=10000)
    max_batch: int = option(8, "image requests run together", metavar="N", ge=1, le=1024)
    backend: str = option("auto", "inference backend, as for predict", BACKENDS)
    threads: int | None = option(None, "CPU threads", metavar="N", default_text="all", ge=1,
                                 le=os.cpu_count() or 1)
    read_timeout: float = option(30.0, "seconds a client may take between two pieces of its upload", metavar="S",
                                 gt=0.0, le=3600.0)
    variants: int = option(4, "engines kept for other tile/flip settings (least recently used dropped)",
                           metavar="N", ge=1, le=64)
    find_minutes: float = option(2.5, "minutes 'find the rest' fine-tunes on a review's boxes", metavar="M",
                                 gt=0.0, le=600.0)
    review: str | Path | None = None  # the review folder (None: a temporary one, gone when the server stops)
    recordings: str | Path | None = None  # a folder of recordings the page opens without uploading

    def __post_init__(self) -> None:
        self.cors = list(self.cors or [])
        check_fields(self)
