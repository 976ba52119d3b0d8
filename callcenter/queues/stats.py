"""Counters, definitions and the JSON shape of the live queue statistics.

Nothing here sees an event or a clock: :mod:`callcenter.queues.service` feeds it
waits measured on the PBX's clock and decides what counts as which outcome. This
module owns the arithmetic and, in its docstrings, the *definitions* a supervisor
reads the wallboard by.

Definitions (per queue; "overall" applies the same ones to a caller's whole way
through the queues, see :class:`callcenter.queues.service.QueueStatsService`):

offered
    a caller joined the queue (QueueCallerJoin). Callers still waiting when the day
    rolls over at local midnight are offered again in the new day, so that every
    outcome counted today belongs to a call offered today.
answered
    an agent was connected (AgentConnect). Her *wait* is app_queue's ``HoldTime``:
    whole seconds from joining to being connected.
abandoned
    the caller hung up while waiting (QueueCallerAbandon); wait = its ``HoldTime``.
overflowed
    the caller left the queue without an agent and without hanging up there
    (QueueCallerLeave with no AgentConnect and no QueueCallerAbandon): Queue()'s
    timeout, ``leavewhenempty``, an exit key. The 1090 dialplan then sends her on
    to the duty officers or the fallback queue.
lost
    the outcome happened while the AMI link was down, so it is not known; such
    calls count in *offered* and in no rate.
service level
    ``answered within T / (answered + abandoned after T + overflowed)``, with T
    the queue's threshold (20 s by default) and "within" meaning ``wait <= T``,
    as app_queue's own ``servicelevel`` counts (``callscompletedinsl``).
    Abandons at or below T ("short abandons": she hung up before anyone could
    reasonably have answered) are left out, as is usual for contact centres. A call
    the queue gave up on (overflowed) always counts against the level, however
    short its wait: the centre, not the caller, ended that wait. Callers still
    waiting count nowhere until their wait ends. ``None`` when nothing counts yet.
abandon rate
    ``abandoned / (answered + abandoned + overflowed)``: the share of ended waits
    in which she hung up; short abandons included.
average speed of answer (ASA)
    mean wait of answered calls.
average talk time
    mean ``TalkTime`` of AgentComplete.
average handle time (AHT)
    mean of talk time + wrap-up time over calls whose wrap-up is over. Wrap-up
    runs from AgentComplete until the agent is no longer paused with reason
    ``wrapup`` in any queue, and is never shorter than app_queue's ``wrapuptime``
    (the floor the PBX itself enforces); without a ``wrapup`` pause it is that floor.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

AgentState = Literal["available", "ringing", "on_call", "wrap_up", "paused", "offline"]
AGENT_STATES: tuple[AgentState, ...] = (
    "available", "ringing", "on_call", "wrap_up", "paused", "offline",
)

# Spellings the agents package (or a person configuring it) may use for the same state.
_STATE_ALIASES: dict[str, AgentState] = {
    "available": "available", "idle": "available", "ready": "available",
    "ringing": "ringing",
    "on_call": "on_call", "on call": "on_call", "on-call": "on_call", "oncall": "on_call",
    "in_call": "on_call", "busy": "on_call",
    "wrap_up": "wrap_up", "wrap-up": "wrap_up", "wrapup": "wrap_up", "wrap up": "wrap_up",
    "paused": "paused", "break": "paused",
    "offline": "offline", "unavailable": "offline", "logged_out": "offline",
    "logged out": "offline",
}


def normalise_agent_state(state: str | None) -> AgentState | None:
    """The wallboard's name for ``state``, or None when it is not one we know."""
    if state is None:
        return None
    return _STATE_ALIASES.get(state.strip().lower())


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


