"""Her number never leaves the vault: not towards agents' phones, not into logs or rows.

A mixed scenario on the simulated PBX (IVR routes, answers, abandons, hang-ups
in the IVR), then every event sent towards an agent's channel, every log line
and every column of every table is checked with non-digits stripped.
"""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import MetaData, select

from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import helpline, until

AGENTS = [SimAgent(f"agent{i}", f"Agent {i}", answer_after=1.0) for i in range(1, 4)]
SCRIPTS = [
    (["", "1", "2", "1"], {"talk_time": 4}),       # Hindi, internet, callback yes
    (["1"], {"talk_time": 4}),                       # danger
    (["", "2", "4", "2"], {"talk_time": 4}),       # English, distress
    ([], {"talk_time": 4}),                          # silent
    (["", "1", "8", "8", "8"], {"talk_time": 4}),  # invalid keys
    (["", "2", "3", "1"], {"patience": 1}),          # stalking, abandons in queue
    ([], {"max_duration": 4}),                       # hangs up in the IVR
]
#: Headers that describe the caller on an event about an agent's channel.
PARTY_HEADERS = (
    "CallerIDNum", "CallerIDName", "ConnectedLineNum", "ConnectedLineName",
    "DestCallerIDNum", "DestCallerIDName", "DestConnectedLineNum", "DestConnectedLineName",
    "DialString",
)
TOWARDS_AGENT = ("AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer",
                 "NewConnectedLine", "DialBegin", "DialState", "DialEnd", "Newchannel",
                 "NewCallerid", "BridgeEnter")


def digits(text: object) -> str:
    return re.sub(r"\D", "", str(text))


@pytest.mark.timeout(240)
async def test_no_caller_number_reaches_agents_logs_or_rows(
    migrated_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with helpline(migrated_store, AGENTS) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        for agent in AGENTS:
            for queue in ("wpl-general-hi", "wpl-general-en", "wpl-counselling",
                          "wpl-emergency", "wpl-fallback"):
                await line.add_member(queue, agent.endpoint)
        callers = []
        for _round in range(3):
            for answers, script in SCRIPTS:
                callers.append(line.call(answers, **script))
            await until(lambda: all(c.done.is_set() for c in callers), within=90)
        await until(lambda: backend.node.model.calls == {}, within=20)
        await backend.node.drain()
        await backend.ivr.wait_idle()
        numbers = line.numbers()
        assert len(numbers) == len(callers) == 3 * len(SCRIPTS)
        agent_prefixes = tuple(f"PJSIP/{a.endpoint}-" for a in AGENTS)

        # 1. Towards agents' phones: tokens or labels only.
        checked = 0
        for name, pairs in line.events:
            if name not in TOWARDS_AGENT:
                continue
            headers = dict(pairs)
            if not any(
                headers.get(key, "").startswith(agent_prefixes)
                for key in ("Channel", "DestChannel")
            ):
                continue
            for header in PARTY_HEADERS:
                value = digits(headers.get(header, ""))
                assert not any(n in value for n in numbers), (name, header)
            checked += 1
        assert checked > 50, "the scenario must actually ring agents"
        assert line.named("AgentConnect"), "some calls were answered"

        # 2. Every log line the backend wrote.
        for record in caplog.records:
            line_digits = digits(record.getMessage())
            assert not any(n in line_digits for n in numbers), record.name

        # 3. Every column of every table.
        metadata = MetaData()
        async with migrated_store.engine.connect() as connection:
            await connection.run_sync(metadata.reflect)
            rows = 0
            for table in metadata.sorted_tables:
                for row in (await connection.execute(select(table))).all():
                    rows += 1
                    for value in row:
                        assert not any(n in digits(value) for n in numbers), table.name
        assert rows >= len(callers)
