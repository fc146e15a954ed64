"""The one error type users see: a one-line message naming the file and what is wrong."""

from __future__ import annotations


class UnetsegError(Exception):
    """A problem with the user's input or files; the CLI prints it on one line and exits with 2."""
