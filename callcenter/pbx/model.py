"""The backend's live model of one PBX node: channels, queues, members, calls.

The PBX owns this state; the model follows it from typed events and is reset
from QueueStatus / CoreShowChannels after every (re)connect, because events lost
while the link was down can never be replayed. The model keeps no caller number
(see ``callcenter.pbx.events``) and keeps a caller-ID *name* only when
``safe_label`` says it is a token or a fixed label: a carrier's CNAM may be her
real name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from callcenter.ami import Frame

from . import events as ev

#: Names the backend itself puts in CALLERID(name): a vault token (T- caller, W- withheld
#: number) or a fixed label.
DEFAULT_SAFE_LABEL = re.compile(r"^([TW]-[0-9A-Z]{4,16}|1090-[A-Z]+)$")


def default_safe_label(label: str | None) -> str | None:
    return label if label is not None and DEFAULT_SAFE_LABEL.match(label) else None


@dataclass(slots=True)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    state: str
    context: str = ""
    exten: str = ""
    label: str | None = None
    bridge_id: str = ""
    in_async_agi: bool = False
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class QueueEntry:
    """A caller waiting in a queue, at ``position`` (1 = next to be served)."""

    uniqueid: str
    channel: str
    position: int
    joined_at: float | None  # PBX clock
    label: str | None = None
    #: QUEUE_PRIO: events do not carry it, only QueueStatus's QueueEntry does.
    priority: int | None = None


@dataclass(slots=True)
class Queue:
    name: str
    entries: list[QueueEntry] = field(default_factory=list)
    members: dict[str, ev.MemberState] = field(default_factory=dict)
    strategy: str = ""
    weight: int = 0

    def renumber(self) -> None:
        for index, entry in enumerate(self.entries, start=1):
            entry.position = index


@dataclass(slots=True)
class Holding:
    """Who held the call when: one device bridged with the caller, from ``since`` to ``until``.

    A queue answer, a transfer's target, a conference's third party each open one; the
    order of holdings is the order the caller was handed over (PBX clock).
    """

    interface: str  # the device, e.g. PJSIP/agent1
    channel: str
    since: float | None
    until: float | None = None
    #: How her part ended, when the PBX said (a transfer) or the backend announced it (a
    #: conference); None while she holds it or when she simply left (see ``ending``).
    ended: str | None = None

    def ending(self, call_ended_at: float | None) -> str | None:
        """How this leg ended: still open -> None; left with the call -> ``answered``."""
        if self.ended is not None:
            return self.ended
        if self.until is None:
            return None
        # Her leg closed when the caller's did: she held it to the end.
        return "answered" if call_ended_at is not None and self.until >= call_ended_at else (
            "hung-up"
        )


CallPhase = str  # "new" | "ivr" | "queued" | "ringing" | "connected" | "ended"


@dataclass(slots=True)
class LiveCall:
    """One caller's call, keyed by Linkedid, as the PBX's events tell it."""

    linkedid: str
    caller_uniqueid: str
    caller_channel: str
    started_at: float | None
    phase: CallPhase = "new"
    label: str | None = None
    queue: str | None = None
    queued_at: float | None = None
    agent_interface: str | None = None
    agent_channel: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hold_time: int | None = None
    talk_time: int | None = None
    went_through_ivr: bool = False
    abandoned_in: str | None = None  # "queue" | "ivr"
    variables: dict[str, str] = field(default_factory=dict)
    rung: list[str] = field(default_factory=list)
    holders: list[Holding] = field(default_factory=list)
    #: Hold music is playing to her (an agent consults before a warm transfer).
    on_hold: bool = False

    #: Endings announced before the PBX moves a holder (by channel name), e.g. a
    #: conference started by dual Redirect, which no transfer event describes.
    leaving: dict[str, str] = field(default_factory=dict)
    #: Agents' channels moved into a conference room: still talking after app_queue
    #: ends her queue leg (AgentComplete), until her own channel hangs up.
    conferenced: set[str] = field(default_factory=set)

    def holder(self) -> Holding | None:
        """The device holding her now (the latest one still bridged)."""
        return next((h for h in reversed(self.holders) if h.until is None), None)

    def holding_of(self, channel: str) -> Holding | None:
        """The latest holding of ``channel`` (open, or closed with no ending yet)."""
        return next((h for h in reversed(self.holders) if h.channel == channel), None)


CallListener = Callable[[LiveCall], None]


class PbxModel:
    """Live state of one PBX node, built only from what the PBX reports."""

    def __init__(
        self,
        node: str,
        *,
        safe_label: Callable[[str | None], str | None] = default_safe_label,
    ) -> None:
        self.node = node
        self._safe_label = safe_label
        self.channels: dict[str, Channel] = {}
        self.queues: dict[str, Queue] = {}
        self.calls: dict[str, LiveCall] = {}
        self.last_pbx_time: float | None = None
        self._on_call_ended: list[CallListener] = []

    # -- listeners ------------------------------------------------------------

    def on_call_ended(self, listener: CallListener) -> None:
        """Called once per call when its caller's channel hangs up."""
        self._on_call_ended.append(listener)

    # -- events ---------------------------------------------------------------

    def apply(self, event: ev.PbxEvent) -> None:
        if event.timestamp is not None:
            self.last_pbx_time = event.timestamp
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
        return queue

    def _channel_created(self, event: ev.ChannelCreated) -> None:
        ref = event.channel
        self.channels[ref.uniqueid] = Channel(
            ref.name, ref.uniqueid, ref.linkedid, ref.state, ref.context, ref.exten,
            self._safe_label(ref.caller_name),
        )
        if ref.uniqueid == ref.linkedid and ref.linkedid not in self.calls:
            # The channel that starts a Linkedid is the caller's (or the first
            # half of an originated callback).
            self.calls[ref.linkedid] = LiveCall(
                ref.linkedid, ref.uniqueid, ref.name, event.timestamp,
                label=self._safe_label(ref.caller_name),
            )

    def _touch_channel(self, ref: ev.ChannelRef) -> Channel:
        channel = self.channels.get(ref.uniqueid)
        if channel is None:
            # Joined mid-call (after a reconnect): learn it from any event.
            channel = self.channels[ref.uniqueid] = Channel(
                ref.name, ref.uniqueid, ref.linkedid, ref.state, ref.context, ref.exten
            )
        channel.state = ref.state
        label = self._safe_label(ref.caller_name)
        if label is not None:
            channel.label = label
        return channel

    def _state_changed(self, event: ev.ChannelStateChanged) -> None:
        self._touch_channel(event.channel)

    def _label_changed(self, event: ev.CallerLabelChanged) -> None:
        channel = self._touch_channel(event.channel)
        call = self.calls.get(channel.linkedid)
        if call is not None and call.caller_uniqueid == channel.uniqueid and channel.label:
            call.label = channel.label

    def _hung_up(self, event: ev.ChannelHungUp) -> None:
        ref = event.channel
        self.channels.pop(ref.uniqueid, None)
        for queue in self.queues.values():
            before = len(queue.entries)
            queue.entries = [e for e in queue.entries if e.uniqueid != ref.uniqueid]
            if len(queue.entries) != before:
                queue.renumber()
        call = self.calls.get(ref.linkedid)
        if call is None or call.caller_uniqueid != ref.uniqueid:
            return
        del self.calls[ref.linkedid]
        call.ended_at = event.timestamp
        # She hung up before the IVR routed her. Asterisk sends AsyncAGIEnd
        # before Hangup, so "still in AsyncAGI" cannot be the test; the routing
        # variable the IVR writes (WPL_QUEUE) and a queue join can.
        routed = "WPL_QUEUE" in call.variables or call.queue is not None
        if call.went_through_ivr and not routed:
            call.abandoned_in = call.abandoned_in or "ivr"
        call.phase = "ended"
        for listener in self._on_call_ended:
            listener(call)

    def _bridge_entered(self, event: ev.BridgeEntered) -> None:
        self._touch_channel(event.channel).bridge_id = event.bridge_id
        self._follow_holders(event.bridge_id, event.timestamp)

    def _bridge_left(self, event: ev.BridgeLeft) -> None:
        channel = self.channels.get(event.channel.uniqueid)
        if channel is not None and channel.bridge_id == event.bridge_id:
            channel.bridge_id = ""
        self._follow_holders(event.bridge_id, event.timestamp)
        call = self.calls.get(event.channel.linkedid)
        if call is not None and call.caller_uniqueid == event.channel.uniqueid:
            # Her side moved on (hung up, or sent on): each holder kept her to the end.
            self._close_holdings(call, set(), event.timestamp, default="answered")

    def _follow_holders(self, bridge_id: str, at: float | None) -> None:
        """Re-read who is bridged with each caller in ``bridge_id``'s reach.

        Bridges are the one truth every hand-over shares (queue answer, blind or attended
        transfer, merge, three-way), so holdings follow bridge membership rather than
        each transfer event's own shape. A Local channel pair joins two bridges (an
        attended transfer's target, a conference's third party dialled through
        ``Local/...``): whoever is bridged with the far half holds the call too, until
        Asterisk optimises the pair away and bridges her directly (Local optimisation is
        on by default; with ``/n`` or in the simulator the pair stays).
        """
        if not bridge_id:
            return
        # One pass over the channels per bridge event, shared by every lookup below.
        by_bridge: dict[str, list[Channel]] = {}
        by_name: dict[str, Channel] = {}
        for channel in self.channels.values():
            by_name[channel.name] = channel
            if channel.bridge_id:
                by_bridge.setdefault(channel.bridge_id, []).append(channel)
        for members in _reach(bridge_id, by_bridge, by_name):
            for caller in members:
                call = self.calls.get(caller.linkedid)
                if call is None or call.caller_uniqueid != caller.uniqueid:
                    continue
                others = {
                    c.uniqueid: c
                    for group in _reach(caller.bridge_id, by_bridge, by_name)
                    for c in group
                    if c is not caller and not c.name.startswith("Local/")
                }
                self._close_holdings(call, set(others), at)
                held = {h.channel for h in call.holders if h.until is None}
                for other in others.values():
                    if other.name in held:
                        continue
                    last = call.holders[-1] if call.holders else None
                    if (last is not None and last.channel == other.name
                            and last.ended is None and last.until is not None):
                        # Back from a consult she cancelled (or a hold): still her leg.
                        last.until = None
                        continue
                    call.holders.append(Holding(other.name.rpartition("-")[0], other.name, at))

    def _close_holdings(
        self, call: LiveCall, keep: set[str], at: float | None, *, default: str | None = None
    ) -> None:
        names = {self.channels[u].name for u in keep if u in self.channels}
        for holding in call.holders:
            if holding.until is None and holding.channel not in names:
                holding.until = at if at is not None else holding.since
                holding.ended = (
                    holding.ended or call.leaving.pop(holding.channel, None) or default
                )

    def announce_leaving(self, linkedid: str, channel: str, how: str) -> None:
        """The backend is about to move ``channel`` off her call (e.g. into a conference):
        its holding, when it closes, ended ``how``."""
        call = self.calls.get(linkedid)
        if call is not None:
            call.leaving[channel] = how
            if how == "conference":
                call.conferenced.add(channel)

    def _transferred(self, call: LiveCall | None, channels: Iterable[str], how: str) -> None:
        if call is None:
            return
        for name in channels:
            holding = call.holding_of(name)
            if holding is not None and holding.ended is None:
                holding.ended = how
            elif holding is None:
                # The transfer event came before her leg left the bridge: say it then.
                call.leaving[name] = how

    def _blind_transferred(self, event: ev.BlindTransferred) -> None:
        if event.succeeded:
            self._transferred(
                self.calls.get(event.transferee.linkedid), [event.transferer.name],
                "transferred-blind",
            )

    def _attended_transferred(self, event: ev.AttendedTransferred) -> None:
        if not event.succeeded or event.dest_type == "Threeway":
            return  # a three-way keeps the agent on the call
        refs = [event.transferee, event.orig_transferer, event.second_transferer]
        call = next(
            (self.calls[r.linkedid] for r in refs if r is not None and r.linkedid in self.calls),
            None,
        )
        self._transferred(
            call, [event.orig_transferer.name, event.second_transferer.name],
            "transferred-warm",
        )

    def _hold_music(self, event: ev.HoldMusicStarted | ev.HoldMusicStopped) -> None:
        call = self.calls.get(event.channel.linkedid)
        if call is not None and call.caller_uniqueid == event.channel.uniqueid:
            call.on_hold = isinstance(event, ev.HoldMusicStarted)

    def _variable_set(self, event: ev.VariableSet) -> None:
        channel = self._touch_channel(event.channel)
        channel.variables[event.variable] = event.value
        call = self.calls.get(channel.linkedid)
        if call is not None and call.caller_uniqueid == channel.uniqueid:
            call.variables[event.variable] = event.value

    def _agi_started(self, event: ev.AsyncAGIStarted) -> None:
        channel = self._touch_channel(event.channel)
        channel.in_async_agi = True
        call = self.calls.get(channel.linkedid)
        if call is not None and call.caller_uniqueid == channel.uniqueid:
            call.phase = "ivr"
            call.went_through_ivr = True

    def _agi_ended(self, event: ev.AsyncAGIEnded) -> None:
        channel = self._touch_channel(event.channel)
        channel.in_async_agi = False
        call = self.calls.get(channel.linkedid)
        if call is not None and call.phase == "ivr":
            call.phase = "new"

    def _caller_joined(self, event: ev.CallerJoinedQueue) -> None:
        ref = event.caller
        self._touch_channel(ref)
        queue = self._queue(event.queue)
        queue.entries = [e for e in queue.entries if e.uniqueid != ref.uniqueid]
        index = max(0, min(event.position - 1, len(queue.entries)))
        queue.entries.insert(
            index,
            QueueEntry(ref.uniqueid, ref.name, event.position, event.timestamp,
                       self._safe_label(ref.caller_name)),
        )
        queue.renumber()
        call = self.calls.get(ref.linkedid)
        if call is not None and call.caller_uniqueid == ref.uniqueid:
            call.phase = "queued"
            call.queue = event.queue
            call.queued_at = event.timestamp

    def _caller_left(self, event: ev.CallerLeftQueue) -> None:
        queue = self._queue(event.queue)
        queue.entries = [e for e in queue.entries if e.uniqueid != event.caller.uniqueid]
        queue.renumber()

    def _caller_abandoned(self, event: ev.CallerAbandoned) -> None:
        call = self.calls.get(event.caller.linkedid)
        if call is not None and call.caller_uniqueid == event.caller.uniqueid:
            call.abandoned_in = "queue"
            call.hold_time = event.hold_time

    def _call_for_agent_event(self, event: ev.AgentEvent) -> LiveCall | None:
        call = self.calls.get(event.caller.linkedid)
        if call is None or call.caller_uniqueid != event.caller.uniqueid:
            return None
        return call

    def _agent_called(self, event: ev.AgentCalled) -> None:
        self._touch_channel(event.agent_channel)
        call = self._call_for_agent_event(event)
        if call is not None:
            call.phase = "ringing"
            call.rung.append(event.interface)

    def _agent_no_answer(self, event: ev.AgentRingNoAnswer) -> None:
        call = self._call_for_agent_event(event)
        if call is not None and call.phase == "ringing":
            call.phase = "queued"

    def _agent_connected(self, event: ev.AgentConnected) -> None:
        call = self._call_for_agent_event(event)
        if call is not None:
            call.phase = "connected"
            call.agent_interface = event.interface
            call.agent_channel = event.agent_channel.name
            call.answered_at = event.timestamp
            call.hold_time = event.hold_time

    def _agent_completed(self, event: ev.AgentCompleted) -> None:
        call = self._call_for_agent_event(event)
        if call is not None:
            call.talk_time = event.talk_time

    def _member_changed(self, event: ev.MemberChanged) -> None:
        member = event.member
        queue = self._queue(member.queue)
        if event.change == "removed":
            queue.members.pop(member.interface, None)
        else:
            queue.members[member.interface] = member

    _handlers: dict[type, Callable[[PbxModel, ev.PbxEvent], None]] = {
        ev.ChannelCreated: _channel_created,
        ev.ChannelStateChanged: _state_changed,
        ev.CallerLabelChanged: _label_changed,
        ev.ChannelHungUp: _hung_up,
        ev.BridgeEntered: _bridge_entered,
        ev.BridgeLeft: _bridge_left,
        ev.VariableSet: _variable_set,
        ev.AsyncAGIStarted: _agi_started,
        ev.AsyncAGIEnded: _agi_ended,
        ev.CallerJoinedQueue: _caller_joined,
        ev.CallerLeftQueue: _caller_left,
        ev.CallerAbandoned: _caller_abandoned,
        ev.AgentCalled: _agent_called,
        ev.AgentRingNoAnswer: _agent_no_answer,
        ev.AgentConnected: _agent_connected,
        ev.AgentCompleted: _agent_completed,
        ev.MemberChanged: _member_changed,
        ev.HoldMusicStarted: _hold_music,
        ev.HoldMusicStopped: _hold_music,
        ev.BlindTransferred: _blind_transferred,
        ev.AttendedTransferred: _attended_transferred,
    }  # type: ignore[dict-item]

    # -- reconciliation ---------------------------------------------------------

    def reset_from_snapshot(
        self,
        queue_status: Iterable[Frame],
        core_show_channels: Iterable[Frame],
    ) -> list[LiveCall]:
        """Replace the model with the PBX's truth after a (re)connect.

        Returns the calls that were live before and are gone now: they ended
        while the link was down and still need their ending recorded.
        """
        channels: dict[str, Channel] = {}
        for frame in core_show_channels:
            if frame.name != "CoreShowChannel":
                continue
            ref = ev.ChannelRef.from_frame(frame)
            old = self.channels.get(ref.uniqueid)
            channels[ref.uniqueid] = Channel(
                ref.name, ref.uniqueid, ref.linkedid, ref.state, ref.context, ref.exten,
                self._safe_label(ref.caller_name),
                bridge_id=frame.get("BridgeId") or "",
                in_async_agi=(frame.get("Application") or "") == "AGI",
                variables=dict(old.variables) if old is not None else {},
            )
        queues: dict[str, Queue] = {}
        for frame in queue_status:
            name = frame.get("Queue") or ""
            if frame.name == "QueueParams":
                queue = queues.setdefault(name, Queue(name))
                queue.strategy = frame.get("Strategy") or ""
                queue.weight = int(frame.get("Weight") or 0)
            elif frame.name == "QueueMember":
                member = ev.MemberState.from_frame(frame)
                queue = queues.setdefault(name, Queue(name))
                old_member = self.queues.get(name, Queue(name)).members.get(member.interface)
                if old_member is not None:
                    # QueueStatus omits Ringinuse; keep what the events said.
                    member = replace(member, ringinuse=old_member.ringinuse)
                queue.members[member.interface] = member
            elif frame.name == "QueueEntry":
                queue = queues.setdefault(name, Queue(name))
                wait = int(frame.get("Wait") or 0)
                joined = None if self.last_pbx_time is None else self.last_pbx_time - wait
                queue.entries.append(
                    QueueEntry(
                        frame.get("Uniqueid") or "", frame.get("Channel") or "",
                        int(frame.get("Position") or 0), joined,
                        self._safe_label(frame.get("CallerIDName")),
                        int(frame.get("Priority") or 0),
                    )
                )
        for queue in queues.values():
            queue.entries.sort(key=lambda e: e.position)
        ended = [
            call for linkedid, call in self.calls.items()
            if call.caller_uniqueid not in channels
        ]
        for call in ended:
            del self.calls[call.linkedid]
            call.phase = "ended"
        # Rebuild live calls for channels we did not know (e.g. after a restart).
        for channel in channels.values():
            if channel.uniqueid == channel.linkedid and channel.linkedid not in self.calls:
                self.calls[channel.linkedid] = LiveCall(
                    channel.linkedid, channel.uniqueid, channel.name, None,
                    phase="ivr" if channel.in_async_agi else "new", label=channel.label,
                )
        for queue in queues.values():
            for entry in queue.entries:
                call = next(
                    (c for c in self.calls.values() if c.caller_uniqueid == entry.uniqueid), None
                )
                if call is not None and call.phase in ("new", "ivr"):
                    call.phase, call.queue = "queued", queue.name
        self._infer_agents(channels, queues)
        self.channels = channels
        self.queues = queues
        return ended

    def _infer_agents(self, channels: dict[str, Channel], queues: dict[str, Queue]) -> None:
        """After a snapshot, who is talking to whom: a caller bridged with a queue
        member's channel is connected to that member (events that said so were
        missed while the link was down, e.g. during a takeover)."""
        interfaces = {i for q in queues.values() for i in q.members}
        by_bridge: dict[str, list[Channel]] = {}
        for channel in channels.values():
            if channel.bridge_id:
                by_bridge.setdefault(channel.bridge_id, []).append(channel)
        for call in self.calls.values():
            caller = channels.get(call.caller_uniqueid)
            if caller is None or not caller.bridge_id or call.agent_interface:
                continue
            for other in by_bridge.get(caller.bridge_id, []):
                interface = other.name.rsplit("-", 1)[0]
                if other is not caller and interface in interfaces:
                    call.agent_interface = interface
                    call.agent_channel = other.name
                    call.phase = "connected"
                    break

    # -- views ------------------------------------------------------------------

    def member(self, queue: str, interface: str) -> ev.MemberState | None:
        q = self.queues.get(queue)
        return None if q is None else q.members.get(interface)

    def members_of(self, interface: str) -> list[ev.MemberState]:
        return [q.members[interface] for q in self.queues.values() if interface in q.members]

    def waiting(self, queue: str) -> list[QueueEntry]:
        q = self.queues.get(queue)
        return [] if q is None else list(q.entries)


def _reach(
    bridge_id: str, by_bridge: Mapping[str, list[Channel]], by_name: Mapping[str, Channel]
) -> list[list[Channel]]:
    """Members of ``bridge_id`` and of every bridge joined to it by Local pairs (the far
    half of ``Local/x@ctx-0001;1`` is ``;2``, and the reverse)."""
    seen: set[str] = set()
    todo = [bridge_id]
    found: list[list[Channel]] = []
    while todo:
        current = todo.pop()
        if current in seen or not current:
            continue
        seen.add(current)
        members = by_bridge.get(current, [])
        found.append(members)
        for member in members:
            if member.name.startswith("Local/"):
                base, _, half = member.name.rpartition(";")
                partner = by_name.get(f"{base};{'2' if half == '1' else '1'}")
                if partner is not None and partner.bridge_id:
                    todo.append(partner.bridge_id)
    return found
