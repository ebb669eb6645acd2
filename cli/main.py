"""The `smft` command: serve, worker, api, teach, ask, data preparation and benchmarks."""

from __future__ import annotations

import argparse
import sys

from cli import bench, client, data, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, client, data, bench):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from worker.logs import setup_logging
    from worker.settings import CommonSettings

    args = build_parser().parse_args(argv)
    # Processes that serve log for machines (JSON by default); commands a person runs log for people.
    setup_logging(CommonSettings().log_format if getattr(args, "serving", False) else "text")
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
