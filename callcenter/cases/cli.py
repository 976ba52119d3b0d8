"""``callcenter keys ...`` and ``callcenter audit ...``: the vault's keys and the audit log.

* ``callcenter keys rotate [--batch N]``: reseal every number and recompute every token
  under the active key; prints the counts; exit 1 if some row could not be opened.
* ``callcenter keys in-use``: rows per key id, and which keys can be dropped.
* ``callcenter audit verify``: walk the audit chain; exit 1 naming the first broken
  seq when a row was edited or deleted.

The database is the service's (``--config`` / ``CALLCENTER__DATABASE__URL``) unless
``--database URL`` names another; the keys are the service's (``vault.key_file`` or the
environment, see ``callcenter.cases.vault``). The anchor key for ``audit verify`` comes
from ``CALLCENTER_AUDIT_ANCHOR_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from callcenter.config import ConfigError
from callcenter.store import Store

from .audit import AuditLog, anchor_key_from_env
from .errors import CaseError
from .rotation import keys_in_use, retirable_keys, rotate_keys
from .vault import Keyring, Vault, load_keyring

_T = TypeVar("_T")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    keys = subparsers.add_parser("keys", help="the caller identity vault's keys")
    keys.add_argument("--database", metavar="URL", help="database URL (default: the config's)")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    rotate = key_commands.add_parser(
        "rotate", help="re-encrypt every number and recompute every token under the active key"
    )
    rotate.add_argument("--batch", type=int, default=200, help="rows per transaction")
    rotate.set_defaults(handler=_rotate)
    in_use = key_commands.add_parser("in-use", help="rows per key id; which keys can retire")
    in_use.set_defaults(handler=_in_use)

    audit = subparsers.add_parser("audit", help="the audit log")
    audit.add_argument("--database", metavar="URL", help="database URL (default: the config's)")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_commands.add_parser("verify", help="check the audit log's hash chain")
    verify.set_defaults(handler=_verify)


def _database_url(args: argparse.Namespace) -> str:
    if getattr(args, "database", None):
        return str(args.database)
    from callcenter.config import load_settings

    return load_settings(getattr(args, "config", None)).database.url


def _keyring(args: argparse.Namespace) -> Keyring:
    from callcenter.config import load_settings

    key_file = load_settings(getattr(args, "config", None)).vault.key_file
    return Keyring.from_file(key_file) if key_file else load_keyring()


def _run(name: str, args: argparse.Namespace, action: Callable[[Store], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        store = Store.from_url(_database_url(args))
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (CaseError, ConfigError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except SQLAlchemyError as exc:
        # No statement or parameters: they may hold sealed values or tokens.
        print(
            f"{name}: database error ({type(exc).__name__}); is the schema migrated?",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def _rotate(args: argparse.Namespace) -> int:
    try:
        vault = Vault(_keyring(args))
        key = anchor_key_from_env()
    except (CaseError, ConfigError) as exc:
        print(f"keys rotate: {exc}", file=sys.stderr)
        return 1

    async def action(store: Store) -> Any:
        return await rotate_keys(
            store, vault, AuditLog(store, anchor_key=key), batch_size=max(1, args.batch)
        )

    report = _run("keys rotate", args, action)
    print(
        f"active key {report.active_kid}: {report.examined} identities examined, "
        f"{report.resealed} resealed, {report.retokened} retokened, {report.merged} merged, "
        f"{report.withheld} withheld (nothing to reseal)"
    )
    for identity_id, code in sorted(report.failed.items()):
        print(f"identity {identity_id}: not rotated ({code})", file=sys.stderr)
    return 0 if report.complete else 1


def _in_use(args: argparse.Namespace) -> int:
    try:
        keyring = _keyring(args)
    except (CaseError, ConfigError) as exc:
        print(f"keys in-use: {exc}", file=sys.stderr)
        return 1
    use = _run("keys in-use", args, keys_in_use)
    for kid in sorted(set(use) | set(keyring.kids)):
        counts = use.get(kid)
        sealed, tokens, recordings = (
            (counts.sealed, counts.tokens, counts.recordings) if counts else (0, 0, 0)
        )
        marks = []
        if kid == keyring.active.kid:
            marks.append("active")
        if kid not in keyring:
            marks.append("NOT IN KEYRING")
        print(f"{kid}: {sealed} sealed numbers, {tokens} tokens, {recordings} recordings"
              + (f" ({', '.join(marks)})" if marks else ""))
    retire = retirable_keys(keyring, use)
    print("can retire: " + (", ".join(retire) if retire else "none"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        key = anchor_key_from_env()
    except CaseError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 1

    async def action(store: Store) -> Any:
        return await AuditLog(store, anchor_key=key).verify()

    verdict = _run("audit verify", args, action)
    if not verdict.ok:
        for problem in verdict.problems:
            print(f"audit log broken at {problem}", file=sys.stderr)
        return 1
    signed = {
        True: "anchor signature valid",
        False: "anchor signature INVALID",
        None: "anchor not signed (no CALLCENTER_AUDIT_ANCHOR_KEY)",
    }[verdict.anchor_signed]
    print(f"audit log intact: {verdict.checked} rows, head seq {verdict.head_seq}; {signed}")
    return 0
