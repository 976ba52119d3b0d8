"""A PBX node over real AMI/TCP: the model follows events, calls are recorded once,
and the model is rebuilt from the PBX's snapshot after every (re)connect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.ami import AMIClient
from callcenter.ami.client import Backoff
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.models import CallRecord
from callcenter.pbx.node import PbxNode
from callcenter.store import Store
from tests.support.fake_ami import FakeAMIServer, raw_frames

TRACES = Path(__file__).parent / "fixtures" / "asterisk"


def trace_events(name: str) -> list[bytes]:
    data = (TRACES / f"{name}.ami").read_bytes()
    return [raw + b"\r\n\r\n" for raw in raw_frames(data) if raw.startswith(b"Event:")]


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        # Polling: the client processes events in its own tasks, with no signal.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def last_timestamp(name: str) -> float:
    stamps = [
        float(line.split(b": ", 1)[1])
        for raw in trace_events(name)
        for line in raw.split(b"\r\n")
        if line.startswith(b"Timestamp: ")
    ]
    return max(stamps)


async def test_node_records_a_replayed_call_once_and_resyncs_on_reconnect(
    migrated_store: Store,
) -> None:
    async with FakeAMIServer() as pbx:
        client = AMIClient(
            "127.0.0.1", pbx.port, pbx.username, pbx.secret, "md5",
            ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05),
        )
        node = PbxNode("pbx1", client, recorder=CallRecorder(migrated_store))
        async with client:
            await until(lambda: node.resyncs >= 1)
            end = last_timestamp("queue_asyncagi_call")
            for raw in trace_events("queue_asyncagi_call"):
                pbx.push(raw)
            await until(lambda: node.model.last_pbx_time == end)
            assert node.model.calls == {} and node.model.channels == {}
            # The trace was recorded long ago: its events arrive that old (the lag gauge).
            assert node.event_lag is not None
            assert node.event_lag == pytest.approx(time.time() - end, abs=60)
            await node.drain()
            async with migrated_store.session() as session:
                rows = (await session.scalars(select(CallRecord))).all()
            assert [(r.outcome, r.queue, r.agent_interface) for r in rows] == [
                ("answered", "counselors", "PJSIP/agent2")
            ]
            # The link drops mid-stream; after the new login the node resyncs.
            pbx.drop()
            await until(lambda: node.resyncs >= 2)
            assert len(pbx.actions("QueueStatus")) == 2
            assert len(pbx.actions("CoreShowChannels")) == 2
            # Replaying the same call after the reconnect does not double its record.
            node.model.last_pbx_time = None
            for raw in trace_events("queue_asyncagi_call"):
                pbx.push(raw)
            await until(lambda: node.model.last_pbx_time == end)
            await node.drain()
            async with migrated_store.session() as session:
                assert await session.scalar(select(func.count()).select_from(CallRecord)) == 1
