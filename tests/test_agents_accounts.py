"""Agent accounts on a real SQLite file and a real PostgreSQL server; the users CLI."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

import callcenter.agents.cli as users_cli
from callcenter.agents.accounts import AccountService
from callcenter.agents.errors import (
    AccountExists,
    InvalidAccountData,
    UnknownAccount,
    WeakPassword,
)
from callcenter.agents.models import Account, AgentAccount, Role, SkillQueues
from callcenter.store import Base, Store
from tests.support.services import create_database, drop_database

PASSWORD = "correct horse battery"
# Cheap parameters keep the suite fast; the service's default is argon2-cffi's RFC 9106 one.
CHEAP = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts verifications, to see the unknown-user path work."""

    def __init__(self, **params: int) -> None:
        super().__init__(**params)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verifications += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'callcenter.sqlite3'}"
        return
    # postgres_db_url is async and cannot be pulled in dynamically; same thing by hand.
    url = await create_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(database_url)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher(**CHEAP)


@pytest.fixture
def service(store: Store, hasher: CountingHasher, clock: Clock) -> AccountService:
    return AccountService(store, hasher=hasher, clock=clock)


async def _add(service: AccountService, username: str = "asha", **overrides: object) -> Account:
    fields: dict[str, object] = {
        "display_name": "Asha Verma",
        "role": "agent",
        "endpoint": "PJSIP/agent1001",
        "password": PASSWORD,
        "skills": ["hi", "emergency"],
    }
    fields.update(overrides)
    return await service.add(username, **fields)  # type: ignore[arg-type]


async def _stored_hash(store: Store, username: str) -> str:
    async with store.session() as session:
        row = await session.scalar(select(AgentAccount).where(AgentAccount.username == username))
        assert row is not None
        return row.password_hash


# -- schema ------------------------------------------------------------------------


async def test_revision_0002_matches_the_models_and_downgrades_cleanly(
    database_url: str,
) -> None:
    # Only up to 0002: later revisions belong to other domains.
    store = Store.from_url(database_url)
    try:
        await _check_revision_0002(store)
    finally:
        await store.close()


async def _check_revision_0002(store: Store) -> None:
    await store.migrate("0002")
    assert await store.current_revision() == "0002"

    def ours(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
        # Other domains' tables may be in Base.metadata when the whole suite runs.
        return type_ != "table" or bool(name and name.startswith("agent_"))

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"include_object": ours})
        return compare_metadata(context, Base.metadata)

    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with store.engine.connect() as connection:
        assert await connection.run_sync(diff) == []
    await store.downgrade("0001")
    async with store.engine.connect() as connection:
        remaining = await connection.run_sync(tables)
    assert {"agent_account", "agent_skill"}.isdisjoint(remaining)
    assert "service_instance" in remaining
    await store.migrate("0002")
    assert await store.current_revision() == "0002"


# -- add, get, list ----------------------------------------------------------------


async def test_add_normalises_and_reads_back_without_the_hash(
    service: AccountService, clock: Clock
) -> None:
    created = await _add(
        service, "  Asha.Verma ", endpoint="pjsip/agent1001", skills=["HI", "counselling"],
        role="Counsellor", display_name="  Asha   Verma ",
    )
    assert created.username == "asha.verma"
    assert created.endpoint == "PJSIP/agent1001"
    assert created.role is Role.COUNSELLOR
    assert created.skills == {"hi", "counselling"}
    assert created.display_name == "Asha Verma"
    assert created.enabled and created.disabled_at is None

    fetched = await service.get("ASHA.VERMA")
    assert fetched == created
    assert fetched.created_at == clock.now  # aware and UTC on SQLite too
    assert not any("hash" in name for name in Account.__slots__)
    assert fetched.queues(service.skill_queues) == (
        "wpl-counselling", "wpl-general-hi", "wpl-fallback",
    )


async def test_duplicate_username_in_any_case_is_refused(service: AccountService) -> None:
    await _add(service, "asha")
    with pytest.raises(AccountExists):
        await _add(service, "ASHA", endpoint="PJSIP/agent1002")
    assert [a.username for a in await service.list()] == ["asha"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"endpoint": "PJSIP/1001@evil.example"}, "endpoint"),
        ({"endpoint": "SIP/1001"}, "endpoint"),
        ({"endpoint": "PJSIP/1001\r\nAction: Originate"}, "endpoint"),
        ({"skills": ["hi", "telugu"]}, "skills"),
        ({"role": "superuser"}, "role"),
        ({"password": "short"}, "password"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "Asha\x1b[31m"}, "display_name"),
    ],
)
async def test_invalid_account_data_is_refused_and_nothing_is_stored(
    service: AccountService, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidAccountData) as caught:
        await _add(service, **overrides)
    assert caught.value.field == field
    assert await service.list() == []


