"""Issue 4 end to end: callers dial 1090 on the simulated PBX running the shipped
dialplan and queues; the backend's IVR serves them over real AMI/TCP."""

from __future__ import annotations

from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import helpline, until


async def test_hindi_internet_harassment_lands_in_the_hindi_general_queue(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        # A paused agent: the queue accepts callers and keeps them waiting.
        await line.add_member("wpl-general-hi", "agent1", paused=True)
        # Danger prompt: silence. Language: 1 (Hindi). Main: 2 (internet). Callback: 1.
        caller = line.call(["", "1", "2", "1"], patience=None)
        await until(lambda: caller.outcome.joined, within=20)
        assert caller.outcome.joined == ["wpl-general-hi"]
        varsets = {
            h["Variable"]: h["Value"] for h in line.named("VarSet")
            if h["Uniqueid"] == caller.outcome.uniqueid
        }
        assert varsets["WPL_CATEGORY"] == "cyber-harassment"
        assert varsets["WPL_LANGUAGE"] == "hi"
        assert varsets["WPL_CALLBACK_OK"] == "1"
        caller.hang_up()
        await until(lambda: caller.done.is_set())


def _joins(line, queue: str) -> list[dict[str, str]]:
    return [h for h in line.named("QueueCallerJoin") if h["Queue"] == queue]


async def test_danger_caller_joins_ahead_of_waiting_callers_and_is_connected_first(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        await line.add_member("wpl-emergency", "agent1", paused=True)
        silent = line.call([], talk_time=5)  # never presses: silent route, same queue
        await until(lambda: silent.outcome.joined, within=30)
        danger = line.call(["1"], talk_time=5)
        await until(lambda: danger.outcome.joined, within=30)
        assert silent.outcome.joined == danger.outcome.joined == ["wpl-emergency"]
        joins = _joins(line, "wpl-emergency")
        assert [j["Uniqueid"] for j in joins] == [silent.outcome.uniqueid, danger.outcome.uniqueid]
        # She was put at position 1, ahead of the caller already waiting.
        assert joins[1]["Position"] == "1"
        await line.backend.node.ops.pause_member("PJSIP/agent1", False)
        await until(lambda: line.named("AgentConnect"), within=30)
        first = line.named("AgentConnect")[0]
        assert first["Uniqueid"] == danger.outcome.uniqueid


async def test_distress_caller_wins_a_shared_agent_over_an_earlier_general_caller(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        for queue in ("wpl-general-en", "wpl-counselling"):
            await line.add_member(queue, "agent1", paused=True)
        general = line.call(["", "2", "1", "2"], talk_time=5)
        await until(lambda: general.outcome.joined, within=30)
        distress = line.call(["", "2", "4", "2"], talk_time=5)
        await until(lambda: distress.outcome.joined, within=30)
        assert general.outcome.joined == ["wpl-general-en"]
        assert distress.outcome.joined == ["wpl-counselling"]
        await line.backend.node.ops.pause_member("PJSIP/agent1", False)
        await until(lambda: line.named("AgentConnect"), within=30)
        assert line.named("AgentConnect")[0]["Uniqueid"] == distress.outcome.uniqueid


async def test_three_invalid_keys_reach_the_default_route(migrated_store: Store) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        await line.add_member("wpl-general-hi", "agent1", paused=True)
        caller = line.call(["", "1", "8", "8", "8"])
        await until(lambda: caller.outcome.joined, within=40)
        assert caller.outcome.joined == ["wpl-general-hi"]
        category = [
            h["Value"] for h in line.named("VarSet")
            if h["Uniqueid"] == caller.outcome.uniqueid and h["Variable"] == "WPL_CATEGORY"
        ]
        assert category == ["unclassified"]
        caller.hang_up()


async def test_silence_reaches_the_queue_flagged_silent(migrated_store: Store) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        await line.add_member("wpl-emergency", "agent1", paused=True)
        caller = line.call([])
        await until(lambda: caller.outcome.joined, within=40)
        flags = [
            h["Value"] for h in line.named("VarSet")
            if h["Uniqueid"] == caller.outcome.uniqueid and h["Variable"] == "WPL_FLAGS"
        ]
        assert flags and "silent" in flags[-1].split(",")
        caller.hang_up()


async def test_hanging_up_in_the_ivr_closes_the_record_as_abandoned_in_ivr(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        caller = line.call([], max_duration=6)  # gives up during the language prompt
        await until(lambda: caller.done.is_set(), within=20)
        await until(lambda: backend.node.model.calls == {}, within=10)
        await backend.node.drain()
        record = await backend.node._recorder.get("pbx1", caller.outcome.uniqueid)  # type: ignore[union-attr]
        assert record is not None
        assert record.outcome == "abandoned_ivr"
        assert record.caller_token is not None and record.caller_token.startswith("T-")


async def test_stale_heartbeat_sends_new_callers_straight_to_the_fallback_queue(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        # No backend runs; its last heartbeat is a minute old on the PBX clock.
        line.sim.core.db_put("wpl", "heartbeat", str(int(line.sim.clock.now()) - 60))
        caller = line.call([])
        await until(lambda: caller.outcome.joined, within=20)
        assert caller.outcome.joined == ["wpl-fallback"]
        assert not line.named("AsyncAGIStart")
        join = _joins(line, "wpl-fallback")[0]
        # Even without the backend, the queue and agents never see her number.
        assert join["CallerIDName"] == "1090-FALLBACK"
        assert caller.script.caller_num not in join["CallerIDNum"]
        caller.hang_up()


async def test_backend_killed_mid_ivr_every_caller_reaches_fallback_within_watchdog(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        callers = [line.call([]) for _ in range(5)]
        await until(lambda: len(line.named("AsyncAGIStart")) == 5, within=20)
        killed_at = line.sim.clock.now()
        await backend.kill()
        line.backend = None
        watchdog = line.menu.settings.watchdog_seconds
        await until(lambda: all(c.outcome.joined for c in callers), within=(watchdog + 5) / 10 + 5)
        assert all(c.outcome.joined == ["wpl-fallback"] for c in callers)
        joined_at = [
            float(h["Timestamp"]) for h in _joins(line, "wpl-fallback")
        ]
        assert max(joined_at) - killed_at <= watchdog + 2
        for caller in callers:
            caller.hang_up()


async def test_after_a_restart_no_caller_is_left_in_asyncagi(migrated_store: Store) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        await line.add_member("wpl-emergency", "agent1", paused=True)
        await line.add_member("wpl-general-hi", "agent1", paused=True)
        callers = [line.call([]) for _ in range(3)]
        await until(lambda: len(line.named("AsyncAGIStart")) == 3, within=20)
        await backend.kill()
        line.backend = None
        restarted = await line.start_backend()
        await until(lambda: all(c.outcome.joined for c in callers), within=40)
        assert restarted.ivr.stats.sessions_resumed == 3
        channels = await restarted.node.ops.channels()
        in_agi = [
            c for c in channels
            if c.name == "CoreShowChannel" and c.get("Application") == "AGI"
        ]
        assert in_agi == []
        # They were routed by the resumed IVR, not dropped to the fallback queue.
        assert all(c.outcome.joined == ["wpl-emergency"] for c in callers)
        for caller in callers:
            caller.hang_up()


async def test_the_shipped_manager_filters_apply_and_keep_what_the_backend_needs(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        backend = await line.start_backend()
        received: list[tuple[str, str]] = []

        async def collect(frame) -> None:  # type: ignore[no-untyped-def]
            received.append((frame.name, frame.get("Variable") or ""))

        backend.client.on_event("*", collect)
        await line.wait_heartbeat()
        await line.add_member("wpl-general-hi", "agent1")
        caller = line.call(["", "1", "2", "1"], talk_time=3)
        await until(lambda: caller.done.is_set(), within=30)
        await until(lambda: ("Hangup", "") in received, within=10)
        names = {name for name, _ in received}
        # The PBX emitted these, the filters kept them from the backend's user...
        emitted = {name for name, _ in line.events}
        assert "Newexten" in emitted and "Newexten" not in names
        assert all(var.startswith("WPL_") for name, var in received if name == "VarSet")
        assert any(name == "VarSet" for name, _ in received)  # WPL_* still arrive
        # ...and let through every event the backend needs.
        for needed in ("AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd", "QueueCallerJoin",
                       "AgentCalled", "AgentConnect", "AgentComplete", "Hangup"):
            assert needed in names, needed
