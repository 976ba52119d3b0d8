"""The test-service plumbing itself: discovery, skip-or-fail, isolation."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.services import (
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    REQUIRE_ENV,
    ServiceUnavailable,
    TestServices,
    find_binary,
    hide_password,
    services_required,
)


def test_hide_password() -> None:
    assert hide_password("postgresql+asyncpg://cc:s3cret@db:5432/x") == (
        "postgresql+asyncpg://cc:***@db:5432/x"
    )
    assert hide_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_require_flag() -> None:
    assert services_required({REQUIRE_ENV: "1"})
    assert not services_required({REQUIRE_ENV: "0"})
    assert not services_required({})


def test_find_binary_misses_cleanly() -> None:
    assert find_binary("surely-not-a-real-binary-1090") is None


def test_unreachable_configured_servers_are_reported_not_started() -> None:
    services = TestServices(
        {
            POSTGRES_URL_ENV: "postgresql+asyncpg://cc:pw@127.0.0.1:1/postgres",
            REDIS_URL_ENV: "redis://127.0.0.1:1/0",
        }
    )
    try:
        with pytest.raises(ServiceUnavailable, match="PostgreSQL unavailable") as pg:
            services.postgres_url()
        with pytest.raises(ServiceUnavailable, match="Redis unavailable"):
            services.redis_url()
        assert "pw" not in str(pg.value), "passwords are not echoed"
        # The failure is remembered: not retried (and not slowed down) for every test.
        with pytest.raises(ServiceUnavailable):
            services.postgres_url()
        assert any("unavailable" in line for line in services.describe())
    finally:
        services.close()


async def test_each_test_gets_its_own_empty_database(postgres_db_url: str) -> None:
    engine = create_async_engine(postgres_db_url)
    try:
        async with engine.begin() as conn:
            tables = await conn.scalar(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            )
            name = await conn.scalar(text("SELECT current_database()"))
            await conn.execute(text("CREATE TABLE scratch (id int)"))
    finally:
        await engine.dispose()
    assert tables == 0
    assert name != "postgres" and name.startswith("test_")


async def test_redis_prefix_is_cleaned(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(redis_prefix + "agent:1", "available")
        assert await client.get(redis_prefix + "agent:1") == b"available"
        assert redis_prefix.startswith("test:")
    finally:
        await client.aclose()