async def test_password_equal_to_username_is_weak(service: AccountService) -> None:
    with pytest.raises(WeakPassword):
        await _add(service, "priyanka.s", password="Priyanka.S")


async def test_list_filters_by_role_and_enabled(service: AccountService) -> None:
    await _add(service, "asha")
    await _add(service, "meena", role="counsellor", skills=["counselling"])
    await _add(service, "kavita", role="supervisor", skills=[])
    await service.disable("asha")

    assert [a.username for a in await service.list()] == ["asha", "kavita", "meena"]
    enabled = await service.list(include_disabled=False)
    assert [a.username for a in enabled] == ["kavita", "meena"]
    counsellors = await service.list(role=Role.COUNSELLOR)
    assert [a.username for a in counsellors] == ["meena"]
    assert [a.username for a in await service.by_endpoint("PJSIP/agent1001")] == [
        "kavita", "meena",
    ]


async def test_unknown_account(service: AccountService) -> None:
    with pytest.raises(UnknownAccount):
        await service.get("nobody")
    with pytest.raises(UnknownAccount):
        await service.disable("nobody")
    assert await service.find("not a valid name!") is None


# -- passwords ---------------------------------------------------------------------


async def test_verify_password_paths_all_cost_one_verification(
    service: AccountService, hasher: CountingHasher
) -> None:
    await _add(service, "asha")

    hasher.verifications = 0
    account = await service.verify_password("Asha", PASSWORD)
    assert account is not None and account.username == "asha"
    assert hasher.verifications == 1

    for username, password in [
        ("asha", PASSWORD + "!"),  # wrong password
        ("nobody", PASSWORD),  # unknown user: checked against the dummy hash
        ("no such name!", PASSWORD),  # not even a valid username
    ]:
        hasher.verifications = 0
        assert await service.verify_password(username, password) is None
        assert hasher.verifications == 1, username


async def test_disabled_account_cannot_sign_in_until_enabled(
    service: AccountService, clock: Clock
) -> None:
    await _add(service, "asha")
    first = await service.disable("asha")
    assert first.disabled_at == clock.now and not first.enabled
    assert await service.verify_password("asha", PASSWORD) is None

    clock.now += timedelta(hours=1)
    again = await service.disable("asha")
    assert again.disabled_at == first.disabled_at, "disabling twice keeps the first date"

    enabled = await service.enable("asha")
    assert enabled.enabled and enabled.disabled_at is None
    assert await service.verify_password("asha", PASSWORD) is not None


async def test_sign_in_rehashes_when_parameters_change(store: Store, clock: Clock) -> None:
    old = AccountService(store, hasher=PasswordHasher(**CHEAP), clock=clock)
    await _add(old, "asha")
    old_hash = await _stored_hash(store, "asha")
    assert "t=1," in old_hash

    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    new = AccountService(store, hasher=stronger, clock=clock)
    # A wrong password must not trigger a rehash.
    assert await new.verify_password("asha", "not her password") is None
    assert await _stored_hash(store, "asha") == old_hash

    assert await new.verify_password("asha", PASSWORD) is not None
    new_hash = await _stored_hash(store, "asha")
    assert new_hash != old_hash
    assert not stronger.check_needs_rehash(new_hash)
    stronger.verify(new_hash, PASSWORD)
    # And she still signs in (the old service verifies any parameters).
    assert await old.verify_password("asha", PASSWORD) is not None


async def test_set_password(service: AccountService, clock: Clock) -> None:
    await _add(service, "asha")
    clock.now += timedelta(days=30)
    changed = await service.set_password("asha", "a new long passphrase")
    assert changed.password_changed_at == clock.now
    assert await service.verify_password("asha", PASSWORD) is None
    assert await service.verify_password("asha", "a new long passphrase") is not None
    with pytest.raises(WeakPassword):
        await service.set_password("asha", "short")


