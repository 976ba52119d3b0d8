"""Live queue statistics, from the recorded Asterisk 22 traces and synthetic days."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callcenter.ami import AMIParser, Frame
from callcenter.pbx import events as ev
from callcenter.pbx.model import PbxModel
from callcenter.queues import QueueFigures, QueueStatsConfig, QueueStatsService

TRACES = Path(__file__).parent / "fixtures" / "asterisk"
KOLKATA = ZoneInfo("Asia/Kolkata")


def frames(trace: str) -> list[Frame]:
    return AMIParser().feed((TRACES / f"{trace}.ami").read_bytes())


class Desk:
    """A PBX model and its statistics, fed the way the application feeds them."""

    def __init__(self, config: QueueStatsConfig | None = None, **kwargs: object) -> None:
        self.model = PbxModel("lab")
        self.stats = QueueStatsService(self.model, config, **kwargs)  # type: ignore[arg-type]

    def apply(self, event: ev.PbxEvent) -> None:
        self.model.apply(event)
        self.stats.apply(event)

    def feed(self, trace_frames: Iterable[Frame]) -> None:
        for frame in trace_frames:
            if frame.kind == "event" and (event := typed(frame)) is not None:
                self.apply(event)

    def queue(self, name: str) -> QueueFigures:
        return next(q for q in self.stats.snapshot().queues if q.queue == name)


def typed(frame: Frame) -> ev.PbxEvent | None:
    return ev.typed_event("lab", frame)


def replay(trace: str, config: QueueStatsConfig | None = None) -> Desk:
    desk = Desk(config)
    desk.feed(frames(trace))
    return desk


# -- the recorded traces ------------------------------------------------------------


def test_abandon_trace_lists_the_caller_with_her_wait_and_position() -> None:
    desk = replay("queue_abandon_call")
    snap = desk.stats.snapshot()
    abandon = next(f for f in frames("queue_abandon_call") if f.name == "QueueCallerAbandon")

    [call] = snap.abandoned_calls
    assert call.queue == "counselors"
    assert call.wait == 8 == int(abandon["HoldTime"])
    assert call.position == int(abandon["Position"]) == 1
    assert call.original_position == int(abandon["OriginalPosition"]) == 1
    assert call.at == float(abandon["Timestamp"])
    assert call.at_local.endswith("+05:30")
    assert call.call_id == abandon["Linkedid"]
    # The carrier's caller name is not a token: the list must not show it.
    assert call.caller == "unknown"

    counselors = desk.queue("counselors")
    assert (counselors.offered, counselors.answered, counselors.abandoned) == (1, 0, 1)
    assert counselors.overflowed == 0 and counselors.waiting == 0
    # 8 s <= 20 s: a short abandon, outside the service level; still an abandon.
    assert counselors.short_abandoned == 1
    assert counselors.service_level is None
    assert counselors.abandon_rate == 1.0
    assert snap.overall.abandoned == 1 and snap.overall.offered == 1


def test_priority_trace_two_offered_two_answered_with_their_hold_times() -> None:
    trace = frames("queue_priority_two_callers")
    desk = Desk()
    longest_seen: list[float] = []
    for frame in trace:
        if frame.kind == "event" and (event := typed(frame)) is not None:
            desk.apply(event)
            if frame.name == "QueueCallerJoin":
                longest_seen.append(desk.queue("counselors").longest_wait)

    joins = [float(f["Timestamp"]) for f in trace if f.name == "QueueCallerJoin"]
    # When B joins, the longest wait is A's, measured on the PBX clock.
    assert longest_seen == [0.0, pytest.approx(joins[1] - joins[0])]

    holds = [int(f["HoldTime"]) for f in trace if f.name == "AgentConnect"]
    counselors = desk.queue("counselors")
    assert (counselors.offered, counselors.answered) == (2, 2)
    assert counselors.abandoned == counselors.overflowed == counselors.lost == 0
    assert counselors.average_speed_of_answer == pytest.approx(sum(holds) / 2)
    assert counselors.longest_answered_wait == max(holds)
    talks = [int(f["TalkTime"]) for f in trace if f.name == "AgentComplete"]
    assert counselors.average_talk_time == pytest.approx(sum(talks) / 2)
    assert counselors.service_level == 1.0
    assert counselors.waiting == 0


def test_ring_no_answer_trace_counts_the_answer_and_the_agent_who_let_it_ring() -> None:
    desk = replay("queue_ringnoanswer")
    snap = desk.stats.snapshot()
    queue = desk.queue("ringnoanswer")
    assert (queue.offered, queue.answered, queue.overflowed) == (1, 1, 0)
    assert queue.average_speed_of_answer == 17
    assert queue.ring_no_answer == {"PJSIP/agent4": 1}
    assert snap.overall.ring_no_answer == {"PJSIP/agent4": 1}
    agents = {a.interface: a for a in snap.agents}
    assert agents["PJSIP/agent4"].ring_no_answer == 1
    assert agents["PJSIP/agent4"].answered == 0
    assert agents["PJSIP/agent2"].answered == 1
    assert agents["PJSIP/agent2"].ring_no_answer == 0


def test_agent_in_two_queues_counts_once_overall_in_the_recorded_trace() -> None:
    # agent2 is a member of both counselors and ringnoanswer in the lab.
    desk = replay("queue_priority_two_callers")
    snap = desk.stats.snapshot()
    per_queue = sum(q.agents.available for q in snap.queues)
    assert desk.model.member("ringnoanswer", "PJSIP/agent2") is not None
    assert desk.model.member("counselors", "PJSIP/agent2") is not None
    assert per_queue == 3
    assert snap.overall.agents.available == 2


def test_agents_on_call_and_ringing_follow_the_recorded_device_states() -> None:
    trace = frames("queue_asyncagi_call")
    desk = Desk()
    seen: list[tuple[int, int]] = []
    for frame in trace:
        if frame.kind == "event" and (event := typed(frame)) is not None:
            desk.apply(event)
            if isinstance(event, ev.MemberChanged):
                agents = desk.stats.snapshot().overall.agents
                seen.append((agents.ringing, agents.on_call))
    assert seen == [(1, 0), (0, 1), (0, 0)]


def test_snapshot_never_carries_a_caller_number_or_carrier_name() -> None:
    for trace in ("queue_abandon_call", "queue_priority_two_callers", "queue_asyncagi_call",
                  "ivr_getdata_dtmf", "callback_originate_local"):
        trace_frames = frames(trace)
        numbers = {
            value for f in trace_frames for name in ("CallerIDNum", "ConnectedLineNum")
            if (value := f.get(name)) and value.isdigit() and len(value) >= 4
        }
        desk = Desk()
        desk.feed(trace_frames)
        text = json.dumps(desk.stats.snapshot().model_dump(mode="json"))
        assert numbers, trace
        for number in numbers:
            assert number not in text, (trace, number)
        assert "Lab Caller" not in text


# -- synthetic scenarios -----------------------------------------------------------

T0 = datetime(2026, 3, 10, 11, 0, tzinfo=KOLKATA).timestamp()


def ref(uid: str, name: str = "") -> ev.ChannelRef:
    return ev.ChannelRef(f"PJSIP/caller-{uid}", uid, uid, "up", caller_name=name or None)


def agent_ref(uid: str) -> ev.ChannelRef:
    return ev.ChannelRef(f"PJSIP/agent-{uid}", f"a{uid}", uid, "up")


def join(at: float, uid: str, queue: str = "general", position: int = 1,
         label: str = "") -> ev.CallerJoinedQueue:
    return ev.CallerJoinedQueue("lab", at, ref(uid, label), queue, position, position)


def leave(at: float, uid: str, queue: str = "general") -> ev.CallerLeftQueue:
    return ev.CallerLeftQueue("lab", at, ref(uid), queue, 1, 0)


def abandon(at: float, uid: str, hold: int, queue: str = "general",
            position: int = 1, original: int = 1) -> ev.CallerAbandoned:
    return ev.CallerAbandoned("lab", at, ref(uid), queue, position, original, hold)


def connect(at: float, uid: str, hold: int, queue: str = "general",
            agent: str = "PJSIP/anita") -> ev.AgentConnected:
    return ev.AgentConnected("lab", at, ref(uid), agent_ref(uid), queue, agent, "Anita",
                             hold_time=hold)


def complete(at: float, uid: str, talk: int, queue: str = "general",
             agent: str = "PJSIP/anita") -> ev.AgentCompleted:
    return ev.AgentCompleted("lab", at, ref(uid), agent_ref(uid), queue, agent, "Anita",
                             talk_time=talk, reason="caller")


def hangup(at: float, uid: str) -> ev.ChannelHungUp:
    return ev.ChannelHungUp("lab", at, ref(uid), 16, "Normal Clearing")


def member(at: float, queue: str, interface: str, *, change: str = "status",
           status: str = "not_inuse", paused: bool = False, reason: str = "",
           in_call: bool = False, last_call: int = 0, wrapuptime: int = 0) -> ev.MemberChanged:
    state = ev.MemberState(
        queue=queue, interface=interface, name=interface.rsplit("/", 1)[-1],
        state_interface=interface, membership="dynamic", penalty=0, calls_taken=0,
        last_call=last_call, last_pause=0, login_time=0, in_call=in_call, status=status,
        paused=paused, paused_reason=reason, ringinuse=False, wrapuptime=wrapuptime,
    )
    return ev.MemberChanged("lab", at, change, state)


def answered_call(desk: Desk, at: float, uid: str, hold: int, queue: str = "general") -> None:
    desk.apply(join(at, uid, queue))
    desk.apply(leave(at + hold, uid, queue))
    desk.apply(connect(at + hold, uid, hold, queue))


def abandoned_call(desk: Desk, at: float, uid: str, hold: int, position: int = 1,
                   label: str = "") -> None:
    """What app_queue reports when she hangs up: Abandon, then Leave, then the Hangup."""
    desk.apply(join(at, uid, position=position, label=label))
    desk.apply(abandon(at + hold, uid, hold, position=position, original=position))
    desk.apply(leave(at + hold, uid))
    desk.apply(hangup(at + hold, uid))


def test_service_level_boundary_is_inclusive_at_exactly_twenty_seconds() -> None:
    desk = Desk()
    answered_call(desk, T0, "1", hold=20)
    answered_call(desk, T0 + 100, "2", hold=21)
    # Abandons: at exactly T she is a short abandon (left out); after T she counts.
    abandoned_call(desk, T0 + 200, "3", hold=20)
    abandoned_call(desk, T0 + 300, "4", hold=21)
    general = desk.queue("general")
    assert general.answered_within_threshold == 1
    assert (general.answered, general.abandoned, general.short_abandoned) == (2, 2, 1)
    # 1 within / (2 answered + 1 abandoned after T)
    assert general.service_level == pytest.approx(1 / 3)
    assert general.abandon_rate == pytest.approx(2 / 4)
    assert general.average_speed_of_answer == pytest.approx(20.5)


def test_service_level_threshold_is_configured_per_queue() -> None:
    config = QueueStatsConfig(queue_thresholds={"emergency": 10})
    desk = Desk(config)
    answered_call(desk, T0, "1", hold=15, queue="emergency")
    answered_call(desk, T0 + 50, "2", hold=15, queue="general")
    assert desk.queue("emergency").service_level_threshold == 10
    assert desk.queue("emergency").service_level == 0.0
    assert desk.queue("general").service_level == 1.0


def test_leave_before_agent_connect_is_an_answer_not_an_overflow() -> None:
    desk = Desk()
    desk.apply(join(T0, "1"))
    desk.apply(leave(T0 + 5, "1"))
    mid = desk.queue("general")
    assert (mid.answered, mid.overflowed, mid.waiting) == (0, 0, 0)
    desk.apply(connect(T0 + 5.0001, "1", 5))
    desk.apply(hangup(T0 + 60, "1"))
    general = desk.queue("general")
    assert (general.offered, general.answered, general.overflowed) == (1, 1, 0)


def test_overflow_to_another_queue_counts_per_queue_and_once_overall() -> None:
    desk = Desk()
    desk.apply(join(T0, "1", "general"))
    desk.apply(leave(T0 + 600, "1", "general"))  # Queue() timeout
    desk.apply(join(T0 + 600.01, "1", "duty"))  # the dialplan's overflow route
    # Joining the next queue settles the first one at once, without the grace.
    assert desk.queue("general").overflowed == 1
    desk.apply(leave(T0 + 612, "1", "duty"))
    desk.apply(connect(T0 + 612, "1", 12, "duty"))
    snap = desk.stats.snapshot()
    general, duty = desk.queue("general"), desk.queue("duty")
    assert (general.offered, general.overflowed, general.answered) == (1, 1, 0)
    assert (duty.offered, duty.answered, duty.service_level) == (1, 1, 1.0)
    # Overall she is one caller, answered after 612 s across both queues.
    assert (snap.overall.offered, snap.overall.answered, snap.overall.overflowed) == (1, 1, 0)
    assert snap.overall.average_speed_of_answer == pytest.approx(612, abs=0.1)
    assert snap.overall.service_level == 0.0


def test_a_leave_nothing_follows_becomes_an_overflow_after_the_grace() -> None:
    desk = Desk(QueueStatsConfig(leave_grace=10))
    desk.apply(join(T0, "1"))
    desk.apply(leave(T0 + 30, "1"))  # leavewhenempty
    desk.apply(join(T0 + 35, "2"))
    assert desk.queue("general").overflowed == 0
    desk.apply(join(T0 + 41, "3"))
    general = desk.queue("general")
    assert general.overflowed == 1
    # An overflow always counts against the service level.
    assert general.service_level == 0.0
    # Overall she is decided when her channel ends (she may still be helped elsewhere).
    assert desk.stats.snapshot().overall.overflowed == 0
    desk.apply(hangup(T0 + 100, "1"))
    assert desk.stats.snapshot().overall.overflowed == 1


def test_midnight_in_kolkata_starts_a_new_day_and_carries_the_waiting() -> None:
    midnight = datetime(2026, 3, 11, 0, 0, tzinfo=KOLKATA).timestamp()
    desk = Desk()
    answered_call(desk, midnight - 3600, "1", hold=4)
    abandoned_call(desk, midnight - 120, "2", hold=60)
    desk.apply(join(midnight - 30, "3"))  # still waiting at midnight
    before = desk.stats.snapshot()
    assert before.day == "2026-03-10"
    assert (before.overall.offered, before.overall.answered, before.overall.abandoned) == (3, 1, 1)
    assert len(before.abandoned_calls) == 1

    # 18:30 UTC: nothing happens at UTC midnight, everything at Kolkata's.
    desk.apply(member(midnight + 1, "general", "PJSIP/anita"))
    after = desk.stats.snapshot()
    assert after.day == "2026-03-11"
    general = desk.queue("general")
    assert (general.offered, general.answered, general.abandoned) == (1, 0, 0)
    assert (after.overall.offered, after.overall.answered) == (1, 0)
    assert after.abandoned_calls == []
    assert general.waiting == 1
    assert general.longest_wait == pytest.approx(31)

    desk.apply(leave(midnight + 10, "3"))
    desk.apply(connect(midnight + 10, "3", 40))
    general = desk.queue("general")
    assert (general.offered, general.answered, general.answered_within_threshold) == (1, 1, 0)


def test_utc_midnight_is_not_the_helpline_day() -> None:
    utc_midnight = datetime(2026, 3, 11, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    desk = Desk()
    answered_call(desk, utc_midnight - 60, "1", hold=3)
    answered_call(desk, utc_midnight + 60, "2", hold=3)
    snap = desk.stats.snapshot()
    assert snap.day == "2026-03-11"  # 05:31 in Kolkata, same day as 05:29
    assert snap.overall.answered == 2


def test_agent_states_count_each_agent_once_overall() -> None:
    desk = Desk(QueueStatsConfig(wrapup_time=30))
    now = T0 + 1000
    # Anita is in two queues and free in both.
    desk.apply(member(T0, "general", "PJSIP/anita", change="added"))
    desk.apply(member(T0, "counselling", "PJSIP/anita", change="added"))
    # Bina is paused for lunch in general only: she can still take counselling calls.
    desk.apply(member(T0, "general", "PJSIP/bina", change="added", paused=True, reason="lunch"))
    desk.apply(member(T0, "counselling", "PJSIP/bina", change="added"))
    # Chitra is on a call, Deepa's phone rings, Esha is in wrap-up (backend pause),
    # Farah's call ended 10 s ago (app_queue wrapuptime 30), Gita is paused, Hema offline.
    desk.apply(member(T0, "general", "PJSIP/chitra", change="added", status="inuse",
                      in_call=True))
    desk.apply(member(T0, "counselling", "PJSIP/chitra", change="added", status="inuse"))
    desk.apply(member(T0, "general", "PJSIP/deepa", change="added", status="ringing"))
    desk.apply(member(T0, "general", "PJSIP/esha", change="added", paused=True,
                      reason="wrapup"))
    desk.apply(member(T0, "fallback", "PJSIP/esha", change="added"))
    desk.apply(member(T0, "general", "PJSIP/farah", change="added",
                      last_call=int(now) - 10))
    desk.apply(member(T0, "general", "PJSIP/gita", change="added", paused=True,
                      reason="break"))
    desk.apply(member(T0, "general", "PJSIP/hema", change="added", status="unavailable"))
    snap = desk.stats.snapshot(now=now)
    overall = snap.overall.agents
    assert overall.model_dump() == {
        "available": 2, "ringing": 1, "on_call": 1, "wrap_up": 2, "paused": 1, "offline": 1,
    }
    general = desk.queue("general").agents
    assert (general.available, general.paused, general.wrap_up) == (1, 2, 2)
    counselling = desk.queue("counselling").agents
    assert (counselling.available, counselling.on_call) == (2, 1)
    # The backend never pauses her in the fallback queue, where she shows as free;
    # overall, wrap-up in any queue wins over free in another.
    assert desk.queue("fallback").agents.available == 1

    # Farah's wrap-up floor ends 30 s after her last call, on the PBX clock.
    later = desk.stats.snapshot(now=now + 25).overall.agents
    assert (later.wrap_up, later.available) == (1, 3)


def test_agent_state_hook_overrides_the_pbx_view() -> None:
    states = {"PJSIP/anita": "wrap-up", "PJSIP/bina": None, "PJSIP/chitra": "nonsense"}
    desk = Desk(agent_state=states.get)
    for name in states:
        desk.apply(member(T0, "general", name, change="added"))
    agents = desk.stats.snapshot().overall.agents
    # Anita as the agents package says; Bina and Chitra as the PBX says.
    assert (agents.wrap_up, agents.available) == (1, 2)


def test_handle_time_adds_the_wrapup_until_the_backend_unpauses_her() -> None:
    desk = Desk(QueueStatsConfig(wrapup_time=30))
    agent = "PJSIP/anita"
    desk.apply(member(T0, "general", agent, change="added"))
    desk.apply(join(T0, "1"))
    desk.apply(leave(T0 + 3, "1"))
    desk.apply(connect(T0 + 3, "1", 3))
    desk.apply(member(T0 + 3, "general", agent, change="pause", paused=True, reason="wrapup",
                      status="inuse", in_call=True))
    desk.apply(complete(T0 + 63, "1", talk=60))
    desk.apply(member(T0 + 63, "general", agent, status="not_inuse", paused=True,
                      reason="wrapup", last_call=int(T0 + 63)))
    assert desk.stats.snapshot().overall.agents.wrap_up == 1
    assert desk.queue("general").average_handle_time is None  # wrap-up not over yet
    desk.apply(member(T0 + 108, "general", agent, change="pause", paused=False))
    general = desk.queue("general")
    assert general.average_talk_time == 60
    assert general.average_handle_time == pytest.approx(60 + 45)

    # A quick form still costs app_queue's 30 s floor.
    desk.apply(join(T0 + 200, "2"))
    desk.apply(leave(T0 + 201, "2"))
    desk.apply(connect(T0 + 201, "2", 1))
    desk.apply(member(T0 + 201, "general", agent, change="pause", paused=True,
                      reason="wrapup"))
    desk.apply(complete(T0 + 221, "2", talk=20))
    desk.apply(member(T0 + 226, "general", agent, change="pause", paused=False))
    assert desk.queue("general").average_handle_time == pytest.approx((105 + 50) / 2)


def test_abandoned_list_is_newest_first_bounded_and_masked() -> None:
    desk = Desk(QueueStatsConfig(abandoned_log_limit=3))
    for n in range(5):
        abandoned_call(desk, T0 + n * 100, str(n), hold=30 + n, label=f"T-4821AB{n}C")
    snap = desk.stats.snapshot()
    assert [c.caller for c in snap.abandoned_calls] == ["T-4821AB4C", "T-4821AB3C", "T-4821AB2C"]
    assert [c.wait for c in snap.abandoned_calls] == [34, 33, 32]
    assert snap.abandoned_calls_dropped == 2
    assert snap.overall.abandoned == 5  # the figures keep counting
    assert len(desk.stats.snapshot(abandoned_limit=1).abandoned_calls) == 1


def test_series_has_sixty_minutes_of_waiting_peaks_and_service_level() -> None:
    start = (int(T0) // 60) * 60
    desk = Desk()
    desk.apply(join(start + 5, "1"))
    desk.apply(join(start + 10, "2"))
    desk.apply(leave(start + 15, "1"))
    desk.apply(connect(start + 15, "1", 10))
    # Two minutes later caller 2 is answered late.
    desk.apply(leave(start + 150, "2"))
    desk.apply(connect(start + 150, "2", 140))
    series = desk.stats.snapshot(now=start + 3 * 60).overall.series
    assert len(series) == 60
    by_minute = {p.minute: p for p in series}
    first, second, third = (by_minute[start + k * 60] for k in range(3))
    assert (first.waiting_max, first.calls, first.service_level) == (2, 1, 1.0)
    # A quiet minute repeats the state the minute before ended in.
    assert (second.waiting_max, second.calls, second.service_level) == (1, 0, None)
    assert (third.waiting_max, third.calls, third.service_level) == (1, 1, 0.0)
    assert third.service_level_today == 0.5

    series = desk.stats.snapshot(now=start + 90 * 60).overall.series
    assert len(series) == 60
    assert series[-1].minute == start + 90 * 60
    # Those minutes scrolled out; a quiet hour repeats the last state.
    assert {p.waiting_max for p in series} == {0}
    assert {p.service_level_today for p in series} == {0.5}


# -- reconnect -----------------------------------------------------------------


def _queue_status(trace_frames: list[Frame], action_id: str) -> list[Frame]:
    return [f for f in trace_frames if f.kind == "event" and f.action_id == action_id
            and not f.name.endswith("Complete")]


def test_rebuild_after_reconnect_does_not_double_count() -> None:
    trace = frames("queue_priority_two_callers")
    status = _queue_status(trace, "lab-8")
    assert [f.name for f in status].count("QueueEntry") == 2
    desk = Desk()
    for frame in trace:
        if frame.kind == "event" and (event := typed(frame)) is not None:
            desk.apply(event)
        if frame.name == "QueueStatusComplete":
            # The link dropped and came back while both callers waited.
            desk.model.reset_from_snapshot(status, [])
            desk.stats.rebuild()
            desk.stats.rebuild()
            mid = desk.queue("counselors")
            assert (mid.offered, mid.waiting, mid.lost) == (2, 2, 0)
    counselors = desk.queue("counselors")
    assert (counselors.offered, counselors.answered, counselors.lost) == (2, 2, 0)
    snap = desk.stats.snapshot()
    assert (snap.overall.offered, snap.overall.answered) == (2, 2)


def test_rebuild_counts_a_caller_who_joined_while_the_link_was_down_once() -> None:
    trace = frames("queue_priority_two_callers")
    status = _queue_status(trace, "lab-8")
    desk = Desk()
    first_join = next(i for i, f in enumerate(trace) if f.name == "QueueCallerJoin")
    desk.feed(trace[:first_join])
    assert desk.queue("counselors").offered == 0
    # Both joins were missed; QueueStatus after the reconnect shows both callers.
    desk.model.reset_from_snapshot(status, [])
    desk.stats.rebuild()
    desk.stats.rebuild()
    assert desk.queue("counselors").offered == 2
    resume = next(i for i, f in enumerate(trace) if f.name == "QueueStatusComplete") + 1
    desk.feed(trace[resume:])
    counselors = desk.queue("counselors")
    assert (counselors.offered, counselors.answered) == (2, 2)


def test_rebuild_counts_an_outcome_missed_while_disconnected_as_lost() -> None:
    trace = frames("queue_asyncagi_call")
    cut = next(i for i, f in enumerate(trace) if f.name == "AgentCalled")
    desk = Desk()
    desk.feed(trace[:cut])
    assert desk.queue("counselors").waiting == 1
    desk.model.reset_from_snapshot([], [])  # back: the call is over
    desk.stats.rebuild()
    counselors = desk.queue("counselors")
    assert (counselors.offered, counselors.answered, counselors.abandoned) == (1, 0, 0)
    assert counselors.lost == 1
    assert counselors.service_level is None and counselors.abandon_rate is None
    assert desk.stats.snapshot().overall.lost == 1


def test_repeated_events_count_once() -> None:
    desk = Desk()
    for event in (join(T0, "1"), join(T0, "1"), leave(T0 + 4, "1"),
                  connect(T0 + 4, "1", 4), connect(T0 + 4, "1", 4)):
        desk.apply(event)
    general = desk.queue("general")
    assert (general.offered, general.answered) == (1, 1)


def test_snapshot_is_json_with_stable_field_names() -> None:
    desk = replay("queue_ringnoanswer")
    data = json.loads(desk.stats.snapshot().model_dump_json())
    assert set(data) == {
        "node", "pbx_time", "day", "time_zone", "overall", "queues", "agents",
        "abandoned_calls", "abandoned_calls_dropped",
    }
    assert data["time_zone"] == "Asia/Kolkata"
    assert {"waiting", "longest_wait", "offered", "answered", "abandoned", "overflowed",
            "service_level", "abandon_rate", "average_speed_of_answer",
            "average_handle_time", "agents", "series"} <= set(data["overall"])
