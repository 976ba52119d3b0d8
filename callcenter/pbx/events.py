"""Typed PBX events, built from AMI frames.

Domain code sees these instead of raw frames. They deliberately carry *no*
caller number: ``CallerIDNum``, ``ConnectedLineNum``, ``DialString`` and the
AsyncAGI ``Env`` are left in the frame (in memory only) and never copied here,
so nothing built on these types can store or log a number by accident. The IVR,
the one place that needs the number, reads it from the AsyncAGIStart frame and
hands it straight to the vault.

Header shapes follow Asterisk 22 as recorded in tests/fixtures/asterisk and as
documented in app_queue.c / manager.c. Times: ``Timestamp:`` is the PBX's clock
(``timestampevents=yes``); the backend never mixes it with its own clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from callcenter.ami import Frame

#: Asterisk's ``ChannelState`` numbers (channelstate.h).
CHANNEL_STATES = {
    "0": "down", "1": "reserved", "2": "offhook", "3": "dialing", "4": "ring",
    "5": "ringing", "6": "up", "7": "busy", "8": "dialing_offhook", "9": "prering",
}

#: QueueMember ``Status`` = AST_DEVICE_* (devicestate.h).
DEVICE_STATES = {
    "0": "unknown", "1": "not_inuse", "2": "inuse", "3": "busy", "4": "invalid",
    "5": "unavailable", "6": "ringing", "7": "ringinuse", "8": "onhold",
}


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _label(value: str | None) -> str | None:
    """A caller-ID *name* kept only when it is set (``<unknown>`` means unset)."""
    if not value or value == "<unknown>":
        return None
    return value


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A channel as named in an event: identity and dialplan position, no numbers."""

    name: str
    uniqueid: str
    linkedid: str
    state: str
    context: str = ""
    exten: str = ""
    #: CallerIDName: the caller's token or the fallback label once the IVR or
    #: the dialplan replaced it; before that it may be the carrier's name, which
    #: the model does not keep for callers (see PbxModel).
    caller_name: str | None = None

    @classmethod
    def from_frame(cls, frame: Frame, prefix: str = "") -> ChannelRef:
        get = frame.get
        return cls(
            name=get(prefix + "Channel") or "",
            uniqueid=get(prefix + "Uniqueid") or "",
            linkedid=get(prefix + "Linkedid") or get(prefix + "Uniqueid") or "",
            state=CHANNEL_STATES.get(get(prefix + "ChannelState") or "", "unknown"),
            context=get(prefix + "Context") or "",
            exten=get(prefix + "Exten") or "",
            caller_name=_label(get(prefix + "CallerIDName")),
        )


@dataclass(frozen=True, slots=True)
class PbxEvent:
    """Base of every typed event: which PBX node sent it, and when (PBX clock)."""

    node: str
    timestamp: float | None

    #: AMI event name(s) this class is built from.
    ami_events: ClassVar[tuple[str, ...]] = ()


# -- channels ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelCreated(PbxEvent):
    channel: ChannelRef

    ami_events = ("Newchannel",)


@dataclass(frozen=True, slots=True)
class ChannelStateChanged(PbxEvent):
    channel: ChannelRef

    ami_events = ("Newstate",)


@dataclass(frozen=True, slots=True)
class ChannelHungUp(PbxEvent):
    channel: ChannelRef
    cause: int
    cause_text: str

    ami_events = ("Hangup",)


@dataclass(frozen=True, slots=True)
class CallerLabelChanged(PbxEvent):
    """NewCallerid: the name the rest of the system shows (token or label)."""

    channel: ChannelRef

    ami_events = ("NewCallerid",)


@dataclass(frozen=True, slots=True)
class BridgeEntered(PbxEvent):
    channel: ChannelRef
    bridge_id: str

    ami_events = ("BridgeEnter",)


@dataclass(frozen=True, slots=True)
class BridgeLeft(PbxEvent):
    channel: ChannelRef
    bridge_id: str

    ami_events = ("BridgeLeave",)


@dataclass(frozen=True, slots=True)
class VariableSet(PbxEvent):
    """VarSet of a variable the backend owns (``WPL_*``, ``QUEUE_PRIO``)."""

    channel: ChannelRef
    variable: str
    value: str

    ami_events = ("VarSet",)


# -- AsyncAGI ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AsyncAGIStarted(PbxEvent):
    channel: ChannelRef

    ami_events = ("AsyncAGIStart",)


@dataclass(frozen=True, slots=True)
class AsyncAGIEnded(PbxEvent):
    channel: ChannelRef

    ami_events = ("AsyncAGIEnd",)


