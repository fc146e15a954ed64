"""The ``unetseg`` command: a dispatch table of thin commands (images, audio), each calling the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from ..errors import UnetsegError
from .audio import add_audio_commands
from .common import configure_logging, error_line
from .images import add_image_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    add_image_commands(sub)
    add_audio_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UnetsegError as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if "UnetsegError" not in str(e):
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
