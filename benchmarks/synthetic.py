"""Synthetic AMI event streams shaped like a busy Asterisk 22 helpline PBX.

The header sets are copied from the recorded traces in
``tests/fixtures/asterisk`` (queue calls: two thirds VarSet, then Newexten,
DeviceStateChange, RTCPSent, the app_queue events...), with the values varied
per call so no two frames are byte-identical. About one caller in four has a
Devanagari name, because the helpline's callers do and a parser that is only
fast on ASCII is not fast. Phone numbers are from the fictional 555-01xx range.

Deterministic for a given seed, so benchmarks compare like with like::

    from benchmarks.synthetic import synthetic_stream, chunks
    data = synthetic_stream(200_000)
    for piece in chunks(data, 65536): ...
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

_LATIN_NAMES = ("Lab Caller", "<unknown>", "Anjali Verma", "Ritu Singh", "Pooja")
_DEVANAGARI_NAMES = ("प्रिया शर्मा", "सीमा देवी", "अनीता", "रेखा यादव")
_AGENTS = (("agent1", "1001", "Agent One"), ("agent2", "1002", "Agent Two"))
_VARIABLES = (
    ("SIPDOMAIN", "127.0.0.1"),
    ("BRIDGEPEER", "PJSIP/agent1-0000001a"),
    ("QUEUEPOSITION", "1"),
    ("MIXMONITOR_FILENAME", "1795327929.5.wav"),
    ("AGISTATUS", "SUCCESS"),
    ("WPL_CATEGORY", "internet"),
    ("QUEUE_PRIO", "10"),
    ("DIALSTATUS", "ANSWER"),
    ("QUEUESTATUS", "CONTINUE"),
    (
        "RTPAUDIOQOS",
        "ssrc=1562373497;themssrc=2025476698;lp=0;rxjitter=0.000000;"
        "rxcount=498;txjitter=0.000000;txcount=499;rlp=0;rtt=0.000000",
    ),
)
_APPS = (
    ("NoOp", 'helpline call from "{name}" <{num}>'),
    ("Answer", ""),
    ("AGI", "agi:async"),
    ("Queue", "counselors,t,,,300"),
    ("Hangup", ""),
)

# Event mix of a recorded queue call (queue_asyncagi_call.ami), rounded.
_MIX: tuple[tuple[str, int], ...] = (
    ("VarSet", 62),
    ("Newexten", 8),
    ("DeviceStateChange", 5),
    ("RTCPSent", 4),
    ("Newstate", 4),
    ("Newchannel", 3),
    ("Hangup", 3),
    ("QueueMemberStatus", 3),
    ("AgentCalled", 2),
    ("AgentConnect", 2),
    ("DialBegin", 2),
    ("BridgeEnter", 2),
)


@dataclass
class _Call:
    channel: str
    uniqueid: str
    name: str
    number: str
    agent: tuple[str, str, str]
    agent_channel: str
    agent_uniqueid: str


def _channel_block(c: _Call, ts: str | None, state: str, priority: int) -> str:
    """The channel snapshot most events carry (``ts`` None: no Timestamp line)."""
    state_desc = "Up" if state == "6" else "Ring"
    return (
        ("" if ts is None else f"Timestamp: {ts}\r\n") + f"Channel: {c.channel}\r\n"
        f"ChannelState: {state}\r\n"
        f"ChannelStateDesc: {state_desc}\r\n"
        f"CallerIDNum: {c.number}\r\n"
        f"CallerIDName: {c.name}\r\n"
        "ConnectedLineNum: <unknown>\r\n"
        "ConnectedLineName: <unknown>\r\n"
        "Language: en\r\n"
        "AccountCode: \r\n"
        "Context: helpline-inbound\r\n"
        "Exten: 1090\r\n"
        f"Priority: {priority}\r\n"
        f"Uniqueid: {c.uniqueid}\r\n"
        f"Linkedid: {c.uniqueid}\r\n"
    )


def _dest_block(c: _Call, state: str) -> str:
    _, ext, agent_name = c.agent
    return (
        f"DestChannel: {c.agent_channel}\r\n"
        f"DestChannelState: {state}\r\n"
        f"DestChannelStateDesc: {'Up' if state == '6' else 'Down'}\r\n"
        f"DestCallerIDNum: {ext}\r\n"
        f"DestCallerIDName: {agent_name}\r\n"
        f"DestConnectedLineNum: {c.number}\r\n"
        f"DestConnectedLineName: {c.name}\r\n"
        "DestLanguage: en\r\n"
        "DestAccountCode: \r\n"
        "DestContext: helpline-agents\r\n"
        "DestExten: s\r\n"
        "DestPriority: 1\r\n"
        f"DestUniqueid: {c.agent_uniqueid}\r\n"
        f"DestLinkedid: {c.uniqueid}\r\n"
    )


def _event(kind: str, c: _Call, ts: str, rng: random.Random) -> str:
    head = f"Event: {kind}\r\n"
    priority = rng.randint(1, 5)
    if kind == "VarSet":
        variable, value = rng.choice(_VARIABLES)
        return (
            f"{head}Privilege: dialplan,all\r\n{_channel_block(c, ts, '6', priority)}"
            f"Variable: {variable}\r\nValue: {value}\r\n\r\n"
        )
    if kind == "Newexten":
        app, data = _APPS[priority - 1]
        data = data.format(name=c.name, num=c.number)
        return (
            f"{head}Privilege: dialplan,all\r\n{_channel_block(c, ts, '6', priority)}"
            f"Extension: 1090\r\nApplication: {app}\r\nAppData: {data}\r\n\r\n"
        )
    if kind in ("Newstate", "Newchannel"):
        return f"{head}Privilege: call,all\r\n{_channel_block(c, ts, '4', priority)}\r\n"
    if kind == "Hangup":
        return (
            f"{head}Privilege: call,all\r\n{_channel_block(c, ts, '6', priority)}"
            "Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
        )
    if kind == "DeviceStateChange":
        state = rng.choice(("INUSE", "NOT_INUSE", "RINGING"))
        return (
            f"{head}Privilege: call,all\r\nTimestamp: {ts}\r\n"
            f"Device: PJSIP/{c.agent[0]}\r\nState: {state}\r\n\r\n"
        )
    if kind == "RTCPSent":
        return (
            f"{head}Privilege: reporting,all\r\n{_channel_block(c, ts, '6', priority)}"
            "To: 127.0.0.1:20711\r\nFrom: 127.0.0.1:10279\r\nMES: 87.2\r\n"
            f"SSRC: 0x{rng.getrandbits(32):08x}\r\nPT: 200(SR)\r\nReportCount: 0\r\n"
            f"SentNTP: {ts}\r\nSentRTP: 8725\r\nSentPackets: 55\r\nSentOctets: 8725\r\n\r\n"
        )
    if kind == "QueueMemberStatus":
        iface, _, agent_name = c.agent
        return (
            f"{head}Privilege: agent,all\r\nTimestamp: {ts}\r\nQueue: counselors\r\n"
            f"MemberName: {agent_name}\r\nInterface: PJSIP/{iface}\r\n"
            f"StateInterface: PJSIP/{iface}\r\nMembership: static\r\nPenalty: 0\r\n"
            "CallsTaken: 1\r\nLastCall: 1795327923\r\nLastPause: 0\r\n"
            "LoginTime: 1795327802\r\nInCall: 0\r\nStatus: 6\r\nPaused: 0\r\n"
            "PausedReason: \r\nRinginuse: 0\r\nWrapuptime: 0\r\n\r\n"
        )
    if kind in ("AgentCalled", "AgentConnect"):
        iface, _, agent_name = c.agent
        tail = "HoldTime: 12\r\nRingTime: 3\r\n" if kind == "AgentConnect" else ""
        return (
            f"{head}Privilege: agent,all\r\n{_channel_block(c, ts, '6', 4)}"
            f"{_dest_block(c, '6' if tail else '0')}Queue: counselors\r\n"
            f"Interface: PJSIP/{iface}\r\nMemberName: {agent_name}\r\n{tail}\r\n"
        )
    if kind == "DialBegin":
        return (
            f"{head}Privilege: call,all\r\n{_channel_block(c, ts, '6', 4)}"
            f"{_dest_block(c, '0')}DialString: {c.agent[0]}\r\n\r\n"
        )
    if kind == "BridgeEnter":
        return (
            f"{head}Privilege: call,all\r\nTimestamp: {ts}\r\n"
            f"BridgeUniqueid: {rng.getrandbits(128):032x}\r\nBridgeType: basic\r\n"
            "BridgeTechnology: simple_bridge\r\nBridgeCreator: <unknown>\r\n"
            "BridgeName: <unknown>\r\nBridgeNumChannels: 1\r\n"
            f"BridgeVideoSourceMode: none\r\n{_channel_block(c, None, '6', 4)}\r\n"
        )
    raise ValueError(kind)


def synthetic_events(count: int, *, seed: int = 1090) -> Iterator[bytes]:
    """``count`` encoded event frames (CRLF, blank-line terminated)."""
    rng = random.Random(seed)
    kinds = [name for name, _ in _MIX]
    weights = [weight for _, weight in _MIX]
    calls: list[_Call] = []
    clock = 1795327929.0
    serial = 0
    for _ in range(count):
        if not calls or rng.random() < 0.01:
            serial += 1
            devanagari = rng.random() < 0.25
            name = rng.choice(_DEVANAGARI_NAMES if devanagari else _LATIN_NAMES)
            calls.append(
                _Call(
                    channel=f"PJSIP/caller-{serial:08x}",
                    uniqueid=f"{int(clock)}.{serial}",
                    name=name,
                    number=f"55501{serial % 100:02d}",
                    agent=rng.choice(_AGENTS),
                    agent_channel=f"PJSIP/agent-{serial:08x}",
                    agent_uniqueid=f"{int(clock)}.{serial}1",
                )
            )
            if len(calls) > 40:
                del calls[0]
        clock += rng.random() * 0.01
        kind = rng.choices(kinds, weights)[0]
        yield _event(kind, rng.choice(calls), f"{clock:.6f}", rng).encode("utf-8")


def synthetic_stream(count: int, *, seed: int = 1090, banner: bool = True) -> bytes:
    """One byte string: the banner (optional) then ``count`` events."""
    body = b"".join(synthetic_events(count, seed=seed))
    return BANNER + body if banner else body


def chunks(data: bytes, size: int = 65536) -> list[bytes]:
    """``data`` cut into reads of ``size`` bytes, as a socket would deliver it."""
    return [data[i : i + size] for i in range(0, len(data), size)]
