"""``asfda``: the engine's command line, one sub-command a pipeline stage (like nnU-Net v2's entry points)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import ASFDAError
from . import commands

# Each module registers its sub-commands; a module whose optional dependencies are missing is skipped.
COMMAND_MODULES = (
    "asfda.cli.commands",
    "asfda.benchmark.cli",
    "asfda.server.cli",
    "asfda.models.cli",
    "asfda.benchmark.speed.speed",
    "asfda.benchmark.speed.speed_loop",
    "asfda.benchmark.running.oracle",
    "asfda.benchmark.effort.edit_effort_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asfda", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(subparsers)
    for name in COMMAND_MODULES[1:]:
        try:
            module = __import__(name, fromlist=["register"])
        except ImportError as error:
            logging.getLogger(__name__).debug("sub-commands of %s unavailable: %s", name, error)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # sessions, masks and checkpoints are the user's only
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except ASFDAError as error:
        print(f"asfda {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only session, a folder that vanished: the file and the reason
        where = f"{error.filename}: " if error.filename else ""
        print(f"asfda {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asfda {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