@dataclass(slots=True)
class DayTally:
    """One day's outcomes for one queue, or for all of them ("overall")."""

    threshold: int
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    overflowed: int = 0
    lost: int = 0
    wait_answered_total: float = 0.0
    longest_answered_wait: float = 0.0
    talk_total: float = 0.0
    talk_count: int = 0
    handle_total: float = 0.0
    handle_count: int = 0
    #: AgentRingNoAnswer per member interface.
    ring_no_answer: dict[str, int] = field(default_factory=dict)

    def within(self, wait: float | None) -> bool:
        return wait is not None and wait <= self.threshold

    def record_answer(self, wait: float | None) -> bool:
        """Count an answered call; True when it met the service level."""
        self.answered += 1
        good = self.within(wait)
        if good:
            self.answered_within += 1
        if wait is not None:
            self.wait_answered_total += wait
            self.longest_answered_wait = max(self.longest_answered_wait, wait)
        return good

    def record_abandon(self, wait: float | None) -> bool:
        """Count an abandon; True when it counts in the service level (after T)."""
        self.abandoned += 1
        if self.within(wait):
            self.short_abandoned += 1
            return False
        return True

    def record_overflow(self) -> None:
        self.overflowed += 1

    def record_talk(self, talk_time: float) -> None:
        self.talk_total += talk_time
        self.talk_count += 1

    def record_handle(self, handle_time: float) -> None:
        self.handle_total += handle_time
        self.handle_count += 1

    def record_ring_no_answer(self, interface: str) -> None:
        self.ring_no_answer[interface] = self.ring_no_answer.get(interface, 0) + 1

    # -- definitions (see the module docstring) ----------------------------------

    @property
    def service_level_calls(self) -> int:
        return self.answered + (self.abandoned - self.short_abandoned) + self.overflowed

    @property
    def service_level(self) -> float | None:
        return _ratio(self.answered_within, self.service_level_calls)

    @property
    def abandon_rate(self) -> float | None:
        return _ratio(self.abandoned, self.answered + self.abandoned + self.overflowed)

    @property
    def average_speed_of_answer(self) -> float | None:
        return _ratio(self.wait_answered_total, self.answered)

    @property
    def average_talk_time(self) -> float | None:
        return _ratio(self.talk_total, self.talk_count)

    @property
    def average_handle_time(self) -> float | None:
        return _ratio(self.handle_total, self.handle_count)


@dataclass(slots=True)
class AgentTally:
    """One agent's day, keyed by her member interface (never a phone number)."""

    interface: str
    name: str = ""
    answered: int = 0
    ring_no_answer: int = 0
    talk_total: float = 0.0


# -- per-minute series ---------------------------------------------------------


@dataclass(slots=True)
class _Minute:
    waiting_max: int
    waiting_end: int
    sl_met: int = 0
    sl_calls: int = 0
    sl_today: float | None = None


