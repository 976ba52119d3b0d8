"""``callcenter users ...``: manage agent accounts from the shell.

* ``callcenter users add USERNAME --name NAME --role ROLE --endpoint PJSIP/agent1001
  [--skill hi --skill counselling] [--password-stdin]``: the password is asked twice
  without echo, or read from the first line of stdin (for provisioning scripts);
* ``callcenter users list [--enabled-only] [--role ROLE]``: a table, never a hash;
* ``callcenter users disable USERNAME`` / ``enable USERNAME``.

The database is the service's (``--config`` / ``CALLCENTER__DATABASE__URL``) unless
``--database URL`` names another. The schema must be migrated (``alembic upgrade head``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from callcenter.store import Store

from .accounts import AccountService
from .errors import AccountError
from .models import Account, Role

_T = TypeVar("_T")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    users = subparsers.add_parser("users", help="agent accounts")
    users.add_argument(
        "--database", metavar="URL",
        help="database URL (default: the service config's database.url)",
    )
    commands = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)

    add = commands.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name shown to supervisors")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--endpoint", required=True, help="softphone, e.g. PJSIP/agent1001")
    add.add_argument(
        "--skill", action="append", default=[], dest="skills",
        help="a skill (repeat): hi, en, counselling, emergency",
    )
    add.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of stdin instead of asking",
    )
    add.set_defaults(handler=_add)

    listing = commands.add_parser("list", help="list accounts")
    listing.add_argument("--enabled-only", action="store_true")
    listing.add_argument("--role", choices=[r.value for r in Role])
    listing.set_defaults(handler=_list)

    for name, handler, text in (
        ("disable", _disable, "disable an account (she can no longer sign in)"),
        ("enable", _enable, "enable a disabled account"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("username")
        command.set_defaults(handler=handler)


# -- handlers ----------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args.password_stdin, sys.stdin)
    except ValueError as exc:
        print(f"users add: {exc}", file=sys.stderr)
        return 1

    async def run(service: AccountService) -> Account:
        return await service.add(
            args.username, display_name=args.name, role=args.role, endpoint=args.endpoint,
            password=password, skills=args.skills,
        )

    return _run(args, run, lambda a: f"created {a.username} ({a.role.value}, {a.endpoint})")


def _list(args: argparse.Namespace) -> int:
    async def run(service: AccountService) -> list[Account]:
        return await service.list(include_disabled=not args.enabled_only, role=args.role)

    def show(accounts: list[Account]) -> str:
        _print_table(accounts, sys.stdout)
        return ""

    return _run(args, run, show)


def _disable(args: argparse.Namespace) -> int:
    async def run(service: AccountService) -> Account:
        return await service.disable(args.username)

    return _run(args, run, lambda a: f"disabled {a.username}")


def _enable(args: argparse.Namespace) -> int:
    async def run(service: AccountService) -> Account:
        return await service.enable(args.username)

    return _run(args, run, lambda a: f"enabled {a.username}")


# -- helpers -----------------------------------------------------------------------


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        line = stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise ValueError("no password on stdin")
        return password
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password again: ")
    if first != second:
        raise ValueError("the passwords do not match")
    return first


def _database_url(args: argparse.Namespace) -> str:
    if getattr(args, "database", None):
        return str(args.database)
    from callcenter.config import load_settings

    return load_settings(getattr(args, "config", None)).database.url


def _run(
    args: argparse.Namespace,
    action: Callable[[AccountService], Awaitable[_T]],
    report: Callable[[_T], str],
) -> int:
    async def main() -> _T:
        store = Store.from_url(_database_url(args))
        try:
            return await action(AccountService(store))
        finally:
            await store.close()

    try:
        result = asyncio.run(main())
    except AccountError as exc:
        print(f"users {args.users_command}: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # No statement or parameters: a failed insert's parameters include the hash.
        print(
            f"users {args.users_command}: database error ({type(exc).__name__}); "
            "is the schema migrated (alembic upgrade head)?",
            file=sys.stderr,
        )
        return 1
    message = report(result)
    if message:
        print(message)
    return 0


def _print_table(accounts: list[Account], out: TextIO) -> None:
    table = Table(title=f"{len(accounts)} account(s)")
    for column in ("username", "name", "role", "skills", "endpoint", "status", "created"):
        table.add_column(column)
    for account in accounts:
        status = "enabled" if account.enabled else f"disabled {account.disabled_at:%Y-%m-%d}"
        # Text, not markup: a display name like "[red]x" must print as typed.
        table.add_row(
            Text(account.username),
            Text(account.display_name),
            account.role.value,
            ", ".join(sorted(account.skills)) or "-",
            Text(account.endpoint),
            status,
            f"{account.created_at:%Y-%m-%d}",
        )
    Console(file=out, width=120).print(table)
