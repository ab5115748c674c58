"""Command line: ``python -m unetlib.data fetch NAME [--root DIR]`` and ``... list``."""

from __future__ import annotations

import argparse
import sys

from unetlib.interrupt import run_command


def main(argv: list[str] | None = None) -> int:
    """``python -m unetlib.data fetch|describe|list``.

    Returns the exit status: 0 on success, 1 on an error (printed, not raised), 130 when
    interrupted."""
    from .fetch import SOURCES, main_fetch

    parser = argparse.ArgumentParser(prog="python -m unetlib.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a data set from its official source")
    f.add_argument("name", help="data set: " + ", ".join(sorted(SOURCES)))
    f.add_argument("--root", default=None, help="data folder (default: unetlib.paths.data_root())")
    f.add_argument("--base-url", default=None, help="mirror to download from instead")
    f.add_argument("--force", action="store_true", help="download again even if present")
    f.add_argument("--no-verify", action="store_true", help="accept a SHA-256 mismatch")
    d = sub.add_parser("describe", help="load a data set and print its splits")
    d.add_argument("name")
    d.add_argument("--root", default=None)
    sub.add_parser("list", help="list the fetchable data sets")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, srcs in sorted(SOURCES.items()):
            print(f"{name}: " + ", ".join(s.url for s in srcs))
        return 0
    if args.command == "describe":
        from . import load_dataset

        for split in ("train", "test"):
            try:
                print(load_dataset(args.name, split, root=args.root).describe())
            except (FileNotFoundError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        return 0
    return run_command(
        lambda: main_fetch(args.name, args.root, args.base_url, args.force, not args.no_verify),
        "partial files removed", errors=())


if __name__ == "__main__":
    sys.exit(main())