async def test_set_skills_replaces_them(service: AccountService) -> None:
    await _add(service, "asha", skills=["hi", "emergency"])
    updated = await service.set_skills("asha", ["emergency", "EN", "counselling"])
    assert updated.skills == {"emergency", "en", "counselling"}
    assert (await service.get("asha")).skills == {"emergency", "en", "counselling"}
    assert (await service.set_skills("asha", [])).skills == frozenset()
    with pytest.raises(InvalidAccountData):
        await service.set_skills("asha", ["driving"])
    assert (await service.get("asha")).skills == frozenset()


async def test_skills_follow_the_configured_mapping(store: Store) -> None:
    mapping = SkillQueues.from_mapping(
        {
            "hi": "wpl-general-hi",
            "bhojpuri": ["wpl-general-hi", "wpl-bhojpuri"],
            "everyone": ["wpl-fallback", "wpl-callback"],
        }
    )
    service = AccountService(store, hasher=PasswordHasher(**CHEAP), skill_queues=mapping)
    account = await _add(service, "rekha", skills=["bhojpuri", "hi"])
    assert account.queues(mapping) == (
        "wpl-general-hi", "wpl-bhojpuri", "wpl-fallback", "wpl-callback",
    )
    with pytest.raises(InvalidAccountData):
        await _add(service, "sunita", skills=["emergency"])  # not in this mapping


def test_skill_mapping_from_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SkillQueues.from_mapping({"hi": []})
    with pytest.raises(ValueError):
        SkillQueues.from_mapping({"fallback": ""})
    default = SkillQueues()
    assert default.queues_for([]) == ("wpl-fallback",)
    assert default.fallback == "wpl-fallback"


# -- the users CLI -------------------------------------------------------------------


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"

    async def migrate() -> None:
        store = Store.from_url(url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    # Keep the CLI's hashing cheap; its production default is argon2-cffi's profile.
    monkeypatch.setattr(
        users_cli, "AccountService",
        lambda store: AccountService(store, hasher=PasswordHasher(**CHEAP)),
    )
    yield url


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="callcenter")
    parser.add_argument("--config")
    users_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def _verify(url: str, username: str, password: str) -> bool:
    async def check() -> bool:
        store = Store.from_url(url)
        try:
            service = AccountService(store, hasher=PasswordHasher(**CHEAP))
            return await service.verify_password(username, password) is not None
        finally:
            await store.close()

    return asyncio.run(check())


def test_cli_add_with_prompted_password_list_and_disable(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(users_cli.getpass, "getpass", fake_getpass)
    code = _cli(
        "users", "--database", cli_database, "add", "asha", "--name", "Asha [bold]Verma",
        "--role", "agent", "--endpoint", "PJSIP/agent1001", "--skill", "hi",
        "--skill", "emergency",
    )
    assert code == 0
    assert len(prompts) == 2, "asked twice"
    assert _verify(cli_database, "asha", PASSWORD)

    code = _cli("users", "--database", cli_database, "list")
    out = capsys.readouterr().out
    assert code == 0
    assert "asha" in out and "Asha [bold]Verma" in out and "emergency, hi" in out
    assert "$argon2" not in out and PASSWORD not in out

    assert _cli("users", "--database", cli_database, "disable", "asha") == 0
    assert not _verify(cli_database, "asha", PASSWORD)
    _cli("users", "--database", cli_database, "list")
    assert "disabled" in capsys.readouterr().out


def test_cli_password_from_stdin_and_mismatch(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    base = ("users", "--database", cli_database, "add")
    rest = ("--name", "Meena", "--role", "counsellor", "--endpoint", "PJSIP/agent1002")
    assert _cli(*base, "meena", *rest, "--password-stdin") == 0
    assert _verify(cli_database, "meena", PASSWORD)

    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda prompt="": next(answers))
    assert _cli(*base, "farida", *rest) == 1
    err = capsys.readouterr().err
    assert "do not match" in err and PASSWORD not in err

    assert _cli("users", "--database", cli_database, "disable", "nobody") == 1
    assert "no account named 'nobody'" in capsys.readouterr().err


def test_cli_reports_a_duplicate_without_a_traceback(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("users", "--database", cli_database, "add", "asha", "--name", "Asha",
            "--role", "agent", "--endpoint", "PJSIP/agent1001", "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(*args) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(*args) == 1
    assert "already exists" in capsys.readouterr().err
