"""The HTTP API and web page (``unetseg serve``)."""

from .app import ServeOptions, create_app, load_models, serve

__all__ = ["ServeOptions", "create_app", "load_models", "serve"]
