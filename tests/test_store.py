"""callcenter.store against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from callcenter.store import (
    Base,
    ServiceInstance,
    Store,
    create_engine,
    head_revision,
    load_models,
)
from tests.support.services import create_database, drop_database


def _instance(**overrides: object) -> ServiceInstance:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "hostname": "helpline-app-1",
        "pid": 4242,
        "version": "0.1.0",
        "started_at": now,
        "last_seen_at": now,
    }
    fields.update(overrides)
    return ServiceInstance(**fields)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    database_url: str | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'callcenter.sqlite3'}"
    else:
        # postgres_db_url is async and cannot be pulled in dynamically; same thing by hand.
        url = database_url = await create_database(request.getfixturevalue("postgres_url"))
    store = Store.from_url(url)
    try:
        yield store
    finally:
        await store.close()
        if database_url is not None:
            await drop_database(database_url)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrate_up_insert_select_and_down(store: Store) -> None:
    await store.migrate()
    assert await store.current_revision() == head_revision()

    started = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    async with store.transaction() as session:
        session.add(_instance(id="a", started_at=started, last_seen_at=started, owns_pbx="up-1"))
        session.add(_instance(id="b", started_at=started, last_seen_at=started))

    async with store.session() as session:
        owners = (
            await session.scalars(
                select(ServiceInstance.id).where(ServiceInstance.owns_pbx.is_not(None))
            )
        ).all()
        assert owners == ["a"]
        row = await session.get(ServiceInstance, "b")
        assert row is not None and row.stopped_at is None and row.pid == 4242

    await store.downgrade("base")  # through every later revision, then ours
    assert await store.current_revision() is None
    async with store.engine.connect() as connection:
        tables = await connection.run_sync(_tables)
    assert "service_instance" not in tables

    await store.migrate()  # up again from nothing: the downgrade left no debris behind
    assert await store.current_revision() == head_revision()


async def test_migrations_match_the_models(store: Store) -> None:
    """A model change without its Alembic revision is caught here, on both backends."""
    await store.migrate()

    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), load_models())

    async with store.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_transaction_rolls_back_on_error(store: Store) -> None:
    await store.migrate()
    async with store.transaction() as session:
        session.add(_instance(id="dup"))

    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            session.add(_instance(id="other"))
            await session.flush()
            session.add(_instance(id="dup"))

    async with store.session() as session:
        ids = (await session.scalars(select(ServiceInstance.id))).all()
    assert ids == ["dup"], "the failed transaction's first insert must not survive"


async def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'db.sqlite3'}"))
    try:
        async with store.engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert (journal, foreign_keys) == ("wal", 1)
        assert busy >= 1000
        assert (tmp_path / "nested" / "db.sqlite3").exists()
    finally:
        await store.close()


async def test_timestamps_keep_their_instant(store: Store) -> None:
    await store.migrate()
    ist = datetime(2026, 11, 22, 13, 30, tzinfo=UTC) + timedelta(0)
    async with store.transaction() as session:
        session.add(_instance(id="t", started_at=ist, last_seen_at=ist))
    async with store.session() as session:
        row = await session.get(ServiceInstance, "t")
        assert row is not None
        seen = row.last_seen_at
    # SQLite hands back naive datetimes; the instant (read as UTC) must be the same.
    assert seen.replace(tzinfo=seen.tzinfo or UTC) == ist


async def test_postgres_concurrent_transactions(postgres_db_url: str) -> None:
    store = Store.from_url(postgres_db_url)
    try:
        await store.migrate()
        async with store.transaction() as session:
            session.add(_instance(id="shared", pid=0))

        async def announce_and_touch(n: int) -> None:
            async with store.transaction() as session:
                session.add(_instance(id=f"worker-{n}", pid=n))
                # Every worker bumps the same row: row locks must serialise these updates
                # without losing one or deadlocking.
                await session.execute(
                    update(ServiceInstance)
                    .where(ServiceInstance.id == "shared")
                    .values(pid=ServiceInstance.pid + 1)
                )

        await asyncio.gather(*(announce_and_touch(n) for n in range(20)))

        async with store.session() as session:
            count = await session.scalar(select(func.count()).select_from(ServiceInstance))
            shared = await session.get(ServiceInstance, "shared")
        assert count == 21
        assert shared is not None and shared.pid == 20
    finally:
        await store.close()


async def test_migrate_twice_is_a_no_op_on_postgres(
    postgres_db_url: str,
) -> None:
    store = Store.from_url(postgres_db_url)
    try:
        await store.migrate()
        await store.migrate()
        assert await store.current_revision() == head_revision()
    finally:
        await store.close()


def test_base_metadata_names_constraints() -> None:
    pk = ServiceInstance.__table__.primary_key
    assert pk.name == "pk_service_instance"
    assert Base.metadata.naming_convention["fk"].startswith("fk_")