# -- queues --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerJoinedQueue(PbxEvent):
    caller: ChannelRef
    queue: str
    position: int
    count: int

    ami_events = ("QueueCallerJoin",)


@dataclass(frozen=True, slots=True)
class CallerLeftQueue(PbxEvent):
    caller: ChannelRef
    queue: str
    position: int
    count: int

    ami_events = ("QueueCallerLeave",)


@dataclass(frozen=True, slots=True)
class CallerAbandoned(PbxEvent):
    caller: ChannelRef
    queue: str
    position: int
    original_position: int
    hold_time: int  # seconds

    ami_events = ("QueueCallerAbandon",)


@dataclass(frozen=True, slots=True)
class AgentEvent(PbxEvent):
    """The app_queue events about one caller and one member's channel."""

    caller: ChannelRef
    agent_channel: ChannelRef
    queue: str
    interface: str
    member_name: str


@dataclass(frozen=True, slots=True)
class AgentCalled(AgentEvent):
    ami_events = ("AgentCalled",)


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer(AgentEvent):
    ring_time_ms: int = 0  # app_queue reports this one in milliseconds

    ami_events = ("AgentRingNoAnswer",)


@dataclass(frozen=True, slots=True)
class AgentConnected(AgentEvent):
    hold_time: int = 0  # seconds
    ring_time: int = 0  # seconds

    ami_events = ("AgentConnect",)


@dataclass(frozen=True, slots=True)
class AgentCompleted(AgentEvent):
    hold_time: int = 0
    talk_time: int = 0
    reason: str = ""  # caller | agent | transfer

    ami_events = ("AgentComplete",)


@dataclass(frozen=True, slots=True)
class MemberState:
    """One queue member as QueueMember* events and QueueStatus describe her."""

    queue: str
    interface: str
    name: str
    state_interface: str
    membership: str  # static | dynamic | realtime
    penalty: int
    calls_taken: int
    last_call: int
    last_pause: int
    login_time: int
    in_call: bool
    status: str  # DEVICE_STATES value
    paused: bool
    paused_reason: str
    ringinuse: bool
    wrapuptime: int

    @classmethod
    def from_frame(cls, frame: Frame) -> MemberState:
        get = frame.get
        return cls(
            queue=get("Queue") or "",
            interface=get("Interface") or get("Location") or "",
            name=get("MemberName") or get("Name") or "",
            state_interface=get("StateInterface") or "",
            membership=get("Membership") or "",
            penalty=_int(get("Penalty")),
            calls_taken=_int(get("CallsTaken")),
            last_call=_int(get("LastCall")),
            last_pause=_int(get("LastPause")),
            login_time=_int(get("LoginTime")),
            in_call=get("InCall") == "1",
            status=DEVICE_STATES.get(get("Status") or "", "unknown"),
            paused=get("Paused") == "1",
            paused_reason=get("PausedReason") or "",
            ringinuse=get("Ringinuse") == "1",
            wrapuptime=_int(get("Wrapuptime")),
        )


@dataclass(frozen=True, slots=True)
class MemberChanged(PbxEvent):
    """QueueMemberAdded / Removed / Pause / Status / Penalty / Ringinuse."""

    change: str  # added | removed | pause | status | penalty | ringinuse
    member: MemberState

    ami_events = (
        "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause",
        "QueueMemberStatus", "QueueMemberPenalty", "QueueMemberRinginuse",
    )


# -- devices -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceStateChanged(PbxEvent):
    device: str
    state: str

    ami_events = ("DeviceStateChange",)


@dataclass(frozen=True, slots=True)
class ContactStatusChanged(PbxEvent):
    """A softphone registered, went unreachable or was removed (PJSIP)."""

    endpoint: str
    status: str  # Created | Reachable | Unreachable | Removed | Updated
    aor: str

    ami_events = ("ContactStatus",)


@dataclass(frozen=True, slots=True)
class OriginateFinished(PbxEvent):
    action_id: str
    success: bool
    reason: int
    channel: str
    uniqueid: str

    ami_events = ("OriginateResponse",)


# -- transfers, hold, supervision ---------------------------------------------


@dataclass(frozen=True, slots=True)
class BlindTransferred(PbxEvent):
    """BlindTransfer (stasis_bridges.c): the transferee was sent to context/extension.

    ``result`` is ``Success`` / ``Fail`` / ``Invalid`` / ``Not Permitted``; Success means
    she was placed in the dialplan, not that anyone answered there.
    """

    result: str
    transferer: ChannelRef
    transferee: ChannelRef
    bridge_id: str
    context: str
    extension: str
    external: bool

    ami_events = ("BlindTransfer",)

    @property
    def succeeded(self) -> bool:
        return self.result == "Success"


