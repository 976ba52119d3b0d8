"""The live PBX model, driven by the events real Asterisk 22 sent (recorded traces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.ami import AMIParser, Frame
from callcenter.pbx.events import (
    AgentConnected,
    AgentRingNoAnswer,
    MemberChanged,
    typed_event,
)
from callcenter.pbx.model import LiveCall, PbxModel, default_safe_label

TRACES = Path(__file__).parent / "fixtures" / "asterisk"


def frames(trace: str) -> list[Frame]:
    return AMIParser().feed((TRACES / f"{trace}.ami").read_bytes())


def replay(trace: str, model: PbxModel | None = None) -> tuple[PbxModel, list[LiveCall]]:
    model = model or PbxModel("lab")
    ended: list[LiveCall] = []
    model.on_call_ended(ended.append)
    for frame in frames(trace):
        if frame.kind == "event":
            event = typed_event("lab", frame)
            if event is not None:
                model.apply(event)
    return model, ended


def test_answered_queue_call_through_asyncagi() -> None:
    model, ended = replay("queue_asyncagi_call")
    assert len(ended) == 1
    call = ended[0]
    assert call.went_through_ivr
    assert call.queue == "counselors"
    assert call.agent_interface == "PJSIP/agent2"
    assert call.answered_at is not None and call.ended_at is not None
    assert call.answered_at < call.ended_at
    assert call.abandoned_in is None
    complete = next(f for f in frames("queue_asyncagi_call") if f.name == "AgentComplete")
    assert call.talk_time == int(complete["TalkTime"])
    # Everything hung up: nothing live remains.
    assert model.channels == {}
    assert model.calls == {}
    assert model.waiting("counselors") == []


def test_abandon_in_queue_is_recorded_with_hold_time() -> None:
    _, ended = replay("queue_abandon_call")
    assert [c.abandoned_in for c in ended] == ["queue"]
    assert ended[0].hold_time == 8
    assert ended[0].agent_interface is None


def test_priority_caller_is_inserted_ahead_and_connected_first() -> None:
    model = PbxModel("lab")
    order: list[str] = []
    positions_seen: list[list[str]] = []
    for frame in frames("queue_priority_two_callers"):
        if frame.kind != "event":
            continue
        event = typed_event("lab", frame)
        if event is None:
            continue
        model.apply(event)
        if isinstance(event, AgentConnected):
            order.append(event.caller.uniqueid)
        if frame.name == "QueueCallerJoin":
            positions_seen.append([e.uniqueid for e in model.waiting("counselors")])
    first, second = positions_seen
    # Caller B (QUEUE_PRIO=10) joined at position 1, ahead of A who was waiting.
    assert len(second) == 2 and second[1] == first[0]
    assert order == [second[0], second[1]]
    assert model.waiting("counselors") == []


def test_ring_no_answer_returns_the_call_to_waiting_then_another_agent_answers() -> None:
    model = PbxModel("lab")
    phases: list[str] = []
    for frame in frames("queue_ringnoanswer"):
        if frame.kind != "event":
            continue
        event = typed_event("lab", frame)
        if event is None:
            continue
        model.apply(event)
        if isinstance(event, AgentRingNoAnswer):
            assert event.ring_time_ms == 15000  # milliseconds, unlike AgentConnect
            phases.append(next(iter(model.calls.values())).phase)
        if isinstance(event, AgentConnected):
            call = next(iter(model.calls.values()))
            phases.append(call.phase)
            assert call.rung == ["PJSIP/agent4", "PJSIP/agent2"]
            assert call.agent_interface == "PJSIP/agent2"
    assert phases == ["queued", "connected"]


def test_member_pause_with_reason_follows_events() -> None:
    model = PbxModel("lab")
    reasons: list[tuple[bool, str]] = []
    for frame in frames("actions"):
        if frame.kind != "event":
            continue
        event = typed_event("lab", frame)
        if event is None:
            continue
        model.apply(event)
        if isinstance(event, MemberChanged) and event.change == "pause":
            member = model.member("counselors", "PJSIP/agent3")
            assert member is not None
            reasons.append((member.paused, member.paused_reason))
    assert reasons[0] == (True, "lunch")
    assert reasons[-1][0] is False
    # QueueRemove of agent3 removed her from the model.
    assert model.member("counselors", "PJSIP/agent3") is None


def _list_items(trace: str, action_id: str, complete: str) -> list[Frame]:
    return [
        f for f in frames(trace)
        if f.kind == "event" and f.action_id == action_id and f.name != complete
    ]


def test_reset_from_snapshot_equals_queue_status_field_by_field() -> None:
    status = _list_items("queue_priority_two_callers", "lab-8", "QueueStatusComplete")
    assert any(f.name == "QueueEntry" for f in status)
    model = PbxModel("lab")
    model.reset_from_snapshot(status, [])
    for frame in status:
        if frame.name == "QueueMember":
            member = model.member(frame["Queue"], frame["Location"])
            assert member is not None
            assert member.name == frame["Name"]
            assert member.paused == (frame["Paused"] == "1")
            assert member.paused_reason == frame["PausedReason"]
            assert member.calls_taken == int(frame["CallsTaken"])
            assert member.membership == frame["Membership"]
        elif frame.name == "QueueEntry":
            entries = {e.uniqueid: e for e in model.waiting(frame["Queue"])}
            entry = entries[frame["Uniqueid"]]
            assert entry.position == int(frame["Position"])
            assert entry.priority == int(frame["Priority"])
            assert entry.channel == frame["Channel"]


def test_reset_reports_calls_that_ended_while_disconnected() -> None:
    model = PbxModel("lab")
    all_frames = frames("queue_asyncagi_call")
    cut = next(i for i, f in enumerate(all_frames) if f.name == "AgentConnect")
    for frame in all_frames[:cut]:
        if frame.kind == "event" and (event := typed_event("lab", frame)) is not None:
            model.apply(event)
    assert len(model.calls) == 1
    # The link drops; when it returns the PBX shows no channels at all.
    gone = model.reset_from_snapshot([], [])
    assert [c.phase for c in gone] == ["ended"]
    assert model.calls == {} and model.channels == {}


def test_carrier_caller_name_is_not_kept_but_tokens_are() -> None:
    model, _ = replay("queue_asyncagi_call")
    assert default_safe_label("Lab Caller") is None
    assert default_safe_label("T-4821AB") == "T-4821AB"
    assert default_safe_label("1090-FALLBACK") == "1090-FALLBACK"


@pytest.mark.parametrize("trace", sorted(p.stem for p in TRACES.glob("*.ami")))
def test_every_trace_replays_without_leaving_calls(trace: str) -> None:
    model, ended = replay(trace)
    # Calls still up when the recording stopped are allowed only in the action
    # traces, which end mid-call by design.
    if trace.startswith(("queue_", "ivr_", "callback_", "basic_")):
        assert model.calls == {}, model.calls
        assert ended, "each call trace ends its call"
