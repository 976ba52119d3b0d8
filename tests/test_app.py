"""The composition root over real services: two instances, one PBX, one owner at a time."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from callcenter.app import CallCenter
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import backend_settings, helpline, until


async def test_two_instances_one_owner_takeover_without_losing_or_doubling_calls(
    migrated_store: Store, redis_url: str, redis_prefix: str
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One", answer_after=1)]) as line:
        settings = backend_settings(line, redis_url, redis_prefix)
        vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        first = CallCenter(settings, vault=vault, instance_id="first")
        second = CallCenter(settings, vault=vault, instance_id="second")
        await first.start()
        await until(lambda: first.nodes["main"].owning, within=10)
        await second.start()
        await asyncio.sleep(0.5)
        assert first.nodes["main"].owning and not second.nodes["main"].owning
        assert not second.nodes["main"].client.connected  # only the owner holds the AMI stream
        await until(lambda: line.sim.core.db_get("wpl", "heartbeat") is not None, within=10)
        ops = first.nodes["main"].node.ops
        for queue in ("wpl-general-hi", "wpl-emergency", "wpl-fallback"):
            await ops.add_member(queue, "PJSIP/agent1", member_name="Agent One")
        before = [line.call(["1"], talk_time=2) for _ in range(3)]
        await until(lambda: all(c.done.is_set() for c in before), within=30)
        await until(lambda: first.nodes["main"].node.model.calls == {}, within=20)

        # A call is up, answered, when the owner dies; it outlasts the takeover.
        spanning = line.call(["1"], talk_time=150)
        await until(lambda: spanning.outcome.connected_to, within=20)

        # The owner dies without a word: its lease keeper and AMI link just stop.
        runtime = first.nodes["main"]
        assert runtime.keeper is not None and runtime.keeper._task is not None
        runtime.keeper._task.cancel()
        await runtime.ivr.stop(say_goodbye=False)
        await runtime.client.close()
        await until(lambda: second.nodes["main"].owning, within=15)
        await until(lambda: second.nodes["main"].node.resyncs >= 1, within=10)
        assert not spanning.done.is_set(), "the spanning call must still be up"
        # The heartbeat went stale during the takeover (new calls took the
        # fallback path meanwhile); wait for the new owner's fresh one.
        clock = line.sim.clock
        await until(
            lambda: int(line.sim.core.db_get("wpl", "heartbeat") or 0) >= clock.now() - 5,
            within=10,
        )

        after = [line.call(["1"], talk_time=2) for _ in range(3)]
        await until(lambda: all(c.done.is_set() for c in after + [spanning]), within=40)
        assert all(c.outcome.connected_to == "PJSIP/agent1" for c in before + after)
        # The simulator has hung up; wait until the backend has seen those hangups
        # too (its event queue may lag under load) before reading the records.
        await until(lambda: second.nodes["main"].node.model.calls == {}, within=20)
        await second.nodes["main"].node.drain()
        await first.nodes["main"].node.drain()
        async with migrated_store.session() as session:
            rows = (await session.scalars(select(CallRecord))).all()
        linkedids = [r.linkedid for r in rows]
        # Every call once, the one that spanned the takeover included, and answered.
        assert len(linkedids) == len(set(linkedids)) == 7
        assert {r.outcome for r in rows} == {"answered"}
        assert await asyncio.wait_for(_count(migrated_store), 5) == 7
        await second.stop()
        await first.stop()


async def _count(store: Store) -> int:
    async with store.session() as session:
        return int(await session.scalar(select(func.count()).select_from(CallRecord)) or 0)


async def test_a_wrapup_for_a_call_not_on_record_is_refused_not_dropped() -> None:
    """Her form names a call the owner has not committed: 409, so the console sends it again."""
    from types import SimpleNamespace

    from callcenter.app import WrapUpToCase
    from callcenter.web.errors import WebError
    from callcenter.web.schemas import WrapUpRequest

    looked: list[tuple[str, str]] = []
    opened: list[object] = []

    async def get(node: str, linkedid: str) -> None:
        looked.append((node, linkedid))

    async def create_from_wrapup(*args: object) -> None:
        opened.append(args)

    center = SimpleNamespace(recorder=SimpleNamespace(get=get), nodes={},
                             cases=SimpleNamespace(create_from_wrapup=create_from_wrapup))
    sink = WrapUpToCase(center)  # type: ignore[arg-type]
    sink.record_wait = 0.6
    form = WrapUpRequest(category="harassment_online", node="main", linkedid="1700000000.7")
    with pytest.raises(WebError) as refused:
        await sink("asha", form)
    assert (refused.value.status, refused.value.code) == (409, "call_not_recorded")
    assert len(looked) >= 2 and set(looked) == {("main", "1700000000.7")}  # it waited
    assert opened == []
