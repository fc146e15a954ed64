"""The one error type users see: a one-line message naming the file and what is wrong."""

from __future__ import annotations


class UnetsegError(Exception):
    """A problem with the user's input or files; the CLI prints it on one line and exits with 2."""


def schema_error(error: object, where: str) -> UnetsegError:
    """A pydantic ``ValidationError`` as one line naming ``where`` (a file or a field) and the first problem:
    ``where: field.sub: what is wrong (got value)``."""
    problems = error.errors()  # type: ignore[attr-defined]
    first = problems[0] if problems else {"loc": (), "msg": str(error)}
    field = ".".join(str(p) for p in first.get("loc", ()))
    got = repr(first.get("input"))[:40] if "input" in first else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    text = f"{where}: {field + ': ' if field else ''}{' '.join(str(first.get('msg', '')).split())}"
    return UnetsegError(f"{text}{f' (got {got})' if got else ''}{more}")
