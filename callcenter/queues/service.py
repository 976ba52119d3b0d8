"""Live queue statistics for the wallboard, from typed PBX events.

Every time here is the PBX's: event ``Timestamp:`` values, and "now" is the
latest one seen (or one the caller passes in from the PBX heartbeat). The host's
clock is never read, so a backend whose clock drifts still shows the waits the
callers lived through.

Wiring (one service per PBX node, next to its :class:`PbxModel`)::

    model.apply(event)      # the model first: the service reads members and
    stats.apply(event)      # waiting callers from it
    ...
    model.reset_from_snapshot(queue_status, channels)   # after a reconnect
    stats.rebuild()

Counting, and the definitions the wallboard is read by, are in
:mod:`callcenter.queues.stats`. What this module adds:

* Per queue, each QueueCallerJoin is one offer. Overall, one *caller* is one
  offer however many queues she passes through (her queue, then the duty
  officers, then the fallback queue); her overall wait runs from her first join
  to the agent who answered her, and her overall outcome is the last one:
  answered anywhere, abandoned, or overflowed when she left the queues for good
  (her channel hung up after a queue let her go, e.g. to the emergency number).
* app_queue sends QueueCallerLeave *before* AgentConnect (microseconds apart in
  the recorded traces), so a leave is only an overflow once it is clear no
  AgentConnect follows: when she joins another queue, when her channel hangs up,
  or when ``leave_grace`` PBX seconds passed.
* Each event is counted once per (caller channel, queue): a repeated or replayed
  event, or a caller seen again in QueueStatus after a reconnect, changes
  nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callcenter.pbx import events as ev
from callcenter.pbx.model import PbxModel, default_safe_label

from .stats import (
    AbandonedCall,
    AbandonedLog,
    AgentCounts,
    AgentDay,
    AgentState,
    AgentTally,
    DayTally,
    MinuteSeries,
    QueueFigures,
    QueueStatsSnapshot,
    normalise_agent_state,
)

#: The pause reason the backend sets for wrap-up (architecture, step 5).
WRAPUP_REASON = "wrapup"
UNKNOWN_CALLER = "unknown"

AgentStateHook = Callable[[str], str | None]

_ON_CALL_DEVICE = frozenset({"inuse", "busy", "onhold", "ringinuse"})
_OFFLINE_DEVICE = frozenset({"unavailable", "invalid"})


@dataclass(frozen=True, slots=True)
class QueueStatsConfig:
    time_zone: str = "Asia/Kolkata"
    #: Service-level threshold T in seconds, and per-queue overrides.
    service_level_threshold: int = 20
    queue_thresholds: Mapping[str, int] = field(default_factory=dict)
    #: app_queue ``wrapuptime`` of each queue (queues.conf); a member's own
    #: ``Wrapuptime`` wins when set, as in app_queue.
    wrapup_time: int = 0
    queue_wrapup_times: Mapping[str, int] = field(default_factory=dict)
    #: PBX seconds after a QueueCallerLeave before it counts as an overflow
    #: when nothing else (AgentConnect, a new join, her hangup) decided it.
    leave_grace: float = 10.0
    #: Abandoned calls kept for the supervisors' call-back list (today's only).
    abandoned_log_limit: int = 10_000
    #: Minutes of wallboard chart.
    series_minutes: int = 60

    def threshold(self, queue: str) -> int:
        return self.queue_thresholds.get(queue, self.service_level_threshold)

    def wrapup_floor(self, queue: str, member: ev.MemberState | None) -> int:
        if member is not None and member.wrapuptime > 0:
            return member.wrapuptime
        return self.queue_wrapup_times.get(queue, self.wrapup_time)


# Outcomes of one offer. "left": QueueCallerLeave seen, AgentConnect may still follow;
# "lost": it ended while the link was down.
_WAITING, _LEFT, _ANSWERED, _ABANDONED, _OVERFLOWED, _LOST = (
    "waiting", "left", "answered", "abandoned", "overflowed", "lost",
)
_OPEN = (_WAITING, _LEFT)


@dataclass(slots=True)
class _Offer:
    """One caller channel in one queue."""

    queue: str
    uniqueid: str
    linkedid: str
    joined_at: float | None
    label: str | None
    outcome: str = _WAITING
    left_at: float | None = None


@dataclass(slots=True)
class _Journey:
    """One caller channel across every queue it joins: the overall view."""

    uniqueid: str
    first_joined_at: float | None
    outcome: str = _WAITING
    left_unanswered: bool = False
    #: an offer of hers ended while the link was down.
    lost: bool = False


@dataclass(slots=True)
class _WrapUp:
    queue: str
    talk_time: float
    completed_at: float | None
    floor: int


class QueueStatsService:
    """Today's queue figures and the live state of one PBX node's queues."""

    def __init__(
        self,
        model: PbxModel,
        config: QueueStatsConfig | None = None,
        *,
        agent_state: AgentStateHook | None = None,
        safe_label: Callable[[str | None], str | None] = default_safe_label,
    ) -> None:
        self.model = model
        self.config = config or QueueStatsConfig()
        self._zone = ZoneInfo(self.config.time_zone)
        self._agent_state = agent_state
        self._safe_label = safe_label
        self.now: float | None = None
        self._day: date | None = None
        self._next_midnight: float | None = None
        #: caller channel -> queue -> offer; a channel's offers go when it hangs up.
        self._offers: dict[str, dict[str, _Offer]] = {}
        #: offers whose QueueCallerLeave may still be followed by AgentConnect.
        self._leaving: dict[tuple[str, str], _Offer] = {}
        self._journeys: dict[str, _Journey] = {}
        self._wrapups: dict[str, _WrapUp] = {}
        self._overall = DayTally(self.config.service_level_threshold)
        self._tallies: dict[str, DayTally] = {}
        self._agents: dict[str, AgentTally] = {}
        self._abandoned = AbandonedLog(self.config.abandoned_log_limit)
        self._series_overall = MinuteSeries(self.config.series_minutes)
        self._series: dict[str, MinuteSeries] = {}

    # -- clock and day ------------------------------------------------------------

    def advance(self, pbx_time: float) -> None:
        """Move "now" forward on the PBX's clock (events do it; a heartbeat may too)."""
        if self.now is not None and pbx_time <= self.now:
            return
        self.now = pbx_time
        if self._next_midnight is None or pbx_time >= self._next_midnight:
            self._start_day(pbx_time)
        self._settle_leaves(pbx_time)

    def _start_day(self, at: float) -> None:
        today = datetime.fromtimestamp(at, self._zone).date()
        rolled = self._day is not None and today != self._day
        self._day = today
        self._next_midnight = datetime.combine(
            today + timedelta(days=1), time(0), tzinfo=self._zone
        ).timestamp()
        if not rolled:
            return
        self._overall = DayTally(self.config.service_level_threshold)
        self._tallies = {}
        self._agents = {}
        self._abandoned.clear()
        # Waits still going on are today's calls too (see stats: "offered").
        for offers in self._offers.values():
            for offer in offers.values():
                if offer.outcome in _OPEN:
                    self._tally(offer.queue).offered += 1
        for journey in self._journeys.values():
            if journey.outcome == _WAITING:
                self._overall.offered += 1
        for series in (self._series_overall, *self._series.values()):
            series.day_rolled(at)

    def _tally(self, queue: str) -> DayTally:
        tally = self._tallies.get(queue)
        if tally is None:
            tally = self._tallies[queue] = DayTally(self.config.threshold(queue))
        return tally

    def _series_of(self, queue: str) -> MinuteSeries:
        series = self._series.get(queue)
        if series is None:
            series = self._series[queue] = MinuteSeries(self.config.series_minutes)
        return series

    def _agent(self, interface: str, name: str = "") -> AgentTally:
        agent = self._agents.get(interface)
        if agent is None:
            agent = self._agents[interface] = AgentTally(interface, name)
        elif name:
            agent.name = name
        return agent

    # -- events -----------------------------------------------------------------

    def apply(self, event: ev.PbxEvent) -> None:
        """Take one typed event, after the model has taken it."""
        if event.timestamp is not None:
            self.advance(event.timestamp)
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _ts(self, event: ev.PbxEvent) -> float | None:
        return event.timestamp if event.timestamp is not None else self.now

    def _label_of(self, caller: ev.ChannelRef, offer: _Offer | None) -> str:
        channel = self.model.channels.get(caller.uniqueid)
        if channel is not None and channel.label:
            return channel.label
        call = self.model.calls.get(caller.linkedid)
        if call is not None and call.caller_uniqueid == caller.uniqueid and call.label:
            return call.label
        if offer is not None and offer.label:
            return offer.label
        return self._safe_label(caller.caller_name) or UNKNOWN_CALLER

    def _offer_for(self, event: ev.CallerAbandoned | ev.CallerLeftQueue | ev.AgentEvent,
                   hold_time: int | None = None) -> _Offer:
        """The offer an outcome event is about; one we never saw join is counted now."""
        offers = self._offers.setdefault(event.caller.uniqueid, {})
        offer = offers.get(event.queue)
        if offer is None:
            at = self._ts(event)
            joined = None if at is None or hold_time is None else at - hold_time
            offer = offers[event.queue] = _Offer(
                event.queue, event.caller.uniqueid, event.caller.linkedid, joined,
                self._safe_label(event.caller.caller_name),
            )
            self._tally(event.queue).offered += 1
            self._journey_for(event.caller.uniqueid, joined)
        return offer

    def _journey_for(self, uniqueid: str, joined_at: float | None) -> _Journey:
        journey = self._journeys.get(uniqueid)
        if journey is None:
            journey = self._journeys[uniqueid] = _Journey(uniqueid, joined_at)
            self._overall.offered += 1
        return journey

    def _overall_wait(self, journey: _Journey, offer: _Offer, wait: int) -> float:
        """Her wait across every queue: app_queue's wait in this one plus the time before."""
        if journey.first_joined_at is None or offer.joined_at is None:
            return wait
        return wait + max(0.0, offer.joined_at - journey.first_joined_at)

    def _caller_joined(self, event: ev.CallerJoinedQueue) -> None:
        uid = event.caller.uniqueid
        at = self._ts(event)
        offers = self._offers.setdefault(uid, {})
        for offer in list(offers.values()):
            if offer.outcome == _LEFT:
                self._overflow(offer)
        offer = offers.get(event.queue)
        if offer is None or offer.outcome != _WAITING:
            entry = next((e for e in self.model.waiting(event.queue) if e.uniqueid == uid), None)
            label = entry.label if entry is not None else self._safe_label(
                event.caller.caller_name)
            offers[event.queue] = _Offer(event.queue, uid, event.caller.linkedid, at, label)
            self._tally(event.queue).offered += 1
            self._journey_for(uid, at)
        self._observe_waiting(event.queue, at)

    def _caller_abandoned(self, event: ev.CallerAbandoned) -> None:
        offer = self._offer_for(event, event.hold_time)
        if offer.outcome not in _OPEN:
            return
        self._settle(offer, _ABANDONED)
        at = self._ts(event)
        tally = self._tally(event.queue)
        counts = tally.record_abandon(event.hold_time)
        self._observe_outcome(event.queue, at, counts, False)
        journey = self._journey_for(offer.uniqueid, offer.joined_at)
        if journey.outcome == _WAITING:
            journey.outcome = _ABANDONED
            self._overall_outcome(at, self._overall.record_abandon(
                self._overall_wait(journey, offer, event.hold_time)), False)
        self._abandoned.add(AbandonedCall(
            caller=self._label_of(event.caller, offer),
            call_id=event.caller.linkedid,
            queue=event.queue,
            wait=event.hold_time,
            position=event.position,
            original_position=event.original_position,
            at=at if at is not None else 0.0,
            at_local=self._local(at),
        ))

    def _caller_left(self, event: ev.CallerLeftQueue) -> None:
        offer = self._offer_for(event)
        if offer.outcome == _WAITING:
            offer.outcome = _LEFT
            offer.left_at = self._ts(event)
            self._leaving[(offer.uniqueid, offer.queue)] = offer
        self._observe_waiting(event.queue, self._ts(event))

    def _agent_connected(self, event: ev.AgentConnected) -> None:
        self._close_wrapup(event.interface, self._ts(event))
        offer = self._offer_for(event, event.hold_time)
        if offer.outcome not in _OPEN:
            return
        self._settle(offer, _ANSWERED)
        at = self._ts(event)
        met = self._tally(event.queue).record_answer(event.hold_time)
        self._observe_outcome(event.queue, at, True, met)
        self._agent(event.interface, event.member_name).answered += 1
        journey = self._journey_for(offer.uniqueid, offer.joined_at)
        if journey.outcome == _WAITING:
            journey.outcome = _ANSWERED
            met = self._overall.record_answer(
                self._overall_wait(journey, offer, event.hold_time))
            self._overall_outcome(at, True, met)
        self._observe_waiting(event.queue, at)

    def _agent_no_answer(self, event: ev.AgentRingNoAnswer) -> None:
        self._tally(event.queue).record_ring_no_answer(event.interface)
        self._overall.record_ring_no_answer(event.interface)
        self._agent(event.interface, event.member_name).ring_no_answer += 1

    def _agent_completed(self, event: ev.AgentCompleted) -> None:
        self._tally(event.queue).record_talk(event.talk_time)
        self._overall.record_talk(event.talk_time)
        self._agent(event.interface, event.member_name).talk_total += event.talk_time
        member = self.model.member(event.queue, event.interface)
        wrapup = _WrapUp(event.queue, event.talk_time, self._ts(event),
                         self.config.wrapup_floor(event.queue, member))
        if self._in_wrapup_pause(event.interface):
            self._wrapups[event.interface] = wrapup
        else:
            self._record_handle(wrapup, wrapup.floor)

    def _member_changed(self, event: ev.MemberChanged) -> None:
        interface = event.member.interface
        if interface in self._wrapups and not self._in_wrapup_pause(interface, event):
            self._close_wrapup(interface, self._ts(event))

    def _hung_up(self, event: ev.ChannelHungUp) -> None:
        uid = event.channel.uniqueid
        mine = list(self._offers.pop(uid, {}).values())
        for offer in mine:
            if offer.outcome == _LEFT:
                self._overflow(offer)
            elif offer.outcome == _WAITING:
                # Asterisk reports QueueCallerAbandon before the hangup of a caller
                # in a queue; not having seen it means it was lost with the link.
                self._lose(offer)
        self._end_journey(uid, self._ts(event))
        for queue in {o.queue for o in mine}:
            self._observe_waiting(queue, self._ts(event))

    _handlers: dict[type, Callable[[QueueStatsService, ev.PbxEvent], None]] = {
        ev.CallerJoinedQueue: _caller_joined,
        ev.CallerAbandoned: _caller_abandoned,
        ev.CallerLeftQueue: _caller_left,
        ev.AgentConnected: _agent_connected,
        ev.AgentRingNoAnswer: _agent_no_answer,
        ev.AgentCompleted: _agent_completed,
        ev.MemberChanged: _member_changed,
        ev.ChannelHungUp: _hung_up,
    }  # type: ignore[dict-item]

    # -- outcomes -----------------------------------------------------------------

    def _settle(self, offer: _Offer, outcome: str) -> None:
        offer.outcome = outcome
        self._leaving.pop((offer.uniqueid, offer.queue), None)

    def _overflow(self, offer: _Offer) -> None:
        self._settle(offer, _OVERFLOWED)
        self._tally(offer.queue).record_overflow()
        self._observe_outcome(offer.queue, offer.left_at, True, False)
        journey = self._journeys.get(offer.uniqueid)
        if journey is not None:
            journey.left_unanswered = True

    def _end_journey(self, uniqueid: str, at: float | None) -> None:
        """Her channel is gone: an overall wait not yet decided is decided now."""
        journey = self._journeys.pop(uniqueid, None)
        if journey is None or journey.outcome != _WAITING:
            return
        if journey.left_unanswered and not journey.lost:
            journey.outcome = _OVERFLOWED
            self._overall.record_overflow()
            self._overall_outcome(at, True, False)
        else:
            journey.outcome = _LOST
            self._overall.lost += 1

    def _lose(self, offer: _Offer) -> None:
        self._settle(offer, _LOST)
        self._tally(offer.queue).lost += 1
        journey = self._journeys.get(offer.uniqueid)
        if journey is not None:
            journey.lost = True

    def _settle_leaves(self, now: float) -> None:
        for offer in list(self._leaving.values()):
            if offer.left_at is None or now - offer.left_at >= self.config.leave_grace:
                self._overflow(offer)

    def _observe_outcome(self, queue: str, at: float | None, counts: bool, met: bool) -> None:
        if at is not None:
            self._series_of(queue).observe_outcome(
                at, counts, met, self._tally(queue).service_level)

    def _overall_outcome(self, at: float | None, counts: bool, met: bool) -> None:
        if at is not None:
            self._series_overall.observe_outcome(at, counts, met, self._overall.service_level)

    def _observe_waiting(self, queue: str, at: float | None) -> None:
        if at is None:
            return
        self._series_of(queue).observe_waiting(at, len(self.model.waiting(queue)))
        self._series_overall.observe_waiting(at, self._waiting_total())

    def _waiting_total(self) -> int:
        return len({e.uniqueid for q in self.model.queues.values() for e in q.entries})

    # -- wrap-up ------------------------------------------------------------------

    def _in_wrapup_pause(self, interface: str, event: ev.MemberChanged | None = None) -> bool:
        members = {m.queue: m for m in self.model.members_of(interface)}
        if event is not None:
            # The model may not have taken this event yet: the event is the truth.
            if event.change == "removed":
                members.pop(event.member.queue, None)
            else:
                members[event.member.queue] = event.member
        return any(_wrapup_paused(m) for m in members.values())

    def _close_wrapup(self, interface: str, at: float | None) -> None:
        wrapup = self._wrapups.pop(interface, None)
        if wrapup is None:
            return
        measured = 0.0
        if at is not None and wrapup.completed_at is not None:
            measured = max(0.0, at - wrapup.completed_at)
        self._record_handle(wrapup, max(measured, float(wrapup.floor)))

    def _record_handle(self, wrapup: _WrapUp, wrap_time: float) -> None:
        handle = wrapup.talk_time + wrap_time
        self._tally(wrapup.queue).record_handle(handle)
        self._overall.record_handle(handle)

    # -- reconnect ----------------------------------------------------------------

    def rebuild(self) -> None:
        """Line up with the model after ``PbxModel.reset_from_snapshot``.

        Callers the model shows waiting that were already counted stay as they
        are; those who joined while the link was down are counted once now.
        Callers counted as waiting who are no longer in their queue had their
        outcome while the link was down: it cannot be known, so they count as
        *lost*, never as answered or abandoned.
        """
        if self.model.last_pbx_time is not None:
            self.advance(self.model.last_pbx_time)
        waiting = {
            (entry.uniqueid, queue.name): entry
            for queue in self.model.queues.values() for entry in queue.entries
        }
        for uid, offers in self._offers.items():
            for queue, offer in offers.items():
                if offer.outcome == _WAITING and (uid, queue) not in waiting:
                    self._lose(offer)
        for (uid, queue), entry in waiting.items():
            offers = self._offers.setdefault(uid, {})
            offer = offers.get(queue)
            if offer is not None and offer.outcome == _WAITING:
                if offer.joined_at is None:
                    offer.joined_at = entry.joined_at
                continue
            call = next((c for c in self.model.calls.values() if c.caller_uniqueid == uid), None)
            offers[queue] = _Offer(
                queue, uid, call.linkedid if call is not None else uid, entry.joined_at,
                entry.label,
            )
            self._tally(queue).offered += 1
            self._journey_for(uid, entry.joined_at)
        alive = set(self.model.channels) | {uid for uid, _ in waiting}
        for uid in [u for u in self._offers.keys() | self._journeys.keys() if u not in alive]:
            # Her channel is gone: the call ended while the link was down.
            for offer in self._offers.pop(uid, {}).values():
                if offer.outcome == _LEFT:
                    self._overflow(offer)
            self._end_journey(uid, self.now)
        for interface in list(self._wrapups):
            if not self._in_wrapup_pause(interface):
                self._close_wrapup(interface, self.now)
        if self.now is not None:
            for queue in self.model.queues:
                self._observe_waiting(queue, self.now)

    # -- views --------------------------------------------------------------------

    def _local(self, at: float | None) -> str:
        if at is None:
            return ""
        return datetime.fromtimestamp(at, self._zone).isoformat(timespec="seconds")

    def _longest_wait(self, queues: list[str]) -> float:
        if self.now is None:
            return 0.0
        joined = [
            e.joined_at for q in queues for e in self.model.waiting(q) if e.joined_at is not None
        ]
        return max(0.0, self.now - min(joined)) if joined else 0.0

    def _member_state(
        self, interface: str, memberships: list[ev.MemberState], queue: str | None
    ) -> AgentState:
        if self._agent_state is not None:
            state = normalise_agent_state(self._agent_state(interface))
            if state is not None:
                return state
        statuses = {m.status for m in memberships}
        if statuses & _OFFLINE_DEVICE:
            return "offline"
        if any(m.in_call for m in memberships) or statuses & _ON_CALL_DEVICE:
            return "on_call"
        if "ringing" in statuses:
            return "ringing"
        scope = [m for m in memberships if queue is None or m.queue == queue]
        if any(_wrapup_paused(m) or self._in_wrapuptime(m) for m in scope):
            return "wrap_up"
        if any(not m.paused for m in scope):
            return "available"
        return "paused"

    def _in_wrapuptime(self, member: ev.MemberState) -> bool:
        floor = self.config.wrapup_floor(member.queue, member)
        return (
            self.now is not None and floor > 0 and member.last_call > 0
            and self.now < member.last_call + floor
        )

    def _agent_states(self) -> tuple[dict[str, AgentState], dict[str, list[AgentState]]]:
        by_interface: dict[str, list[ev.MemberState]] = {}
        for queue in self.model.queues.values():
            for member in queue.members.values():
                by_interface.setdefault(member.interface, []).append(member)
        overall: dict[str, AgentState] = {}
        per_queue: dict[str, list[AgentState]] = {}
        for interface, memberships in by_interface.items():
            overall[interface] = self._member_state(interface, memberships, None)
            for member in memberships:
                per_queue.setdefault(member.queue, []).append(
                    self._member_state(interface, memberships, member.queue)
                )
        return overall, per_queue

    def snapshot(
        self, now: float | None = None, *, abandoned_limit: int | None = None
    ) -> QueueStatsSnapshot:
        """The wallboard's view as of ``now`` (PBX clock; default: latest seen)."""
        if now is not None:
            self.advance(now)
        overall_states, queue_states = self._agent_states()
        names = sorted(
            set(self.model.queues) | set(self._tallies) | set(self.config.queue_thresholds)
        )
        queues = [
            QueueFigures.build(
                name, self._tally(name),
                waiting=len(self.model.waiting(name)),
                longest_wait=self._longest_wait([name]),
                agents=AgentCounts.of(queue_states.get(name, [])),
                series=self._series_of(name).points(self.now),
            )
            for name in names
        ]
        overall = QueueFigures.build(
            None, self._overall,
            waiting=self._waiting_total(),
            longest_wait=self._longest_wait(names),
            agents=AgentCounts.of(list(overall_states.values())),
            series=self._series_overall.points(self.now),
        )
        agents = [
            AgentDay(interface=a.interface, name=a.name, answered=a.answered,
                     ring_no_answer=a.ring_no_answer, talk_time=a.talk_total)
            for a in sorted(self._agents.values(), key=lambda a: a.interface)
        ]
        return QueueStatsSnapshot(
            node=self.model.node,
            pbx_time=self.now,
            day=self._day.isoformat() if self._day is not None else "",
            time_zone=self.config.time_zone,
            overall=overall,
            queues=queues,
            agents=agents,
            abandoned_calls=self._abandoned.newest(abandoned_limit),
            abandoned_calls_dropped=self._abandoned.dropped,
        )


def _wrapup_paused(member: ev.MemberState) -> bool:
    return member.paused and member.paused_reason.strip().lower() == WRAPUP_REASON