@dataclass(frozen=True, slots=True)
class AttendedTransferred(PbxEvent):
    """AttendedTransfer: the consult ended in a merge, a link, an app or a three-way.

    ``orig_transferer`` is the agent's leg in the bridge with the caller,
    ``second_transferer`` her leg that called the target; ``transferee`` (when Asterisk
    names it) is the caller. ``dest_type``: Bridge | App | Link | Threeway | Fail.
    """

    result: str
    orig_transferer: ChannelRef
    second_transferer: ChannelRef
    transferee: ChannelRef | None
    orig_bridge_id: str
    second_bridge_id: str
    dest_type: str
    dest_bridge_id: str
    dest_app: str

    ami_events = ("AttendedTransfer",)

    @property
    def succeeded(self) -> bool:
        return self.result == "Success"


@dataclass(frozen=True, slots=True)
class HoldMusicStarted(PbxEvent):
    """MusicOnHoldStart: what she hears while an agent consults (never silence)."""

    channel: ChannelRef
    music_class: str

    ami_events = ("MusicOnHoldStart",)


@dataclass(frozen=True, slots=True)
class HoldMusicStopped(PbxEvent):
    channel: ChannelRef

    ami_events = ("MusicOnHoldStop",)


@dataclass(frozen=True, slots=True)
class SpyStarted(PbxEvent):
    """ChanSpyStart: ``spyer`` (the supervisor's leg) listens to ``spyee`` (the agent's)."""

    spyer: ChannelRef
    spyee: ChannelRef

    ami_events = ("ChanSpyStart",)


@dataclass(frozen=True, slots=True)
class SpyStopped(PbxEvent):
    """ChanSpyStop; Asterisk may omit the spyee when it is already gone."""

    spyer: ChannelRef
    spyee: ChannelRef | None

    ami_events = ("ChanSpyStop",)


# -- frame -> event ------------------------------------------------------------


_MEMBER_CHANGE = {
    "QueueMemberAdded": "added", "QueueMemberRemoved": "removed",
    "QueueMemberPause": "pause", "QueueMemberStatus": "status",
    "QueueMemberPenalty": "penalty", "QueueMemberRinginuse": "ringinuse",
}


def _agent_fields(frame: Frame) -> dict[str, object]:
    return {
        "caller": ChannelRef.from_frame(frame),
        "agent_channel": ChannelRef.from_frame(frame, "Dest"),
        "queue": frame.get("Queue") or "",
        "interface": frame.get("Interface") or "",
        "member_name": frame.get("MemberName") or "",
    }


Builder = Callable[[str, float | None, Frame], PbxEvent]

_BUILDERS: dict[str, Builder] = {
    "Newchannel": lambda n, t, f: ChannelCreated(n, t, ChannelRef.from_frame(f)),
    "Newstate": lambda n, t, f: ChannelStateChanged(n, t, ChannelRef.from_frame(f)),
    "Hangup": lambda n, t, f: ChannelHungUp(
        n, t, ChannelRef.from_frame(f), _int(f.get("Cause")), f.get("Cause-txt") or ""
    ),
    "NewCallerid": lambda n, t, f: CallerLabelChanged(n, t, ChannelRef.from_frame(f)),
    "BridgeEnter": lambda n, t, f: BridgeEntered(
        n, t, ChannelRef.from_frame(f), f.get("BridgeUniqueid") or ""
    ),
    "BridgeLeave": lambda n, t, f: BridgeLeft(
        n, t, ChannelRef.from_frame(f), f.get("BridgeUniqueid") or ""
    ),
    "AsyncAGIStart": lambda n, t, f: AsyncAGIStarted(n, t, ChannelRef.from_frame(f)),
    "AsyncAGIEnd": lambda n, t, f: AsyncAGIEnded(n, t, ChannelRef.from_frame(f)),
    "QueueCallerJoin": lambda n, t, f: CallerJoinedQueue(
        n, t, ChannelRef.from_frame(f), f.get("Queue") or "",
        _int(f.get("Position")), _int(f.get("Count")),
    ),
    "QueueCallerLeave": lambda n, t, f: CallerLeftQueue(
        n, t, ChannelRef.from_frame(f), f.get("Queue") or "",
        _int(f.get("Position")), _int(f.get("Count")),
    ),
    "QueueCallerAbandon": lambda n, t, f: CallerAbandoned(
        n, t, ChannelRef.from_frame(f), f.get("Queue") or "", _int(f.get("Position")),
        _int(f.get("OriginalPosition")), _int(f.get("HoldTime")),
    ),
    "AgentCalled": lambda n, t, f: AgentCalled(n, t, **_agent_fields(f)),  # type: ignore[arg-type]
    "AgentRingNoAnswer": lambda n, t, f: AgentRingNoAnswer(
        n, t, **_agent_fields(f), ring_time_ms=_int(f.get("RingTime"))  # type: ignore[arg-type]
    ),
    "AgentConnect": lambda n, t, f: AgentConnected(
        n, t, **_agent_fields(f),  # type: ignore[arg-type]
        hold_time=_int(f.get("HoldTime")), ring_time=_int(f.get("RingTime")),
    ),
    "AgentComplete": lambda n, t, f: AgentCompleted(
        n, t, **_agent_fields(f),  # type: ignore[arg-type]
        hold_time=_int(f.get("HoldTime")), talk_time=_int(f.get("TalkTime")),
        reason=f.get("Reason") or "",
    ),
    "DeviceStateChange": lambda n, t, f: DeviceStateChanged(
        n, t, f.get("Device") or "", f.get("State") or ""
    ),
    "ContactStatus": lambda n, t, f: ContactStatusChanged(
        n, t, f.get("EndpointName") or "", f.get("ContactStatus") or "", f.get("AOR") or ""
    ),
    "OriginateResponse": lambda n, t, f: OriginateFinished(
        n, t, f.action_id or "", (f.get("Response") or "") == "Success",
        _int(f.get("Reason")), f.get("Channel") or "", f.get("Uniqueid") or "",
    ),
}


