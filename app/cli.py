"""voicefleet: provision, verify and benchmark a fleet of Jetson voice assistants.

Each subcommand lives in its own module with a `register()`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# module path -> its register(subparsers) adds one subcommand (with set_defaults(func=...)).
COMMAND_MODULES = [
    "app.server",  # serve
    "app.bench.cli",  # bench
    "app.bench.wyoming",  # bench-wyoming
    "app.bench.wyoming_stream",  # bench-wyoming-stream
    "app.bench.stt_bias",  # bench-bias
    "app.fit_cli",  # fit
    "app.modelstore.cli",  # models verify|pin|fetch|install|rollback
    "app.report",  # report
    "app.fleet_status",  # fleet-status
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicefleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
