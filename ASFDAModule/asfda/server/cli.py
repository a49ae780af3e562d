"""``asfda serve``: the local backend the Slicer module starts (see ``API.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.cli import add_trust_flag
from .backend import ServerSettings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the local HTTP backend over a session",
        description="Serve a session over HTTP on 127.0.0.1 for the ASFDA Slicer module. Prints "
        "'ASFDA backend ready on URL' when ready and writes DIR/server.json (URL, port, token).",
    )
    parser.add_argument("--session", required=True, type=Path, help="session folder (DIR)")
    parser.add_argument(
        "--model", type=Path, help="model folder or file: creates the session when DIR has none"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda[:N] or mps"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--allow-dir",
        dest="allow_dirs",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder the backend may read volumes from (repeatable)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=ServerSettings.max_upload_bytes / 2**20,
        help="largest accepted upload (default: %(default).0f)",
    )
    parser.add_argument(
        "--max-megavoxels",
        type=float,
        default=ServerSettings.max_voxels / 2**20,
        help="largest volume accepted, in millions of voxels, checked from the file's header before its "
        "voxels are read (default: %(default).0f; also ASFDA_MAX_MEGAVOXELS)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=float,
        default=ServerSettings.cancel_grace_seconds,
        help="seconds a cancelled job may take to stop before its worker is killed",
    )
    add_trust_flag(parser)
    parser.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides 127.0.0.1, localhost and [::1] (repeatable): the name a reverse "
        "proxy forwards; an SSH tunnel needs none",
    )
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from .serve import ServeOptions, serve

    if not 0 <= args.port <= 65535:
        raise SystemExit(f"asfda serve: error: --port {args.port} is not a port number")
    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        cancel_grace_seconds=args.cancel_grace,
        max_voxels=int(args.max_megavoxels * 2**20),
        trust_bundle_code=args.trust_bundle_code,
        allowed_hosts=tuple(args.allow_hosts),
    )
    return serve(
        ServeOptions(
            args.session, args.model, args.device, args.port, args.allow_dirs, settings, args.verbose
        )
    )
