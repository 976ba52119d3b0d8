"""Database engine, sessions and schema migrations (SQLAlchemy 2 async + Alembic).

The embedded default is a SQLite file; production runs on PostgreSQL. Both go through the
same code and the same Alembic revisions, and the tests run them against real servers.

Domain packages declare their tables on :class:`Base` in their own ``models.py`` and list the
module in :data:`MODEL_MODULES`, so Alembic sees the whole schema. Each schema change is an
Alembic revision of its own in ``migrations/versions``; nothing calls ``create_all``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Integer, MetaData, String, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/callcenter.sqlite3"

# Where the Alembic environment lives: the repository's top-level migrations/ directory.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Modules whose import declares tables on Base; Alembic's autogenerate reads them all.
MODEL_MODULES: tuple[str, ...] = (
    "callcenter.store",
    "callcenter.agents.models",
    "callcenter.cases.models",
    "callcenter.pbx.models",
    "callcenter.cases.recordings",
    "callcenter.followups.models",
    "callcenter.followups.referral_models",
    "callcenter.followups.callback_models",
    "callcenter.followups.sms_models",
)

# Deterministic constraint names, so a later revision can drop or alter a constraint by name
# on PostgreSQL and SQLite (batch mode) alike.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# How long SQLite waits for another writer before "database is locked"; the web workers,
# the scheduler and the AMI handlers share one file.
SQLITE_BUSY_TIMEOUT_MS = 5000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ServiceInstance(Base):
    """One running ``callcenter`` process, as it announced itself.

    Several instances may serve behind a load balancer; this is where an operator (and the
    supervisors' health page) sees which exist, which one last owned which PBX, and which
    stopped without saying goodbye (``last_seen_at`` old, ``stopped_at`` empty).
    """

    __tablename__ = "service_instance"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The PBX node this instance owns the AMI stream of (under the Redis lease), if any.
    owns_pbx: Mapped[str | None] = mapped_column(String(64), default=None)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets the console read while the AMI handlers write; foreign keys are off by
        # default in SQLite and our schema relies on them.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_engine(url: str = DEFAULT_DATABASE_URL, *, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    if is_sqlite(url):
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    # pre_ping: a PostgreSQL failover or idle-connection reaper must not surface as an
    # error on the next agent action.
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


class Store:
    """The engine and its session factory; built once by the composition root."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str = DEFAULT_DATABASE_URL, *, echo: bool = False) -> Store:
        return cls(create_engine(url, echo=echo))

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits (or not) itself."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema up (or down) to ``revision`` with Alembic."""
        await self._alembic("upgrade", revision)

    async def downgrade(self, revision: str) -> None:
        await self._alembic("downgrade", revision)

    async def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as connection:
            return await connection.run_sync(read)

    async def _alembic(self, command_name: str, revision: str) -> None:
        from alembic import command

        config = alembic_config()

        def run(connection: Connection) -> None:
            # env.py uses this connection instead of building its own engine.
            config.attributes["connection"] = connection
            getattr(command, command_name)(config, revision)

        async with self.engine.begin() as connection:
            await connection.run_sync(run)

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str | None = None) -> Any:
    """Alembic's Config for this project, without needing alembic.ini on disk."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def load_models() -> MetaData:
    """Import every model module so ``Base.metadata`` describes the whole schema."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata
