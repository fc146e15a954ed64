"""The ``unetseg`` command: a dispatch table of thin commands (images, audio), each calling the library."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable

from unetseg.cli.audio import add_audio_commands
from unetseg.cli.common import Parser, configure_logging, error_line, save_traceback
from unetseg.cli.images import add_image_commands
from unetseg.cli.serve import add_serve_command
from unetseg.core.errors import UnetsegError
from unetseg.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unetseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)
    add_image_commands(sub)
    add_audio_commands(sub)
    add_serve_command(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every clean-up on the way out runs (temporary files
    removed, records of runs that wrote nothing taken back), as for Ctrl-C."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


# A full disk, a read-only or foreign folder: what the user can fix, said in one line (exit 2).
USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def _empty_value(argv: list[str]) -> str | None:
    """The flag given an empty value (``--output=``, ``--input ""``): never read as the current folder."""
    for i, token in enumerate(argv):
        if token.startswith("--") and token.endswith("=") and len(token) > 3:
            return token[:-1]
        if token == "":
            previous = argv[i - 1] if i else ""
            return previous if previous.startswith("-") else "an argument"
    return None


def _user_os_error(e: BaseException) -> OSError | None:
    """The OSError a user can fix (full disk, read-only folder) behind ``e``, also when a library wrapped it
    (safetensors, libsndfile and ONNX say "No space left on device" in their own exceptions)."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in USER_OS_ERRORS:
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    for code in USER_OS_ERRORS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    empty = _empty_value(argv)
    if empty is not None:
        print(f"error: {empty}: empty value; give a path or value (an empty one is never read as the current "
              "folder)", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or our one-line usage error
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    configure_logging(args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return func(args)
    except UnetsegError as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated: complete outputs are kept and unfinished ones removed; --resume finishes a predict or "
              "detect folder, train --resume a run", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the safety net: one line, the traceback kept in a file
        if isinstance(e, RuntimeError) and "UnetsegError" in str(e):  # raised in a data-loader worker
            print(f"error: {error_line(e)}", file=sys.stderr)
            return 2
        user = _user_os_error(e)
        if user is None:
            return _internal(e, args.debug)
        where = f"{user.filename}: " if user.filename else ""
        print(f"error: {where}{user.strerror or user}; nothing half-written was left (complete outputs are kept)",
              file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _internal(e: Exception, debug: bool) -> int:
    if debug:
        raise e
    try:
        where = f"full traceback in {save_traceback(e)}"
    except Exception as failed:  # noqa: BLE001 - a cache that cannot be written must not hide the error
        where = f"the traceback could not be kept: {type(failed).__name__}: {error_line(failed)[:120]}"
    print(f"internal error: {type(e).__name__}: {error_line(e)[:300]} ({where}; rerun with --debug to show it)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
