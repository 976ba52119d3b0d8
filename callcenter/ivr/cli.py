"""``callcenter ivr ...``: commands for the IVR menu file.

``callcenter ivr check [FILE] [--queues QUEUES_CONF]`` validates a menu file
(default ``config/ivr.toml``) and prints every problem with its location;
exit status 0 when valid, 1 when not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from callcenter.pbx.asterisk_conf import AsteriskConfError

from .errors import MenuInvalid
from .menu import load_menu, queue_names

DEFAULT_MENU = Path("config/ivr.toml")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    ivr = subparsers.add_parser("ivr", help="IVR menu tools")
    commands = ivr.add_subparsers(dest="ivr_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="validate an IVR menu file",
        description="Validate an IVR menu file and list every problem with its location.",
    )
    check.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=DEFAULT_MENU,
        help=f"menu file (default {DEFAULT_MENU})",
    )
    check.add_argument(
        "--queues",
        type=Path,
        metavar="QUEUES_CONF",
        help="queues.conf whose queue names routes may use "
        "(default: the menu's queues_file setting)",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    path: Path = args.file
    queues: set[str] | None = None
    if args.queues is not None:
        try:
            queues = queue_names(args.queues)
        except (OSError, AsteriskConfError) as exc:
            print(f"{args.queues}: cannot read queues: {exc}", file=sys.stderr)
            return 1
    try:
        menu = load_menu(path, queues)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except MenuInvalid as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    checked = (
        "checked" if queues is not None or menu.queues_file else "NOT checked (no queues file)"
    )
    print(
        f"{path}: valid: {len(menu.menus)} menus, {len(menu.routes)} routes, "
        f"languages {', '.join(menu.settings.languages)}; queues {checked}"
    )
    return 0
