"""The ``unetseg`` command: a dispatch table of thin commands (images, audio), each calling the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from ..errors import UnetsegError
from .audio import add_audio_commands
from .common import configure_logging, error_line, save_traceback
from .images import add_image_commands
from .serve import add_serve_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)
    add_image_commands(sub)
    add_audio_commands(sub)
    add_serve_command(sub)
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
    except Exception as e:  # the safety net: one line, the traceback kept in a file
        if isinstance(e, RuntimeError) and "UnetsegError" in str(e):  # raised in a data-loader worker
            print(f"error: {error_line(e)}", file=sys.stderr)
            return 2
        if args.debug:
            raise
        where = save_traceback(e)
        print(f"internal error: {type(e).__name__}: {error_line(e)[:300]} (full traceback in {where}; "
              "rerun with --debug to show it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
