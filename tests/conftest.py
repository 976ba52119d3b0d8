"""Shared fixtures: real PostgreSQL and Redis (see tests/support/services.py).

Fixtures:

* ``postgres_url`` (session): SQLAlchemy URL of a PostgreSQL server's ``postgres`` database,
  with a role allowed to create databases. Prefer ``postgres_db_url``.
* ``postgres_db_url``: a fresh, empty database for this test, dropped afterwards.
* ``redis_url`` (session): URL of a real Redis server.
* ``redis_prefix``: a key/channel prefix unique to this test; keys under it are deleted
  afterwards. Pub/sub channels are server-wide (not per DB number), so isolation is by prefix.

A test that needs a server which is missing is skipped with the reason, or fails when
``CALLCENTER_REQUIRE_SERVICES=1`` (CI). Tests using these fixtures get the ``postgres`` /
``redis`` marker automatically, so ``-m "not postgres"`` works.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callcenter.store import Store
from tests.support.services import (
    REQUIRE_ENV,
    ServiceUnavailable,
    TestServices,
    create_database,
    drop_database,
)

_SERVICES_KEY = pytest.StashKey[TestServices]()

_POSTGRES_FIXTURES = {"postgres_url", "postgres_db_url"}
_REDIS_FIXTURES = {"redis_url", "redis_prefix"}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SERVICES_KEY] = TestServices()


def pytest_unconfigure(config: pytest.Config) -> None:
    services = config.stash.get(_SERVICES_KEY, None)
    if services is not None:
        services.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if names & _REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    services = terminalreporter.config.stash.get(_SERVICES_KEY, None)
    if services is None:
        return
    lines = services.describe()
    skipped = {kind: tests for kind, tests in services.skipped.items() if tests}
    if not lines and not skipped:
        return
    terminalreporter.section("test services")
    for line in lines:
        terminalreporter.write_line(line)
    for kind, tests in sorted(skipped.items()):
        terminalreporter.write_line(
            f"{len(tests)} test(s) skipped because {kind} was missing "
            f"(set {REQUIRE_ENV}=1 to make that an error)"
        )


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> None:
    # Session fixtures cache their skip, so count skipped tests from the reports instead.
    if not (report.skipped and report.when == "setup" and isinstance(report.longrepr, tuple)):
        return
    message = str(report.longrepr[2])
    services = config.stash.get(_SERVICES_KEY, None)
    if services is None:
        return
    for kind, label in (("postgres", "PostgreSQL unavailable"), ("redis", "Redis unavailable")):
        if label in message:
            services.skipped[kind].add(report.nodeid)


def _service_url(request: pytest.FixtureRequest, kind: str) -> str:
    services = request.config.stash[_SERVICES_KEY]
    try:
        return services.postgres_url() if kind == "postgres" else services.redis_url()
    except ServiceUnavailable as exc:
        reason = str(exc)
    if services.required:
        pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    return _service_url(request, "postgres")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return _service_url(request, "redis")


@pytest.fixture
async def postgres_db_url(postgres_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def migrated_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A Store migrated to head, once on a SQLite file and once on real PostgreSQL."""
    database_url: str | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'callcenter.sqlite3'}"
    else:
        url = database_url = await create_database(request.getfixturevalue("postgres_url"))
    store = Store.from_url(url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()
        if database_url is not None:
            await drop_database(database_url)
