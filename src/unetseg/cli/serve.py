"""``unetseg serve``: the HTTP API and web page."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from unetseg.cli.common import number
from unetseg.cli.flags import add_dataclass_arguments, dataclass_from_args
from unetseg.core.errors import UnetsegError
from unetseg.serve.limits import ServeOptions

log = logging.getLogger(__name__)
LIMITS = "limits"


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API and web page for image and recording models")
    p.add_argument("--model", action="append", help="model file (repeat for several) [default: builtin, the built-in "
                   "call prior: detect calls in any recording, and annotate, review and find the rest]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [default: 127.0.0.1, this machine only]")
    p.add_argument("--port", type=number(int, ge=1, le=65535), default=8000, help="[default: 8000]")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN", help="allow browser calls from ORIGIN "
                   "(repeat; default: none)")
    add_dataclass_arguments(p.add_argument_group("limits"), ServeOptions, LIMITS)
    p.add_argument("--review", metavar="DIR", help="review folder: recordings reviewed in the page are kept here "
                   "(made by 'audio detect --review' or by uploads) [default: a temporary folder, gone at exit]")
    p.add_argument("--recordings", metavar="DIR", help="a folder of recordings the page lists and opens for review "
                   "without uploading them")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from unetseg.serve import serve

    if not 0 < args.port < 65536:
        raise UnetsegError(f"--port must be 1-65535, not {args.port}")
    token = getattr(args, f"{LIMITS}.token") or os.environ.get("UNETSEG_TOKEN") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        log.warning("serving on %s without --token: anyone who can reach this address can use the models", args.host)
    if args.review and Path(args.review).exists() and not Path(args.review).is_dir():
        raise UnetsegError(f"--review {args.review}: not a folder")
    if args.recordings and not Path(args.recordings).is_dir():
        raise UnetsegError(f"--recordings {args.recordings}: not a folder")
    options = dataclass_from_args(ServeOptions, args, LIMITS, review=args.review, token=token, cors=args.cors,
                                  recordings=args.recordings)
    serve(args.model or ["builtin"], args.host, args.port, options)
    return 0
