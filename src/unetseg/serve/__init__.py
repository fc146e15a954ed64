"""The HTTP API and web page (``unetseg serve``): ``create_app`` and ``serve`` (``app``), the server's limits
(``limits.ServeOptions``) and its models (``models``). Loaded lazily, so that the command line can read the
limits without FastAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetseg.core.lazy import lazy

__all__ = ["ServeOptions", "create_app", "load_models", "serve"]

if TYPE_CHECKING:
    from unetseg.serve.app import create_app, serve
    from unetseg.serve.limits import ServeOptions
    from unetseg.serve.models import load_models

__getattr__ = lazy(__name__, {"create_app": "app", "serve": "app", "ServeOptions": "limits",
                               "load_models": "models"})
