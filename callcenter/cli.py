"""The ``callcenter`` command line.

Each domain contributes its subcommands from its own ``cli`` module through
``register(subparsers)``, so this file only lists them and never grows logic.
A subcommand's handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "callcenter.ivr.cli",
    "callcenter.agents.cli",
    "callcenter.sim.cli",
    "callcenter.cases.cli",
    "callcenter.cases.recordings",
    "callcenter.demo",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcenter", description="1090 helpline contact-centre backend"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="service config (TOML); default config/callcenter.toml"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
