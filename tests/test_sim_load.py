"""A seeded load run: 500 callers, 200 agents, one process, the queue's invariants checked."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from callcenter.sim import SimPBX
from callcenter.sim.clock import VirtualClock
from callcenter.sim.scenario import AgentProfile, CallerProfile, Scenario, ScenarioRunner
from tests.support.conformance import SimClient


@pytest.mark.timeout(120)
async def test_500_callers_200_agents_keep_the_invariants() -> None:
    scenario = Scenario(
        seed=1090,
        callers=500,
        arrival_window=90.0,
        agents=200,
        agent_profile=AgentProfile(
            answer_delay=(1.0, 6.0), no_answer_rate=0.1, busy_rate=0.05, talk_time=(20.0, 200.0)
        ),
        caller_profiles=[
            CallerProfile(weight=0.7, priority=0, patience=(20.0, 240.0)),
            CallerProfile(weight=0.3, priority=10, patience=(60.0, 400.0)),
        ],
    )
    scenario.queues[0].autopause = "no"
    sim = SimPBX(scenario.config(), clock=VirtualClock())
    await sim.start(port=0)
    client = await SimClient(sim).connect()
    await client.login()
    queue = sim.queues.queues["counselors"]
    problems: list[str] = []
    per_call: dict[str, Counter[str]] = defaultdict(Counter)

    def check(name: str, pairs: list[tuple[str, str]]) -> None:
        headers = dict(pairs)
        uniqueid = headers.get("Uniqueid", "")
        if name in ("AgentConnect", "QueueCallerAbandon") or (
            name == "VarSet" and headers.get("Variable") == "QUEUESTATUS"
        ):
            per_call[uniqueid][name] += 1
        if name != "AgentCalled":
            return
        member = queue.members[headers["Interface"]]
        if member.paused:
            problems.append(f"paused member {member.interface} offered a call")
        device = sim.core.by_device.get(member.interface, set())
        if len(device) != 1:
            problems.append(
                f"busy or ringing member {member.interface} offered a call ({len(device)} channels)"
            )
        order = [(-e.prio, e.joined) for e in queue.entries]
        if order != sorted(order):
            problems.append("queue not in priority then arrival order")
        # autofill: a caller behind may be offered a member only while every
        # caller ahead of her who is not being rung still has a free one
        ahead = 0
        for entry in queue.entries:
            if entry.chan.uniqueid == uniqueid:
                break
            if not entry.pending:
                ahead += 1
        free = sum(1 for m in queue.members.values() if sim.queues._available(queue, m))
        if free < ahead:
            problems.append(f"{uniqueid} offered a member while {ahead} callers ahead had {free}")

    sim.core.listeners.append(check)
    runner = ScenarioRunner(sim, scenario)
    runner.start()
    # a supervisor pauses and unpauses agents while the load runs
    rng = random.Random(7)
    for step in range(20):
        await sim.clock.sleep(15)
        interface = f"PJSIP/agent{rng.randint(1, 200):04d}"
        sim.queues.pause_member(None, interface, step % 2 == 0, "break")
        if step % 4 == 0:
            mark = len(client.frames)
            reply = await client.action("QueueStatus", Queue="counselors")
            complete = await client.event("QueueStatusComplete", start=mark)
            params = next(f for f in client.frames[mark:] if f.name == "QueueParams")
            joined = len(client.events("QueueCallerJoin"))
            left = len(client.events("QueueCallerLeave"))
            assert reply.name == "Success" and complete["EventList"] == "Complete"
            assert int(params["Calls"]) == joined - left == len(queue.entries)
    await runner.wait()
    await client.close()
    await sim.stop()
    sim.clock.stop()  # type: ignore[attr-defined]

    assert not problems, problems[:10]
    outcomes = Counter(c.outcome.result for c in runner.callers)
    assert sum(outcomes.values()) == 500
    for caller in runner.callers:
        seen = per_call[caller.outcome.uniqueid]
        assert sum(seen.values()) == 1, (caller.outcome.uniqueid, dict(seen))
    assert outcomes["answered"] > 250 and outcomes["abandoned"] > 0