def _optional_ref(frame: Frame, prefix: str) -> ChannelRef | None:
    return ChannelRef.from_frame(frame, prefix) if frame.get(prefix + "Channel") else None


_BUILDERS.update({
    "BlindTransfer": lambda n, t, f: BlindTransferred(
        n, t, f.get("Result") or "", ChannelRef.from_frame(f, "Transferer"),
        ChannelRef.from_frame(f, "Transferee"), f.get("BridgeUniqueid") or "",
        f.get("Context") or "", f.get("Extension") or "",
        (f.get("IsExternal") or "").lower() == "yes",
    ),
    "AttendedTransfer": lambda n, t, f: AttendedTransferred(
        n, t, f.get("Result") or "", ChannelRef.from_frame(f, "OrigTransferer"),
        ChannelRef.from_frame(f, "SecondTransferer"), _optional_ref(f, "Transferee"),
        f.get("OrigBridgeUniqueid") or "", f.get("SecondBridgeUniqueid") or "",
        f.get("DestType") or "", f.get("DestBridgeUniqueid") or "", f.get("DestApp") or "",
    ),
    "MusicOnHoldStart": lambda n, t, f: HoldMusicStarted(
        n, t, ChannelRef.from_frame(f), f.get("Class") or ""
    ),
    "MusicOnHoldStop": lambda n, t, f: HoldMusicStopped(n, t, ChannelRef.from_frame(f)),
    "ChanSpyStart": lambda n, t, f: SpyStarted(
        n, t, ChannelRef.from_frame(f, "Spyer"), ChannelRef.from_frame(f, "Spyee")
    ),
    "ChanSpyStop": lambda n, t, f: SpyStopped(
        n, t, ChannelRef.from_frame(f, "Spyer"), _optional_ref(f, "Spyee")
    ),
})
for _name, _change in _MEMBER_CHANGE.items():
    _BUILDERS[_name] = (
        lambda n, t, f, _c=_change: MemberChanged(n, t, _c, MemberState.from_frame(f))
    )

#: Variables whose VarSet the backend follows (everything else is noise).
OWNED_VARIABLE_PREFIXES = ("WPL_", "QUEUE_PRIO")


def typed_event(node: str, frame: Frame) -> PbxEvent | None:
    """The typed event for ``frame``, or None for events the backend ignores."""
    name = frame.name
    if name == "VarSet":
        variable = frame.get("Variable") or ""
        if not variable.startswith(OWNED_VARIABLE_PREFIXES):
            return None
        return VariableSet(
            node, _float(frame.get("Timestamp")), ChannelRef.from_frame(frame),
            variable, frame.get("Value") or "",
        )
    builder = _BUILDERS.get(name)
    if builder is None:
        return None
    return builder(node, _float(frame.get("Timestamp")), frame)


def followed_event_names() -> frozenset[str]:
    """Every AMI event name the backend turns into a typed event."""
    return frozenset(_BUILDERS) | {"VarSet"}