class MinuteSeries:
    """Per-minute points for the wallboard chart, kept for the last ``minutes``.

    A minute in which nothing happened repeats the state at the end of the
    minute before it: the chart shows a flat line, not a gap, through a quiet
    night.
    """

    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self._buckets: dict[int, _Minute] = {}
        self._waiting = 0
        self._sl_today: float | None = None

    def _bucket(self, at: float) -> _Minute:
        minute = int(at // 60)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = _Minute(
                self._waiting, self._waiting, sl_today=self._sl_today
            )
            oldest = minute - self.minutes
            for stale in [m for m in self._buckets if m <= oldest]:
                del self._buckets[stale]
        return bucket

    def observe_waiting(self, at: float, waiting: int) -> None:
        bucket = self._bucket(at)
        bucket.waiting_max = max(bucket.waiting_max, waiting)
        bucket.waiting_end = waiting
        self._waiting = waiting

    def observe_outcome(self, at: float, counts: bool, met: bool, sl_today: float | None) -> None:
        """A wait ended at ``at``; ``counts``: it is in the service level's denominator."""
        bucket = self._bucket(at)
        if counts:
            bucket.sl_calls += 1
            bucket.sl_met += int(met)
        bucket.sl_today = self._sl_today = sl_today

    def day_rolled(self, at: float) -> None:
        self._bucket(at).sl_today = self._sl_today = None

    def points(self, now: float | None) -> list[MinutePoint]:
        if now is None:
            return []
        last = int(now // 60)
        first = last - self.minutes + 1
        # What a quiet minute repeats: the latest bucket before the window.
        before = [m for m in self._buckets if m < first]
        carry = self._buckets[max(before)] if before else None
        waiting = carry.waiting_end if carry else 0
        sl_today = carry.sl_today if carry else None
        points: list[MinutePoint] = []
        for minute in range(first, last + 1):
            bucket = self._buckets.get(minute)
            if bucket is None:
                points.append(MinutePoint(
                    minute=minute * 60, waiting_max=waiting, calls=0,
                    service_level=None, service_level_today=sl_today,
                ))
                continue
            waiting, sl_today = bucket.waiting_end, bucket.sl_today
            points.append(MinutePoint(
                minute=minute * 60, waiting_max=bucket.waiting_max, calls=bucket.sl_calls,
                service_level=_ratio(bucket.sl_met, bucket.sl_calls),
                service_level_today=sl_today,
            ))
        return points


# -- what the web layer gets (stable field names) -------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AgentCounts(_Out):
    """Agents by state. An agent counts once, whatever number of queues she is in."""

    available: int = 0
    ringing: int = 0
    on_call: int = 0
    wrap_up: int = 0
    paused: int = 0
    offline: int = 0

    @classmethod
    def of(cls, states: list[AgentState]) -> AgentCounts:
        counts = dict.fromkeys(AGENT_STATES, 0)
        for state in states:
            counts[state] += 1
        return cls(**counts)


class MinutePoint(_Out):
    """One minute of the chart. ``minute``: its start, epoch seconds on the PBX's clock."""

    minute: int
    waiting_max: int
    #: waits that ended in this minute and count in the service level.
    calls: int
    #: service level of those calls alone (None when there were none).
    service_level: float | None
    #: the day's service level as it stood at the end of this minute.
    service_level_today: float | None


class QueueFigures(_Out):
    """Live and today's figures of one queue (``queue`` = its name) or overall (None)."""

    queue: str | None
    waiting: int
    longest_wait: float
    agents: AgentCounts
    offered: int
    answered: int
    abandoned: int
    overflowed: int
    lost: int
    service_level_threshold: int
    answered_within_threshold: int
    short_abandoned: int
    service_level: float | None
    abandon_rate: float | None
    average_speed_of_answer: float | None
    longest_answered_wait: float
    average_talk_time: float | None
    average_handle_time: float | None
    ring_no_answer: dict[str, int]
    series: list[MinutePoint]

    @classmethod
    def build(
        cls,
        queue: str | None,
        tally: DayTally,
        *,
        waiting: int,
        longest_wait: float,
        agents: AgentCounts,
        series: list[MinutePoint],
    ) -> QueueFigures:
        return cls(
            queue=queue,
            waiting=waiting,
            longest_wait=longest_wait,
            agents=agents,
            offered=tally.offered,
            answered=tally.answered,
            abandoned=tally.abandoned,
            overflowed=tally.overflowed,
            lost=tally.lost,
            service_level_threshold=tally.threshold,
            answered_within_threshold=tally.answered_within,
            short_abandoned=tally.short_abandoned,
            service_level=tally.service_level,
            abandon_rate=tally.abandon_rate,
            average_speed_of_answer=tally.average_speed_of_answer,
            longest_answered_wait=tally.longest_answered_wait,
            average_talk_time=tally.average_talk_time,
            average_handle_time=tally.average_handle_time,
            ring_no_answer=dict(sorted(tally.ring_no_answer.items())),
            series=series,
        )


class AbandonedCall(_Out):
    """A caller who hung up while waiting: who to call back.

    ``caller`` is her vault token or the dialplan's fixed label, or "unknown"
    when the call carried neither (never a number, never a carrier's name).
    """

    caller: str
    call_id: str
    queue: str
    wait: int
    position: int
    original_position: int
    at: float
    at_local: str


class AgentDay(_Out):
    interface: str
    name: str
    answered: int
    ring_no_answer: int
    talk_time: float


class QueueStatsSnapshot(_Out):
    """Everything the wallboard shows, JSON-ready (``model_dump(mode="json")``)."""

    node: str
    #: the latest PBX time seen (epoch seconds); every figure is as of then.
    pbx_time: float | None
    day: str
    time_zone: str
    overall: QueueFigures
    queues: list[QueueFigures]
    agents: list[AgentDay]
    #: newest first, today's only.
    abandoned_calls: list[AbandonedCall]
    abandoned_calls_dropped: int


class AbandonedLog:
    """Today's abandons, newest first, bounded so a flood cannot exhaust memory."""

    def __init__(self, limit: int) -> None:
        self._calls: deque[AbandonedCall] = deque(maxlen=limit)
        self.dropped = 0

    def add(self, call: AbandonedCall) -> None:
        if len(self._calls) == self._calls.maxlen:
            self.dropped += 1
        self._calls.appendleft(call)

    def clear(self) -> None:
        self._calls.clear()
        self.dropped = 0

    def newest(self, limit: int | None = None) -> list[AbandonedCall]:
        if limit is None:
            return list(self._calls)
        return [call for _, call in zip(range(limit), self._calls, strict=False)]

    def __len__(self) -> int:
        return len(self._calls)
