"""callcenter.bus: in-process semantics, and fan-out between instances over a real Redis."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis

from callcenter.bus import BusError, BusEvent, InProcessBus, RedisBus
from tests.support.services import (
    RedisInstance,
    ServiceUnavailable,
    services_required,
    start_redis,
)


class CallerJoined(BusEvent):
    topic: ClassVar[str] = "test.queue.caller_joined"
    queue: str
    position: int
    token: str


class CallerAbandoned(BusEvent):
    topic: ClassVar[str] = "test.queue.caller_abandoned"
    queue: str
    waited_seconds: float


class AgentPaused(BusEvent):
    topic: ClassVar[str] = "test.agent.paused"
    agent: str
    reason: str


class Inbox:
    def __init__(self) -> None:
        self.events: list[BusEvent] = []
        self.arrived = asyncio.Event()

    async def __call__(self, event: BusEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def wait_for(self, count: int, within: float = 5.0) -> list[BusEvent]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


async def _eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- in process


async def test_subscribe_by_type_topic_and_glob() -> None:
    async with InProcessBus() as bus:
        by_type, by_topic, by_glob = Inbox(), Inbox(), Inbox()
        bus.subscribe(CallerJoined, by_type)
        bus.subscribe("test.agent.paused", by_topic)
        bus.subscribe("test.queue.*", by_glob)

        joined = CallerJoined(queue="counsellors", position=1, token="T-7K3M9Q")
        abandoned = CallerAbandoned(queue="counsellors", waited_seconds=41.5)
        paused = AgentPaused(agent="agent1", reason="wrapup")
        for event in (joined, paused, abandoned):
            await bus.publish(event)
        await bus.drain()

    assert by_type.events == [joined]
    assert by_topic.events == [paused]
    assert by_glob.events == [joined, abandoned]


async def test_each_subscriber_sees_events_in_publish_order() -> None:
    async with InProcessBus() as bus:
        inbox = Inbox()
        bus.subscribe(CallerJoined, inbox)
        for position in range(50):
            await bus.publish(CallerJoined(queue="q", position=position, token="T-1"))
        await bus.drain()
    assert [e.position for e in inbox.events] == list(range(50))  # type: ignore[attr-defined]


async def test_failing_handler_does_not_affect_others(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def broken(event: CallerJoined) -> None:
        calls.append(event.position)
        raise RuntimeError("wallboard exploded")

    async with InProcessBus() as bus:
        healthy = Inbox()
        bus.subscribe(CallerJoined, broken)
        bus.subscribe(CallerJoined, healthy)
        with caplog.at_level(logging.ERROR, logger="callcenter.bus"):
            for position in (1, 2):
                await bus.publish(CallerJoined(queue="q", position=position, token="T-9"))
            await bus.drain()

    assert calls == [1, 2], "the failing handler keeps getting later events"
    assert len(healthy.events) == 2
    assert "wallboard exploded" in caplog.text
    assert "T-9" not in caplog.text, "event payloads are not logged"


async def test_slow_handler_does_not_block_others() -> None:
    gate = asyncio.Event()

    async def stuck(event: BusEvent) -> None:
        await gate.wait()

    async with InProcessBus() as bus:
        fast = Inbox()
        bus.subscribe(CallerJoined, stuck)
        bus.subscribe(CallerJoined, fast)
        await bus.publish(CallerJoined(queue="q", position=1, token="T-1"))
        await fast.wait_for(1)
        gate.set()


async def test_unsubscribe_stops_delivery() -> None:
    async with InProcessBus() as bus:
        inbox = Inbox()
        subscription = bus.subscribe(CallerJoined, inbox)
        await bus.publish(CallerJoined(queue="q", position=1, token="T-1"))
        await bus.drain()
        subscription.unsubscribe()
        await bus.publish(CallerJoined(queue="q", position=2, token="T-1"))
        await bus.drain()
    assert [e.position for e in inbox.events] == [1]  # type: ignore[attr-defined]


async def test_a_subscriber_that_falls_behind_loses_oldest_events() -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(event: CallerJoined) -> None:
        await gate.wait()
        seen.append(event.position)

    async with InProcessBus(max_pending=3) as bus:
        subscription = bus.subscribe(CallerJoined, slow)
        await bus.publish(CallerJoined(queue="q", position=0, token="T"))
        await asyncio.sleep(0)  # the worker takes event 0 and waits on the gate
        for position in range(1, 8):
            await bus.publish(CallerJoined(queue="q", position=position, token="T"))
        gate.set()
        await bus.drain()
    assert seen == [0, 5, 6, 7]
    assert subscription.dropped == 4


async def test_publish_requires_a_started_bus() -> None:
    bus = InProcessBus()
    with pytest.raises(BusError):
        await bus.publish(AgentPaused(agent="a", reason="lunch"))
    await bus.start()
    await bus.close()
    with pytest.raises(BusError):
        await bus.publish(AgentPaused(agent="a", reason="lunch"))


def test_topics_are_unique_per_event_type() -> None:
    with pytest.raises(TypeError, match="taken by"):

        class Impostor(BusEvent):  # noqa: F841 - defining it is the test
            topic: ClassVar[str] = "test.agent.paused"
            agent: str

    assert BusEvent.type_for("test.agent.paused") is AgentPaused


# --------------------------------------------------------------------------- over Redis


@pytest.fixture
async def redis_pair(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a = RedisBus(redis_url, redis_prefix, instance_id="instance-a", reconnect_initial=0.02)
    b = RedisBus(redis_url, redis_prefix, instance_id="instance-b", reconnect_initial=0.02)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _subscribers(redis_url: str, channel: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def test_event_published_on_one_instance_arrives_typed_on_both(
    redis_pair: tuple[RedisBus, RedisBus],
) -> None:
    a, b = redis_pair
    on_a, on_b = Inbox(), Inbox()
    a.subscribe("test.queue.*", on_a)
    b.subscribe("test.queue.*", on_b)

    joined = CallerJoined(queue="counsellors", position=2, token="T-4F8Q2N")
    await a.publish(joined)

    [received] = await on_b.wait_for(1)
    assert isinstance(received, CallerJoined) and received == joined
    await a.drain()
    assert on_a.events == [joined], "the publisher's own subscribers get it exactly once"

    # And back the other way.
    abandoned = CallerAbandoned(queue="counsellors", waited_seconds=12.25)
    await b.publish(abandoned)
    await on_a.wait_for(2)
    await b.drain()
    assert on_a.events == [joined, abandoned]
    assert on_b.events == [joined, abandoned]


async def test_unknown_topic_and_garbage_are_ignored_with_a_log(
    redis_pair: tuple[RedisBus, RedisBus],
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _ = redis_pair
    inbox = Inbox()
    a.subscribe("*", inbox)
    client = aioredis.Redis.from_url(redis_url)
    try:
        with caplog.at_level(logging.INFO, logger="callcenter.bus"):
            newer = {"v": 1, "topic": "test.from.the.future", "origin": "z", "event": {}}
            await client.publish(a.channel, json.dumps(newer))
            await client.publish(a.channel, b"not json at all")
            bad = {
                "v": 1,
                "topic": CallerJoined.topic,
                "origin": "z",
                "event": {"queue": "q", "position": "first", "token": "T"},
            }
            await client.publish(a.channel, json.dumps(bad))
            # A good one last: once it arrives, the others have been processed.
            good = CallerJoined(queue="q", position=1, token="T-1")
            await client.publish(
                a.channel,
                json.dumps(
                    {"v": 1, "topic": good.topic, "origin": "z", "event": good.model_dump()}
                ),
            )
            await inbox.wait_for(1)
    finally:
        await client.aclose()
    assert inbox.events == [good]
    assert "unknown topic 'test.from.the.future'" in caplog.text
    assert "malformed" in caplog.text
    assert "does not decode" in caplog.text


async def test_handler_failure_isolated_across_redis(
    redis_pair: tuple[RedisBus, RedisBus],
) -> None:
    a, b = redis_pair

    async def broken(event: Any) -> None:
        raise ValueError("console disconnected")

    healthy = Inbox()
    b.subscribe(AgentPaused, broken)
    b.subscribe(AgentPaused, healthy)
    await a.publish(AgentPaused(agent="agent2", reason="wrapup"))
    await a.publish(AgentPaused(agent="agent2", reason="lunch"))
    events = await healthy.wait_for(2)
    assert [e.reason for e in events] == ["wrapup", "lunch"]  # type: ignore[attr-defined]


async def test_listener_resubscribes_after_redis_drops_it(
    redis_pair: tuple[RedisBus, RedisBus], redis_url: str
) -> None:
    a, b = redis_pair
    inbox = Inbox()
    b.subscribe(AgentPaused, inbox)
    assert await _subscribers(redis_url, b.channel) == 2

    client = aioredis.Redis.from_url(redis_url)
    try:
        # What a Redis restart or failover looks like to a subscriber: the server drops it.
        killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 2
    finally:
        await client.aclose()

    async def both_back() -> bool:
        return await _subscribers(redis_url, b.channel) == 2 and a.listening and b.listening

    await _eventually(both_back)
    await a.publish(AgentPaused(agent="agent1", reason="training"))
    [event] = await inbox.wait_for(1)
    assert event == AgentPaused(agent="agent1", reason="training")


@pytest.fixture
def own_redis() -> Iterator[RedisInstance]:
    """A Redis this test may stop and start again (the shared one must stay up)."""
    try:
        instance = start_redis()
    except ServiceUnavailable as exc:
        if services_required():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(f"Redis unavailable: {exc}")
    try:
        yield instance
    finally:
        instance.stop()


async def test_survives_redis_going_down_and_coming_back(own_redis: RedisInstance) -> None:
    port = own_redis.port
    a = RedisBus(own_redis.url, "t:", instance_id="a", reconnect_initial=0.02, reconnect_max=0.1)
    b = RedisBus(own_redis.url, "t:", instance_id="b", reconnect_initial=0.02, reconnect_max=0.1)
    await a.start()
    await b.start()
    try:
        on_a, on_b = Inbox(), Inbox()
        a.subscribe(AgentPaused, on_a)
        b.subscribe(AgentPaused, on_b)

        own_redis.stop()
        await _eventually(lambda: not a.listening and not b.listening)
        during = AgentPaused(agent="agent1", reason="during-outage")
        await a.publish(during)  # must not raise: local subscribers still get it
        await a.drain()
        assert on_a.events == [during]
        assert a.publish_failures == 1

        restarted = start_redis(port=port)
        try:
            await _eventually(lambda: a.listening and b.listening)
            after = AgentPaused(agent="agent1", reason="after-outage")
            await a.publish(after)
            await on_b.wait_for(1)
            assert on_b.events == [after], "the outage's event is lost across instances only"
            assert a.reconnects >= 1 and b.reconnects >= 1
        finally:
            restarted.stop()
    finally:
        await a.close()
        await b.close()


async def test_start_fails_fast_on_unreachable_redis() -> None:
    bus = RedisBus("redis://127.0.0.1:1/0", "x:", connect_timeout=0.5)
    with pytest.raises(BusError, match="cannot subscribe"):
        await bus.start()
