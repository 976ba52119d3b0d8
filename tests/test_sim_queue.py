"""The simulator's app_queue: strategies, priority, wrap-up, weight, pauses and outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callcenter.sim import Endpoint, MemberConfig, PhoneBehaviour, QueueConfig, SimConfig, SimPBX
from callcenter.sim.actors import Caller, CallerScript
from callcenter.sim.clock import VirtualClock

DIALPLAN = r"""
[in]
exten => _X.,1,Answer()
 same => n,Queue(${Q},t,,,${QT})
 same => n,Set(DONE=${QUEUESTATUS})
 same => n,Hangup()
"""

Events = list[tuple[str, dict[str, str]]]


def make_config(queue: QueueConfig, agents: int = 3, **kwargs: object) -> SimConfig:
    endpoints = [Endpoint("caller", "C", "5550100", "in")]
    endpoints += [Endpoint(f"a{i}", f"A{i}", f"10{i}", "agents") for i in range(1, agents + 1)]
    if not queue.members:
        queue.members = [MemberConfig(f"PJSIP/a{i}", f"A{i}") for i in range(1, agents + 1)]
    config = SimConfig(endpoints=endpoints, queues=[queue], dialplan=DIALPLAN)
    for key, value in kwargs.items():
        setattr(config, key, value)
    return config


@pytest.fixture
async def run() -> AsyncIterator[Callable[[SimConfig], SimPBX]]:
    sims: list[SimPBX] = []

    def build(config: SimConfig) -> SimPBX:
        sim = SimPBX(config, clock=VirtualClock())
        sims.append(sim)
        return sim

    yield build
    for sim in sims:
        await sim.core.shutdown()
        sim.clock.stop()  # type: ignore[attr-defined]


def record(sim: SimPBX) -> Events:
    events: Events = []
    sim.core.listeners.append(lambda name, pairs: events.append((name, dict(pairs))))
    return events


def call(sim: SimPBX, queue: str = "q", timeout: int = 600, **script: object) -> Caller:
    caller = Caller(
        sim.core, CallerScript(exten="100", variables={"Q": queue, "QT": str(timeout)}, **script)
    )  # type: ignore[arg-type]
    caller.start()
    return caller


def called(events: Events) -> list[str]:
    return [h["Interface"] for name, h in events if name == "AgentCalled"]


async def test_linear_rings_in_order_after_ring_no_answer(
    run: Callable[[SimConfig], SimPBX],
) -> None:
    sim = run(make_config(QueueConfig("q", strategy="linear", timeout=15, retry=2)))
    sim.core.phones["a1"] = PhoneBehaviour(answer_after=None)
    sim.core.phones["a2"] = PhoneBehaviour(answer_after=None)
    events = record(sim)
    caller = call(sim, talk_time=5)
    await caller.done.wait()
    assert called(events)[:3] == ["PJSIP/a1", "PJSIP/a2", "PJSIP/a3"]
    rna = [h for name, h in events if name == "AgentRingNoAnswer"]
    assert [h["RingTime"] for h in rna] == ["15000", "15000"]  # milliseconds
    dial_ends = [h["DialStatus"] for name, h in events if name == "DialEnd"]
    assert dial_ends[:4] == ["NOANSWER", "CANCEL", "NOANSWER", "CANCEL"]
    assert caller.outcome.connected_to == "PJSIP/a3"


async def test_rrmemory_rotates_between_calls(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(make_config(QueueConfig("q", strategy="rrmemory", ringinuse=False)))
    events = record(sim)
    for _ in range(4):
        caller = call(sim, talk_time=1)
        await caller.done.wait()
    assert called(events) == ["PJSIP/a1", "PJSIP/a2", "PJSIP/a3", "PJSIP/a1"]


async def test_leastrecent_prefers_the_longest_idle(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(make_config(QueueConfig("q", strategy="leastrecent")))
    events = record(sim)
    for _ in range(3):
        caller = call(sim, talk_time=1)
        await caller.done.wait()
    assert sorted(called(events)) == ["PJSIP/a1", "PJSIP/a2", "PJSIP/a3"]


async def test_priority_caller_is_served_first(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(make_config(QueueConfig("q", strategy="ringall", retry=2), agents=1))
    sim.queues.pause_member("q", "PJSIP/a1", True, "setup")
    events = record(sim)
    low = call(sim, talk_time=5)
    await sim.clock.sleep(3)
    high = Caller(
        sim.core,
        CallerScript(
            exten="100", talk_time=5, variables={"Q": "q", "QT": "600", "QUEUE_PRIO": "10"}
        ),
    )
    high.start()
    await sim.clock.sleep(1)
    joins = [h["Position"] for name, h in events if name == "QueueCallerJoin"]
    assert joins == ["1", "1"]  # she jumps ahead; nothing tells the first caller
    entries = [dict(h) for name, h in sim.queues.status_events("q", None) if name == "QueueEntry"]
    assert [(e["Position"], e["Priority"]) for e in entries] == [("1", "10"), ("2", "0")]
    sim.queues.pause_member("q", "PJSIP/a1", False)
    await high.done.wait()
    await low.done.wait()
    connects = [h["Uniqueid"] for name, h in events if name == "AgentConnect"]
    assert connects == [high.outcome.uniqueid, low.outcome.uniqueid]


async def test_wrapuptime_keeps_the_agent_free_for_a_while(
    run: Callable[[SimConfig], SimPBX],
) -> None:
    sim = run(make_config(QueueConfig("q", strategy="ringall", wrapuptime=30, retry=1), agents=1))
    first = call(sim, talk_time=5)
    await first.done.wait()
    ended = sim.clock.now()
    events = record(sim)
    second = call(sim, talk_time=5)
    await second.done.wait()
    rung = next(h for name, h in events if name == "AgentCalled")
    assert float(rung["Timestamp"]) - ended >= 30


async def test_weight_keeps_shared_members_for_the_heavier_queue(
    run: Callable[[SimConfig], SimPBX],
) -> None:
    light = QueueConfig("light", strategy="ringall", weight=0, retry=1)
    heavy = QueueConfig("heavy", strategy="ringall", weight=10, retry=1)
    config = make_config(light, agents=1)
    heavy.members = [MemberConfig("PJSIP/a1", "A1")]
    config.queues.append(heavy)
    sim = run(config)
    sim.queues.pause_member(None, "PJSIP/a1", True)
    events = record(sim)
    lo = call(sim, queue="light", talk_time=5)
    hi = call(sim, queue="heavy", talk_time=5)
    await sim.clock.sleep(2)
    sim.queues.pause_member(None, "PJSIP/a1", False)
    await hi.done.wait()
    await lo.done.wait()
    assert [h["Queue"] for name, h in events if name == "AgentConnect"] == ["heavy", "light"]


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (QueueConfig("q", joinempty="paused,unavailable"), "JOINEMPTY"),
        (QueueConfig("q", leavewhenempty="paused", retry=1), "LEAVEEMPTY"),
        (QueueConfig("q", retry=1), "TIMEOUT"),
    ],
)
async def test_queuestatus_outcomes(
    run: Callable[[SimConfig], SimPBX], queue: QueueConfig, expected: str
) -> None:
    sim = run(make_config(queue, agents=1))
    sim.queues.pause_member("q", "PJSIP/a1", True)
    events = record(sim)
    caller = call(sim, timeout=10)
    await caller.done.wait()
    done = [h["Value"] for name, h in events if name == "VarSet" and h.get("Variable") == "DONE"]
    assert done == [expected]


async def test_queue_full(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(make_config(QueueConfig("q", maxlen=1), agents=1))
    sim.queues.pause_member("q", "PJSIP/a1", True)
    first = call(sim, patience=5)
    second = call(sim)
    await second.done.wait()
    assert second.outcome.queue_status == "FULL"
    await first.done.wait()
    assert first.outcome.result == "abandoned"


async def test_autopause_on_ring_no_answer(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(
        make_config(
            QueueConfig("q", strategy="linear", autopause="yes", timeout=5, retry=1), agents=2
        )
    )
    sim.core.phones["a1"] = PhoneBehaviour(answer_after=None)
    events = record(sim)
    caller = call(sim, talk_time=2)
    await caller.done.wait()
    pause = next(h for name, h in events if name == "QueueMemberPause")
    assert (pause["Interface"], pause["Paused"], pause["PausedReason"]) == (
        "PJSIP/a1",
        "1",
        "Auto-Pause",
    )
    assert caller.outcome.connected_to == "PJSIP/a2"


async def test_persistent_dynamic_members_survive_a_restart(
    run: Callable[[SimConfig], SimPBX], tmp_path: Path
) -> None:
    state = str(tmp_path / "members.json")
    sim = run(make_config(QueueConfig("q"), agents=2, state_file=state))
    assert sim.queues.add_member("q", "PJSIP/a9", name="Nine", penalty=2) == "ok"
    sim.queues.pause_member("q", "PJSIP/a9", True, "break")
    again = run(make_config(QueueConfig("q"), agents=2, state_file=state))
    member = again.queues.queues["q"].members["PJSIP/a9"]
    assert (member.dynamic, member.penalty, member.paused, member.reason) == (
        True,
        2,
        True,
        "break",
    )


async def test_reportholdtime_delays_agentconnect(run: Callable[[SimConfig], SimPBX]) -> None:
    sim = run(make_config(QueueConfig("q", reportholdtime=True), agents=1))
    events = record(sim)
    caller = call(sim, talk_time=2)
    await caller.done.wait()
    answered = next(
        float(h["Timestamp"])
        for name, h in events
        if name == "DialEnd" and h["DialStatus"] == "ANSWER"
    )
    connected = next(float(h["Timestamp"]) for name, h in events if name == "AgentConnect")
    assert 1.0 <= connected - answered <= 3.5
