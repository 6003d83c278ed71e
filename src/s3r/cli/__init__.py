"""The ``s3r`` command.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and ``run(args) -> int``; this
module only wires them together and turns :class:`~s3r.errors.S3RInputError` into one line on stderr and a
non-zero exit, so users never see a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from s3r import __version__
from s3r.allocator import keep_freed_blocks
from s3r.errors import S3RInputError

# module name (inside s3r.cli) for each subcommand, in the order shown by --help
SUBCOMMANDS = ("fit", "tune", "deconvolve", "glm", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3r",
        description="Spatially smooth sparse regression for spatial omics.",
    )
    parser.add_argument("--version", action="version", version=f"s3r {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"s3r.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    keep_freed_blocks()  # large freed arrays reused, not faulted in again page by page (s3r.allocator says why)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except S3RInputError as err:
        print(f"s3r {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"s3r {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
