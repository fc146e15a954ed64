"""The HTTP API and web page (``unetseg serve``)."""

from .app import create_app, serve
from .models import ServeOptions, load_models

__all__ = ["ServeOptions", "create_app", "load_models", "serve"]
