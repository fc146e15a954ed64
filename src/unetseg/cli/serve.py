"""``unetseg serve``: the HTTP API and web page."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..errors import UnetsegError
from ..inference.options import BACKENDS
from .common import number

log = logging.getLogger(__name__)


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API and web page for image and recording models")
    p.add_argument("--model", action="append", required=True, help="model file (repeat for several)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [default: 127.0.0.1, this machine only]")
    p.add_argument("--port", type=number(int, ge=1, le=65535), default=8000, help="[default: 8000]")
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' on every request but /health "
                   "and the page itself [default: $UNETSEG_TOKEN, else none]")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN", help="allow browser calls from ORIGIN "
                   "(repeat; default: none)")
    p.add_argument("--max-upload-mb", type=number(float, gt=0.0, le=65536.0), default=50.0,
                   help="largest upload; 413 above [default: 50]")
    p.add_argument("--max-pixels", type=number(int, ge=1, le=2**40), default=40_000_000,
                   help="largest image in pixels; 413 above [default: 40000000]")
    p.add_argument("--max-seconds", type=number(float, gt=0.0, le=10**6), default=3600.0,
                   help="longest recording; 413 above [default: 3600]")
    p.add_argument("--queue", type=number(int, ge=1, le=10000), default=16,
                   help="requests inside the server at once; 503 with Retry-After above [default: 16]")
    p.add_argument("--max-batch", type=number(int, ge=1, le=1024), default=8,
                   help="image requests run together [default: 8]")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference backend, as for predict [default: auto]")
    p.add_argument("--threads", type=number(int, ge=1, le=os.cpu_count() or 1), default=None,
                   help="CPU threads [default: all]")
    p.add_argument("--review", metavar="DIR", help="review folder: recordings reviewed in the page are kept here "
                   "(made by 'audio detect --review' or by uploads) [default: a temporary folder, gone at exit]")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import ServeOptions, serve

    if not 0 < args.port < 65536:
        raise UnetsegError(f"--port must be 1-65535, not {args.port}")
    token = args.token or os.environ.get("UNETSEG_TOKEN") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        log.warning("serving on %s without --token: anyone who can reach this address can use the models", args.host)
    if args.review and Path(args.review).exists() and not Path(args.review).is_dir():
        raise UnetsegError(f"--review {args.review}: not a folder")
    options = ServeOptions(review=args.review, token=token, cors=args.cors,
                           max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                           max_seconds=args.max_seconds, queue=args.queue, max_batch=args.max_batch,
                           backend=args.backend, threads=args.threads)
    serve(args.model, args.host, args.port, options)
    return 0
