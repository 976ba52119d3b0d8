"""PBX ownership lease on real Redis: one owner, growing fences, takeover, stale owners refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from callcenter.pbx.errors import NotOwner
from callcenter.pbx.lease import LeaseKeeper, PbxLease


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def lease(redis: Redis, prefix: str, instance: str, ttl: float = 1.5) -> PbxLease:
    return PbxLease(redis, "pbx1", instance, ttl_s=ttl, prefix=prefix, margin_s=0.3)


async def test_only_one_instance_owns_a_pbx_and_fences_grow(
    redis: Redis, redis_prefix: str
) -> None:
    a, b = lease(redis, redis_prefix, "a"), lease(redis, redis_prefix, "b")
    results = await asyncio.gather(a.try_acquire(), b.try_acquire())
    assert sorted(r is None for r in results) == [False, True]
    owner, loser = (a, b) if results[0] is not None else (b, a)
    owner.check()
    with pytest.raises(NotOwner):
        loser.check()
    first_fence = owner.fence
    assert await owner.renew()
    await owner.release()
    assert await loser.try_acquire() is not None
    assert loser.fence is not None and first_fence is not None and loser.fence > first_fence
    assert await loser.owner() == (loser.instance_id, loser.fence)


async def test_a_stale_owner_refuses_writes_and_a_renewal_after_takeover_fails(
    redis: Redis, redis_prefix: str
) -> None:
    a, b = lease(redis, redis_prefix, "a", ttl=0.6), lease(redis, redis_prefix, "b", ttl=0.6)
    assert await a.try_acquire() is not None
    # "a" stalls (no renewals): its local deadline passes before Redis expires the key.
    await asyncio.sleep(0.35)
    with pytest.raises(NotOwner):
        a.check()
    await asyncio.sleep(0.4)
    assert await b.try_acquire() is not None
    assert not await a.renew()  # the key is b's now
    with pytest.raises(NotOwner):
        a.check()
    b.check()


async def test_keeper_takes_over_within_the_ttl_when_the_owner_dies(
    redis: Redis, redis_prefix: str
) -> None:
    events: list[tuple[str, str]] = []

    def keeper(name: str) -> LeaseKeeper:
        async def acquired(fence: int) -> None:
            events.append((name, f"acquired {fence}"))

        async def lost() -> None:
            events.append((name, "lost"))

        return LeaseKeeper(lease(redis, redis_prefix, name), on_acquired=acquired, on_lost=lost)

    first, second = keeper("first"), keeper("second")
    first.start()
    await asyncio.sleep(0.2)
    second.start()
    await asyncio.sleep(0.6)
    assert first.owning and not second.owning
    # The owner dies without releasing (its task is simply gone).
    assert first._task is not None
    first._task.cancel()
    loop = asyncio.get_running_loop()
    died = loop.time()
    async with asyncio.timeout(5):
        while not second.owning:  # noqa: ASYNC110 - the keeper's own task flips it
            await asyncio.sleep(0.02)
    assert loop.time() - died <= first.lease.ttl_s + second.lease.ttl_s / 3 + 0.5
    fences = [int(e.split()[1]) for _, e in events if e.startswith("acquired")]
    assert fences == sorted(fences) and len(set(fences)) == 2
    await second.stop()
