"""Replay a recorded Asterisk trace against the simulator and compare what comes back.

For a trace ``NAME`` (``tests/fixtures/asterisk/NAME.ami*``):

1. :func:`load_trace` reads what Asterisk sent (frames with their times) and
   what the client sent (actions with their times).
2. :func:`derive_script` reads, from the trace itself, what the SIPp callers
   and phones did: which endpoint called which extension when, the DTMF
   digits, when the caller hung up, how fast each agent phone answered.
3. :func:`replay` starts a :class:`~callcenter.sim.SimPBX` set up like the lab
   PBX, plays the callers, and sends the recorded actions: each one after the
   frame that preceded it in the real trace has arrived, plus the same delay.
4. :func:`compare` checks, per channel (and per bridge, queue member...), the
   same sequence of event names minus :data:`IGNORED_EVENTS`, each event with
   the same header names, and action replies header for header (values that
   are ids, counters or times compared by shape).

Asterisk emits events from several threads; events of one channel that the
real PBX sent within :data:`SAME_INSTANT` of each other have no defined order
(two recordings of the same flow differ there), so within such a burst the
comparison accepts any order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.ami.frame import Frame
from callcenter.ami.parser import AMIParser
from callcenter.sim import PhoneBehaviour, SimPBX, lab_config
from callcenter.sim.channels import Channel
from callcenter.sim.clock import VirtualClock
from callcenter.sim.config import SimConfig
from callcenter.sim.testclient import SimClient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"

#: Events left out of the per-channel comparison: media statistics, variable
#: bookkeeping and dialplan steps; nothing that carries the call flow.
IGNORED_EVENTS = frozenset({"VarSet", "Newexten", "RTCPSent", "RTCPReceived", "DeviceStateChange"})

#: Events closer than this (real seconds) on one channel may come in any order.
SAME_INSTANT = 0.05

#: Reply headers whose values must be equal, not only alike in shape.
EXACT_VALUES = frozenset(
    {
        "Response",
        "Message",
        "EventList",
        "Events",
        "Event",
        "ListItems",
        "Variable",
        "Family",
        "Key",
        "Strategy",
        "Membership",
        "Paused",
        "PausedReason",
        "Queue",
        "Name",
        "Location",
        "StateInterface",
        "Ping",
    }
)


@dataclass
class TimedFrame:
    t: float
    frame: Frame


@dataclass
class Trace:
    name: str
    rx: list[TimedFrame]
    tx: list[TimedFrame]


def load_trace(name: str) -> Trace:
    rx_parser = AMIParser(expect_banner=True)
    tx_parser = AMIParser(expect_banner=False)
    rx: list[TimedFrame] = []
    tx: list[TimedFrame] = []
    with open(FIXTURES / f"{name}.ami.timeline.jsonl", encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            data = item["data"].encode("utf-8")
            if item["dir"] == "rx":
                rx.extend(
                    TimedFrame(item["t"], f) for f in rx_parser.feed(data) if f.kind != "banner"
                )
            else:
                tx.extend(TimedFrame(item["t"], f) for f in tx_parser.feed(data))
    return Trace(name, rx, tx)


# -- what the callers and phones did -------------------------------------------------


@dataclass
class CallScript:
    endpoint: str
    exten: str
    start: float
    caller_num: str
    caller_name: str
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    hangup_after: float | None = None


@dataclass
class Script:
    calls: list[CallScript]
    phones: dict[str, PhoneBehaviour]
    first_sequence: int
    first_uniqueid: int
    #: for each queue, the member its first call rang (rrmemory position in the lab).
    first_rung: dict[str, str]


def _endpoint(channel: str) -> str:
    return channel.split("/", 1)[1].rsplit("-", 1)[0]


def derive_script(trace: Trace) -> Script:
    created: dict[str, float] = {}
    answered: dict[str, float] = {}
    ringing: dict[str, float] = {}
    calls: dict[str, CallScript] = {}
    phones: dict[str, PhoneBehaviour] = {}
    sequences: list[int] = []
    uniqueids: list[int] = []
    first_rung: dict[str, str] = {}
    for tf in trace.rx:
        f = tf.frame
        if f.kind != "event":
            continue
        t = tf.t
        name = f.name
        chan = f.get("Channel") or ""
        if name == "Newchannel":
            created[chan] = t
            if chan.startswith("PJSIP/"):
                sequences.append(int(chan.rsplit("-", 1)[1], 16))
            uniqueids.append(int((f.get("Uniqueid") or "0.0").split(".")[1]))
            if f.get("ChannelStateDesc") == "Ring" and chan.startswith("PJSIP/"):
                calls[chan] = CallScript(
                    _endpoint(chan),
                    f.get("Exten") or "s",
                    t,
                    f.get("CallerIDNum") or "",
                    f.get("CallerIDName") or "",
                )
        elif name == "DTMFBegin" and chan in calls:
            calls[chan].dtmf.append((t - calls[chan].start, f.get("Digit") or ""))
        elif (
            name == "HangupRequest"
            and chan in calls
            and "Cause" not in f
            and calls[chan].hangup_after is None
        ):
            calls[chan].hangup_after = t - calls[chan].start
        elif (
            name == "HangupRequest"
            and chan.startswith("PJSIP/")
            and chan not in calls
            and chan in answered
        ):
            phones[_endpoint(chan)].hangup_after = t - answered[chan]
        elif name == "DialState" and f.get("DialStatus") == "RINGING":
            ringing[f.get("DestChannel") or ""] = t
        elif name == "DialEnd" and f.get("DialStatus") == "ANSWER":
            dest = f.get("DestChannel") or ""
            answered[dest] = t
            if dest.startswith("PJSIP/"):
                ep = _endpoint(dest)
                phones.setdefault(
                    ep, PhoneBehaviour(answer_after=max(0.0, t - ringing.get(dest, t)))
                )
        elif name == "AgentCalled":
            first_rung.setdefault(f.get("Queue") or "", f.get("Interface") or "")
    start = min(sequences) if sequences else 0
    first_uid = min(uniqueids) if uniqueids else start
    return Script(
        sorted(calls.values(), key=lambda c: c.start), phones, start, first_uid, first_rung
    )


# -- per-trace lab state that the traces do not show ------------------------------------


#: What the lab PBX looked like before each recording, beyond lab_config().
def _setup_paused(sim: SimPBX) -> None:
    for interface in ("PJSIP/agent1", "PJSIP/agent2"):
        member = sim.queues.queues["counselors"].members[interface]
        member.paused, member.reason = True, "trace-setup"


def _first_batch(sim: SimPBX) -> None:
    """The first recordings were made before queue ``ringnoanswer`` existed."""
    sim.queues.queues.pop("ringnoanswer", None)


def _first_batch_paused(sim: SimPBX) -> None:
    _first_batch(sim)
    _setup_paused(sim)


TRACE_SETUP: dict[str, Callable[[SimPBX], None]] = {
    "corestatus": _first_batch,
    "basic_call": _first_batch,
    "actions": _first_batch,
    "queue_asyncagi_call": _first_batch,
    "queue_abandon_call": _first_batch_paused,
}


def build_sim(trace: Trace, script: Script) -> SimPBX:
    config: SimConfig = lab_config(
        first_sequence=script.first_sequence, first_uniqueid=script.first_uniqueid
    )
    sim = SimPBX(config, clock=VirtualClock())
    for endpoint, phone in script.phones.items():
        if endpoint in sim.core.phones and sim.core.phones[endpoint].answer_after is not None:
            sim.core.phones[endpoint] = phone
    for qname, interface in script.first_rung.items():
        queue = sim.queues.queues.get(qname)
        if queue is not None and queue.config.strategy == "rrmemory":
            order = sorted(queue.members.values(), key=lambda m: m.order)
            queue.rrpos = next((i for i, m in enumerate(order) if m.interface == interface), 0)
    sim.challenges = [
        tf.frame["Challenge"]
        for tf in trace.rx
        if tf.frame.kind == "response" and "Challenge" in tf.frame
    ]
    setup = TRACE_SETUP.get(trace.name)
    if setup is not None:
        setup(sim)
    return sim


# -- replay --------------------------------------------------------------------------


def group_key(frame: Frame, bridges: dict[str, str]) -> str:
    """Which flow an event belongs to: its channel, bridge, queue member, or the session."""
    for header in ("Channel", "DestChannel", "LocalOneChannel"):
        value = frame.get(header)
        if value:
            return value
    bridge = frame.get("BridgeUniqueid")
    if bridge:
        return bridges.setdefault(bridge, f"bridge#{len(bridges) + 1}")
    if frame.get("Interface") and frame.get("Queue"):
        return f"member:{frame['Queue']}/{frame['Interface']}"
    return "session"


def _is_list_event(frame: Frame) -> bool:
    return frame.kind == "event" and frame.action_id is not None and "Privilege" not in frame


def _trigger_key(
    frame: Frame, counts: Counter[tuple[str, str, str]], bridges: dict[str, str]
) -> tuple[str, str, str, int]:
    if frame.kind == "response":
        base = ("response", frame.action_id or "", "")
    elif _is_list_event(frame):
        base = ("list", frame.name, frame.action_id or "")
    else:
        base = ("event", frame.name, group_key(frame, bridges))
    counts[base] += 1
    return (*base, counts[base])


@dataclass
class Recording:
    rx: list[TimedFrame]
    missed_triggers: list[str]


async def replay(trace: Trace, *, trigger_timeout: float = 5.0) -> Recording:
    """Play ``trace`` against a simulator on a :class:`VirtualClock` (deterministic, fast)."""
    script = derive_script(trace)
    sim = build_sim(trace, script)
    clock = sim.clock
    await sim.start(port=0)
    loop = asyncio.get_running_loop()
    t0 = clock.now()
    io = {"read": 0, "written": 0}
    rx: list[TimedFrame] = []
    seen: set[tuple[str, str, str, int]] = set()
    seen_changed = asyncio.Event()
    counts: Counter[tuple[str, str, str]] = Counter()
    bridges: dict[str, str] = {}
    missed: list[str] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    parser = AMIParser(expect_banner=True)

    async def read() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            io["read"] += len(data)
            for frame in parser.feed(data):
                if frame.kind == "banner":
                    continue
                rx.append(TimedFrame(clock.now() - t0, frame))
                seen.add(_trigger_key(frame, counts, bridges))
                seen_changed.set()

    async def wait_for(key: tuple[str, str, str, int]) -> bool:
        deadline = loop.time() + trigger_timeout
        while key not in seen:
            seen_changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(seen_changed.wait(), left)
            except TimeoutError:
                return False
        return True

    async def play_call(call: CallScript) -> None:
        await clock.sleep(call.start)
        chan: Channel = sim.place_call(
            call.endpoint, call.exten, caller_num=call.caller_num, caller_name=call.caller_name
        )
        started = clock.now()
        steps: list[tuple[float, str]] = [*call.dtmf]
        if call.hangup_after is not None:
            steps.append((call.hangup_after, ""))
        for at, digit in sorted(steps, key=lambda s: s[0]):
            delay = at - (clock.now() - started)
            if delay > 0:
                await clock.sleep(delay)
            if chan.gone:
                return
            if digit:
                sim.core.spawn(sim.core.send_dtmf(chan, digit))
            else:
                sim.core.remote_hangup(chan)

    # the trigger of each action: the last flow-carrying frame before it
    trigger_counts: Counter[tuple[str, str, str]] = Counter()
    trigger_bridges: dict[str, str] = {}
    real_keys: list[tuple[float, tuple[str, str, str, int]]] = []
    for tf in trace.rx:
        key = _trigger_key(tf.frame, trigger_counts, trigger_bridges)
        if tf.frame.name not in IGNORED_EVENTS:
            real_keys.append((tf.t, key))
    first_rx = trace.rx[0].t if trace.rx else 0.0

    def delivered() -> bool:
        sessions = list(sim.sessions)
        return all(x.bytes_out == io["read"] and x.bytes_in == io["written"] for x in sessions)

    clock.quiescent.append(delivered)
    read_task = asyncio.ensure_future(read())
    call_tasks = [asyncio.ensure_future(play_call(c)) for c in script.calls]
    try:
        for tf in trace.tx:
            before = [(t, k) for t, k in real_keys if t <= tf.t]
            trigger_t = first_rx
            if before:
                trigger_t, key = before[-1]
                if not await wait_for(key):
                    missed.append(f"{key} before {tf.frame.name} {tf.frame.action_id}")
            delay = max(0.0, tf.t - trigger_t)
            if delay:
                await clock.sleep(delay)
            data = _encode(tf.frame)
            io["written"] += len(data)
            writer.write(data)
            await writer.drain()
        try:
            await asyncio.wait_for(read_task, trigger_timeout)
        except TimeoutError:
            missed.append("the connection was not closed after the last action")
    finally:
        for task in call_tasks:
            task.cancel()
        read_task.cancel()
        writer.close()
        await sim.stop()
        clock.stop()
    return Recording(rx, missed)


def _encode(frame: Frame) -> bytes:
    lines = [f"Action: {frame.name}\r\n"]
    for name, value in frame.pairs():
        if name.lower() == "action":
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


# -- comparison ------------------------------------------------------------------------


def shape(value: str) -> str:
    value = re.sub(r"-[0-9a-f]{8}\b", "-HEX", value)
    value = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", value)
    value = re.sub(r"0x[0-9a-f]+", "0xHEX", value)
    return re.sub(r"\d+", "9", value)


def _names(frame: Frame) -> list[str]:
    return [name for name, _ in frame.pairs()]


def _event_groups(frames: list[TimedFrame]) -> dict[str, list[TimedFrame]]:
    bridges: dict[str, str] = {}
    groups: dict[str, list[TimedFrame]] = defaultdict(list)
    for tf in frames:
        f = tf.frame
        if f.kind != "event" or _is_list_event(f) or f.name in IGNORED_EVENTS:
            continue
        groups[group_key(f, bridges)].append(tf)
    return groups


def _bursts(events: list[TimedFrame]) -> list[int]:
    """A burst number for each event: a new burst starts after a gap > SAME_INSTANT."""
    out: list[int] = []
    burst = 0
    last: float | None = None
    for tf in events:
        t = float(tf.frame.get("Timestamp") or tf.t)
        if last is not None and t - last > SAME_INSTANT:
            burst += 1
        out.append(burst)
        last = t
    return out


def compare_events(real: list[TimedFrame], sim: list[TimedFrame]) -> list[str]:
    problems: list[str] = []
    real_groups = _event_groups(real)
    sim_groups = _event_groups(sim)
    for key in sorted(set(real_groups) | set(sim_groups)):
        r = real_groups.get(key, [])
        s = sim_groups.get(key, [])
        r_names = [tf.frame.name for tf in r]
        s_names = [tf.frame.name for tf in s]
        if len(r_names) != len(s_names):
            problems.append(f"{key}: events differ\n  real: {r_names}\n  sim:  {s_names}")
            continue
        bursts = _bursts(r)
        start = 0
        ok = True
        while start < len(r):
            end = start
            while end < len(r) and bursts[end] == bursts[start]:
                end += 1
            if Counter(r_names[start:end]) != Counter(s_names[start:end]):
                problems.append(
                    f"{key}: order differs at #{start}\n  real: {r_names}\n  sim:  {s_names}"
                )
                ok = False
                break
            # pair events of the burst by name, in order, and compare header names
            pool: dict[str, list[Frame]] = defaultdict(list)
            for tf in s[start:end]:
                pool[tf.frame.name].append(tf.frame)
            for tf in r[start:end]:
                other = pool[tf.frame.name].pop(0)
                if _names(tf.frame) != _names(other):
                    problems.append(
                        f"{key}: {tf.frame.name} headers differ\n"
                        f"  real: {_names(tf.frame)}\n  sim:  {_names(other)}"
                    )
            start = end
        if not ok:
            continue
    return problems


def _replies(frames: list[TimedFrame]) -> dict[str, list[Frame]]:
    out: dict[str, list[Frame]] = defaultdict(list)
    for tf in frames:
        f = tf.frame
        if f.kind == "response" or _is_list_event(f):
            if f.action_id is not None:
                out[f.action_id].append(f)
    return out


def _compare_values(action_id: str, real: Frame, sim: Frame) -> list[str]:
    problems: list[str] = []
    r_pairs, s_pairs = real.pairs(), sim.pairs()
    if [n for n, _ in r_pairs] != [n for n, _ in s_pairs]:
        return [f"{action_id} {real.name}: headers differ\n  real: {r_pairs}\n  sim:  {s_pairs}"]
    for (name, rv), (_, sv) in zip(r_pairs, s_pairs, strict=True):
        if name in EXACT_VALUES:
            if rv != sv:
                problems.append(f"{action_id} {real.name}: {name} is {sv!r}, Asterisk said {rv!r}")
        elif shape(rv) != shape(sv):
            problems.append(f"{action_id} {real.name}: {name} {sv!r} is not shaped like {rv!r}")
    return problems


def compare_replies(real: list[TimedFrame], sim: list[TimedFrame]) -> list[str]:
    problems: list[str] = []
    real_replies = _replies(real)
    sim_replies = _replies(sim)
    for action_id, frames in real_replies.items():
        got = sim_replies.get(action_id, [])
        if [f.name for f in frames] != [f.name for f in got]:
            problems.append(
                f"{action_id}: reply differs\n"
                f"  real: {[f.name for f in frames]}\n  sim:  {[f.name for f in got]}"
            )
            continue
        # list items (channels) come in hash order in Asterisk: compare them sorted
        if len(frames) > 2:
            frames = [
                frames[0],
                *sorted(
                    frames[1:-1],
                    key=lambda f: (f.name, f.get("Channel") or "", f.get("Location") or ""),
                ),
                frames[-1],
            ]
            got = [
                got[0],
                *sorted(
                    got[1:-1],
                    key=lambda f: (f.name, f.get("Channel") or "", f.get("Location") or ""),
                ),
                got[-1],
            ]
        for r, s in zip(frames, got, strict=True):
            problems.extend(_compare_values(action_id, r, s))
    return problems


def compare(trace: Trace, recording: Recording) -> list[str]:
    return [
        *recording.missed_triggers,
        *compare_replies(trace.rx, recording.rx),
        *compare_events(trace.rx, recording.rx),
    ]


__all__ = ["SimClient", "compare", "load_trace", "replay"]
