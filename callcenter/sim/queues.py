"""app_queue, as the simulator plays it: members, callers, strategies and the Queue() app.

The caller's loop follows app_queue.c: a caller whose turn it is
(``is_our_turn`` with autofill) rings members (``try_calling``); after a
failed round she waits ``retry`` seconds (``wait_a_bit``); a caller whose
turn it is not re-checks every second (``wait_our_turn``). That is why, in
the traces, an unpaused agent is rung up to one or two seconds later.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .channels import UP, Channel, ChannelHungUp, ChannelInterrupted
from .config import MemberConfig, QueueConfig
from .core import INUSE, INVALID, NOT_INUSE, RINGING_STATE, RINGINUSE, UNAVAILABLE, AppResult
from .dialplan import split_args

if TYPE_CHECKING:
    from .core import PBXCore

log = logging.getLogger(__name__)

# parse_empty_options(): "yes"/"no" mean opposite things for joinempty (may
# join an empty queue) and leavewhenempty (leaves an empty queue).
_STRICT = "paused,penalty,invalid,unavailable"
_JOINEMPTY = {"yes": "", "no": _STRICT, "strict": _STRICT, "loose": "penalty,invalid"}
_LEAVEWHENEMPTY = {"no": "", "yes": _STRICT, "strict": _STRICT, "loose": "penalty,invalid"}


@dataclass
class Member:
    interface: str
    name: str
    state_interface: str
    penalty: int = 0
    paused: bool = False
    reason: str = ""
    dynamic: bool = False
    calls: int = 0
    lastcall: float = 0.0
    lastpause: float = 0.0
    logintime: float = 0.0
    incall: bool = False
    status: int = NOT_INUSE
    ringinuse: bool = False
    wrapuptime: int = 0
    #: position in the queue's member list (linear / rrmemory order).
    order: int = 0


@dataclass
class Entry:
    chan: Channel
    prio: int
    joined: float
    original_pos: int = 0
    pending: bool = False
    linpos: int = 0
    #: Queue()'s options (``t``: the agent may transfer her).
    options: str = ""


@dataclass
class Queue:
    config: QueueConfig
    members: dict[str, Member] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    completed: int = 0
    abandoned: int = 0
    completed_in_sl: int = 0
    holdtime: int = 0
    talktime: int = 0
    rrpos: int = 0
    _order: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    def position(self, entry: Entry) -> int:
        return self.entries.index(entry) + 1


class QueueEngine:
    def __init__(self, core: PBXCore) -> None:
        self.core = core
        self.queues: dict[str, Queue] = {}
        now = core.clock.now()
        for qc in core.config.queues:
            queue = Queue(qc)
            self.queues[qc.name] = queue
            for mc in qc.members:
                self._new_member(queue, mc, dynamic=False, now=now)
        core.queues = self
        self._load_persistent()

    # -- members ----------------------------------------------------------------

    def _new_member(self, queue: Queue, mc: MemberConfig, *, dynamic: bool, now: float) -> Member:
        member = Member(
            interface=mc.interface,
            name=mc.name or mc.interface,
            state_interface=mc.state_interface or mc.interface,
            penalty=mc.penalty,
            paused=mc.paused,
            reason=mc.reason if mc.paused else "",
            dynamic=dynamic,
            logintime=now,
            ringinuse=queue.config.ringinuse if mc.ringinuse is None else mc.ringinuse,
            wrapuptime=queue.config.wrapuptime if mc.wrapuptime is None else mc.wrapuptime,
            lastpause=now if mc.paused else 0.0,
        )
        member.status = self.core.device_state(member.state_interface)
        queue._order += 1
        member.order = queue._order
        queue.members[member.interface] = member
        return member

    def member_headers(self, queue: Queue, m: Member) -> list[tuple[str, str]]:
        return [
            ("Queue", queue.name),
            ("MemberName", m.name),
            ("Interface", m.interface),
            ("StateInterface", m.state_interface),
            ("Membership", "dynamic" if m.dynamic else "static"),
            ("Penalty", str(m.penalty)),
            ("CallsTaken", str(m.calls)),
            ("LastCall", str(int(m.lastcall))),
            ("LastPause", str(int(m.lastpause))),
            ("LoginTime", str(int(m.logintime))),
            ("InCall", "1" if m.incall else "0"),
            ("Status", str(m.status)),
            ("Paused", "1" if m.paused else "0"),
            ("PausedReason", m.reason),
            ("Ringinuse", "1" if m.ringinuse else "0"),
            ("Wrapuptime", str(m.wrapuptime)),
        ]

    def member_event(self, name: str, queue: Queue, m: Member) -> None:
        self.core.emit(name, "agent,all", self.member_headers(queue, m))

    def device_changed(self, device: str, state: int) -> None:
        for queue in self.queues.values():
            for m in queue.members.values():
                if m.state_interface == device and m.status != state:
                    m.status = state
                    self.member_event("QueueMemberStatus", queue, m)

    def add_member(
        self,
        qname: str,
        interface: str,
        *,
        name: str = "",
        penalty: int = 0,
        paused: bool = False,
        reason: str = "",
        state_interface: str = "",
        ringinuse: bool | None = None,
    ) -> str:
        queue = self.queues.get(qname)
        if queue is None:
            return "nosuchqueue"
        if interface in queue.members:
            return "exists"
        mc = MemberConfig(interface, name, penalty, state_interface, paused, reason, ringinuse)
        member = self._new_member(queue, mc, dynamic=True, now=self.core.clock.now())
        self.member_event("QueueMemberAdded", queue, member)
        self._save_persistent()
        return "ok"

    def remove_member(self, qname: str, interface: str) -> str:
        queue = self.queues.get(qname)
        if queue is None:
            return "nosuchqueue"
        member = queue.members.get(interface)
        if member is None:
            return "notthere"
        if not member.dynamic:
            return "notdynamic"
        del queue.members[interface]
        self.member_event("QueueMemberRemoved", queue, member)
        self._save_persistent()
        return "ok"

    def pause_member(
        self, qname: str | None, interface: str, paused: bool, reason: str = ""
    ) -> bool:
        found = False
        now = self.core.clock.now()
        for queue in self.queues.values():
            if qname and queue.name != qname:
                continue
            member = queue.members.get(interface)
            if member is None:
                continue
            found = True
            member.paused = paused
            member.reason = reason if paused else ""
            if paused:
                member.lastpause = now
            self.core.emit(
                "DeviceStateChange",
                "call,all",
                [
                    ("Device", f"Queue:{queue.name}_pause_{interface}"),
                    ("State", "INUSE" if paused else "NOT_INUSE"),
                ],
            )
            self.member_event("QueueMemberPause", queue, member)
        if found:
            self._save_persistent()
        return found

    def set_penalty(self, qname: str | None, interface: str, penalty: int) -> bool:
        found = False
        for queue in self.queues.values():
            if qname and queue.name != qname:
                continue
            member = queue.members.get(interface)
            if member is None:
                continue
            found = True
            member.penalty = penalty
            self.member_event("QueueMemberPenalty", queue, member)
        return found

    def member_function(self, qname: str, option: str) -> str:
        queue = self.queues.get(qname)
        if queue is None:
            return "0"
        if option == "logged":
            return str(
                sum(1 for m in queue.members.values() if m.status not in (INVALID, UNAVAILABLE))
            )
        if option == "free":
            return str(
                sum(
                    1
                    for m in queue.members.values()
                    if self._available(queue, m, check_weight=False)
                )
            )
        if option == "paused":
            return str(sum(1 for m in queue.members.values() if m.paused))
        return str(len(queue.members))

    # -- persistence (persistentmembers) ----------------------------------------------------

    def _load_persistent(self) -> None:
        path = self.core.config.state_file
        if not path or not self.core.config.persistentmembers or not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        now = self.core.clock.now()
        for row in data.get("members", []):
            queue = self.queues.get(row["queue"])
            if queue is None or row["interface"] in queue.members:
                continue
            mc = MemberConfig(
                row["interface"],
                row.get("name", ""),
                int(row.get("penalty", 0)),
                row.get("state_interface", ""),
                bool(row.get("paused")),
                row.get("reason", ""),
            )
            self._new_member(queue, mc, dynamic=True, now=now)

    def _save_persistent(self) -> None:
        path = self.core.config.state_file
        if not path or not self.core.config.persistentmembers:
            return
        rows = [
            {
                "queue": q.name,
                "interface": m.interface,
                "name": m.name,
                "penalty": m.penalty,
                "state_interface": m.state_interface,
                "paused": m.paused,
                "reason": m.reason,
            }
            for q in self.queues.values()
            for m in q.members.values()
            if m.dynamic
        ]
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"members": rows}, fh)
        os.replace(tmp, path)

    # -- availability -----------------------------------------------------------------------

    def _in_wrapup(self, queue: Queue, m: Member, now: float) -> bool:
        if not m.wrapuptime:
            return False
        last = m.lastcall
        if self.core.config.shared_lastcall:
            for other in self.queues.values():
                om = other.members.get(m.interface)
                if om is not None and om.lastcall > last:
                    last = om.lastcall
        return bool(last) and now - last < m.wrapuptime

    def _status_ok(self, m: Member) -> bool:
        if m.status in (NOT_INUSE, 0):
            return True
        if m.status in (INUSE, RINGING_STATE, RINGINUSE, 8) and m.ringinuse:
            return True
        return False

    def _available(self, queue: Queue, m: Member, *, check_weight: bool = True) -> bool:
        if m.paused or not self._status_ok(m):
            return False
        if self._in_wrapup(queue, m, self.core.clock.now()):
            return False
        if check_weight and self._outweighed(queue, m):
            return False
        return True

    def _outweighed(self, queue: Queue, m: Member) -> bool:
        """compare_weight: a heavier queue with callers waiting keeps its shared members."""
        for other in self.queues.values():
            if other is queue or other.config.weight <= queue.config.weight:
                continue
            if m.interface in other.members and other.entries:
                return True
        return False

    def _has_available(self, queue: Queue, needed: int) -> bool:
        """Are at least ``needed`` members free to take a call (num_available_members)?"""
        if queue.config.strategy == "ringall" or not queue.config.autofill:
            needed = 1 if needed <= 1 else needed
            if needed > 1:
                return False
        count = 0
        for m in queue.members.values():
            if self._available(queue, m):
                count += 1
                if count >= needed:
                    return True
        return False

    def _is_our_turn(self, queue: Queue, entry: Entry) -> bool:
        # Callers ahead that are not being rung right now each need a member.
        ahead = 0
        for other in queue.entries:
            if other is entry:
                break
            if not other.pending:
                ahead += 1
        else:
            return False
        if not queue.config.autofill and ahead:
            return False
        return self._has_available(queue, ahead + 1)

    def _empty(self, queue: Queue, option: str, presets: dict[str, str]) -> bool:
        """get_member_status: does no member satisfy the joinempty/leavewhenempty rules?"""
        conditions = {
            c.strip() for c in presets.get(option.lower(), option).split(",") if c.strip()
        }
        if not conditions:
            return False
        now = self.core.clock.now()
        for m in queue.members.values():
            if "paused" in conditions and m.paused:
                continue
            if "unavailable" in conditions and m.status == UNAVAILABLE:
                continue
            if "invalid" in conditions and m.status == INVALID:
                continue
            if "inuse" in conditions and m.status == INUSE:
                continue
            if "ringing" in conditions and m.status == RINGING_STATE:
                continue
            if "wrapup" in conditions and self._in_wrapup(queue, m, now):
                continue
            return False
        return True

    def _candidates(self, queue: Queue, entry: Entry) -> list[Member]:
        strategy = queue.config.strategy
        members = sorted(queue.members.values(), key=lambda m: m.order)
        scored: list[tuple[float, Member]] = []
        now = self.core.clock.now()
        for pos, m in enumerate(members):
            if not self._available(queue, m):
                continue
            if strategy == "linear":
                metric = float(pos) if pos >= entry.linpos else 1000.0 + pos
            elif strategy in ("rrmemory", "rrordered", "roundrobin"):
                metric = float(pos) if pos >= queue.rrpos else 1000.0 + pos
            elif strategy == "leastrecent":
                metric = 0.0 if not m.lastcall else 1_000_000.0 - (now - m.lastcall)
            elif strategy == "fewestcalls":
                metric = float(m.calls)
            elif strategy == "random":
                metric = self.core.random.random() * 1000
            else:  # ringall
                metric = 0.0
            metric += m.penalty * 1_000_000.0
            scored.append((metric, m))
        if not scored:
            return []
        scored.sort(key=lambda pair: pair[0])
        if strategy == "ringall":
            best = scored[0][0]
            return [m for metric, m in scored if metric == best]
        return [scored[0][1]]

    # -- the Queue() application ---------------------------------------------------------------

    async def queue_app(self, chan: Channel, data: str) -> str:
        args = split_args(data)
        qname = args[0].strip()
        timeout_arg = args[4].strip() if len(args) > 4 else ""
        queue = self.queues.get(qname)
        core = self.core
        if queue is None:
            core.set_var(chan, "QUEUESTATUS", "UNKNOWN")
            return AppResult.NEXT
        for var in (
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "QUEUEWAIT",
            "QUEUEWAIT_MS",
        ):
            core.set_var(chan, var, "")
        prio_text = chan.variables.get("QUEUE_PRIO", "0").strip()
        prio = int(prio_text) if prio_text.lstrip("-").isdigit() else 0
        if queue.config.maxlen and len(queue.entries) >= queue.config.maxlen:
            core.set_var(chan, "QUEUESTATUS", "FULL")
            return AppResult.NEXT
        if self._empty(queue, queue.config.joinempty, _JOINEMPTY):
            core.set_var(chan, "QUEUESTATUS", "JOINEMPTY")
            return AppResult.NEXT
        now = core.clock.now()
        entry = Entry(chan, prio, now, options=args[1] if len(args) > 1 else "")
        index = len(queue.entries)
        for i, other in enumerate(queue.entries):
            if other.prio < prio:
                index = i
                break
        queue.entries.insert(index, entry)
        entry.original_pos = index + 1
        core.chan_event(
            "QueueCallerJoin",
            chan,
            [("Queue", qname), ("Position", str(index + 1)), ("Count", str(len(queue.entries)))],
            "agent,all",
        )
        core.chan_event("MusicOnHoldStart", chan, [("Class", queue.config.musicclass)])
        timeout = float(timeout_arg) if timeout_arg.isdigit() and int(timeout_arg) > 0 else None
        deadline = now + timeout if timeout is not None else None
        try:
            outcome = await self._wait_and_ring(queue, entry, deadline)
        except ChannelHungUp:
            self._abandon(queue, entry)
            raise
        except ChannelInterrupted:
            # TIMEOUT(absolute) or Redirect: app_queue sees a soft hangup and
            # records an abandon before the dialplan moves on.
            self._abandon(queue, entry)
            raise
        if outcome == "CONNECTED":
            return AppResult.HANGUP
        core.chan_event("MusicOnHoldStop", chan)
        self._leave(queue, entry)
        core.set_var(chan, "QUEUESTATUS", outcome)
        return AppResult.NEXT

    def _leave(self, queue: Queue, entry: Entry) -> None:
        if entry not in queue.entries:
            return
        pos = queue.position(entry)
        queue.entries.remove(entry)
        self.core.chan_event(
            "QueueCallerLeave",
            entry.chan,
            [("Queue", queue.name), ("Position", str(pos)), ("Count", str(len(queue.entries)))],
            "agent,all",
        )

    def _abandon(self, queue: Queue, entry: Entry) -> None:
        if entry not in queue.entries:
            return
        core = self.core
        core.chan_event("MusicOnHoldStop", entry.chan)
        pos = queue.position(entry)
        hold = int(core.clock.now() - entry.joined)
        core.chan_event(
            "QueueCallerAbandon",
            entry.chan,
            [
                ("Queue", queue.name),
                ("Position", str(pos)),
                ("OriginalPosition", str(entry.original_pos)),
                ("HoldTime", str(hold)),
            ],
            "agent,all",
        )
        queue.abandoned += 1
        self._leave(queue, entry)

    async def _wait_and_ring(self, queue: Queue, entry: Entry, deadline: float | None) -> str:
        core = self.core
        chan = entry.chan

        def remaining() -> float | None:
            return None if deadline is None else deadline - core.clock.now()

        while True:
            left = remaining()
            if left is not None and left <= 0:
                return "TIMEOUT"
            if self._empty(queue, queue.config.leavewhenempty, _LEAVEWHENEMPTY):
                return "LEAVEEMPTY"
            if not self._is_our_turn(queue, entry):
                await chan.wait(1.0 if left is None else min(1.0, left))
                continue
            if await self._try_calling(queue, entry, remaining()):
                return "CONNECTED"
            left = remaining()
            if left is not None and left <= 0:
                return "TIMEOUT"
            retry = float(queue.config.retry)
            await chan.wait(retry if left is None else min(retry, left))

    async def _try_calling(self, queue: Queue, entry: Entry, left: float | None) -> bool:
        core = self.core
        chan = entry.chan
        members = self._candidates(queue, entry)
        if not members:
            return False
        entry.pending = True
        rung: list[tuple[Member, Channel, float]] = []
        try:
            for m in members:
                tech, _, resource = m.interface.partition("/")

                def called(peer: Channel, m: Member = m) -> None:
                    self._agent_event("AgentCalled", queue, m, chan, peer)

                status, peer = core.start_ring(
                    chan, resource, app="AppQueue", dialstring=resource, on_created=called
                )
                if peer is None:
                    continue
                rung.append((m, peer, core.clock.now()))
            if queue.config.strategy in ("rrmemory", "rrordered", "roundrobin"):
                ordered = sorted(queue.members.values(), key=lambda x: x.order)
                queue.rrpos = ordered.index(members[-1]) + 1 if members[-1] in ordered else 0
                if queue.rrpos >= len(ordered):
                    queue.rrpos = 0
            if queue.config.strategy == "linear":
                ordered = sorted(queue.members.values(), key=lambda x: x.order)
                if members[0] in ordered:
                    entry.linpos = ordered.index(members[0]) + 1
            if not rung:
                return False
            ring_timeout = float(queue.config.timeout) if queue.config.timeout else None
            if left is not None:
                ring_timeout = left if ring_timeout is None else min(ring_timeout, left)
            answers = [(core.answer_delay(peer), m, peer, t0) for m, peer, t0 in rung]
            in_time = [
                a
                for a in answers
                if a[0] is not None and (ring_timeout is None or a[0] <= ring_timeout)
            ]
            winner = min(in_time, key=lambda a: a[0]) if in_time else None  # type: ignore[arg-type,return-value]
            wait_for = winner[0] if winner is not None else ring_timeout
            try:
                await chan.wait(wait_for)
            except ChannelInterrupted:
                for _, peer, _ in rung:
                    core.end_ring(chan, peer, "CANCEL", 0)
                raise
            # a rung phone might have rejected meanwhile
            if winner is None or winner[2].gone:
                for m, peer, t0 in rung:
                    if peer.gone:
                        continue
                    ring_ms = int(round((core.clock.now() - t0) * 1000))
                    self._agent_event(
                        "AgentRingNoAnswer", queue, m, chan, peer, [("RingTime", str(ring_ms))]
                    )
                    core.dial_event("DialEnd", chan, peer, [("DialStatus", "NOANSWER")])
                    core.end_ring(chan, peer, "CANCEL", 0)
                    self._autopause(queue, m)
                return False
            _, member, peer, t0 = winner
            core.answer_ring(chan, peer)
            for _, other, _ in rung:
                if other is not peer:
                    core.end_ring(chan, other, "CANCEL", 26)
        finally:
            entry.pending = False
        await self._connect(queue, entry, member, peer, t0)
        return True

    def _autopause(self, queue: Queue, m: Member) -> None:
        mode = queue.config.autopause.lower()
        if mode in ("yes", "1", "true"):
            self.pause_member(queue.name, m.interface, True, "Auto-Pause")
        elif mode == "all":
            self.pause_member(None, m.interface, True, "Auto-Pause")

    def _agent_event(
        self,
        name: str,
        queue: Queue,
        m: Member,
        chan: Channel,
        peer: Channel,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        self.core.emit(
            name,
            "agent,all",
            [
                *chan.snapshot(),
                *peer.snapshot("Dest"),
                ("Queue", queue.name),
                ("Interface", m.interface),
                ("MemberName", m.name),
                *(extra or []),
            ],
        )

    async def _connect(
        self, queue: Queue, entry: Entry, member: Member, peer: Channel, rang_at: float
    ) -> None:
        core = self.core
        chan = entry.chan
        ring_time = int(core.clock.now() - rang_at)
        hold = int(core.clock.now() - entry.joined)
        try:
            if queue.config.reportholdtime:
                # "the estimated hold time is..." is played to the agent first
                await chan.wait(1.1 if hold < 2 else 3.1)
        except ChannelInterrupted:
            self._abandon(queue, entry)
            if not peer.gone:
                core.destroy(peer, 16)
            raise
        hold = int(core.clock.now() - entry.joined)
        core.chan_event("MusicOnHoldStop", chan)
        for name, value in (
            ("MEMBERINTERFACE", member.interface),
            ("MEMBERNAME", member.name),
            ("MEMBERCALLS", str(member.calls)),
            ("MEMBERLASTCALL", str(int(member.lastcall))),
            ("MEMBERPENALTY", str(member.penalty)),
            ("MEMBERDYNAMIC", "1" if member.dynamic else "0"),
        ):
            core.set_var(chan, name, value)
        self._leave(queue, entry)
        queue.holdtime = (queue.holdtime * 3 + hold) // 4
        core.set_var(chan, "QUEUEWAIT", str(hold))
        member.incall = True
        self._agent_event(
            "AgentConnect",
            queue,
            member,
            chan,
            peer,
            [("HoldTime", str(hold)), ("RingTime", str(ring_time))],
        )
        if chan.state != UP:
            core.set_state(chan, UP)
        started = core.clock.now()

        def complete(ender: Channel, why: str | None) -> None:
            talk = int(core.clock.now() - started)
            reason = why or ("caller" if ender is chan else "agent")
            self._agent_event(
                "AgentComplete",
                queue,
                member,
                chan,
                peer,
                [("HoldTime", str(hold)), ("TalkTime", str(talk)), ("Reason", reason)],
            )
            now = core.clock.now()
            member.calls += 1
            member.lastcall = now
            member.incall = False
            if core.config.shared_lastcall:
                for other in self.queues.values():
                    om = other.members.get(member.interface)
                    if om is not None and om is not member:
                        om.lastcall = now
            queue.completed += 1
            if not queue.config.servicelevel or hold <= queue.config.servicelevel:
                queue.completed_in_sl += 1
            queue.talktime = (queue.talktime * 3 + talk) // 4

        # t: the agent may transfer her; T: she may transfer the agent
        peer.can_transfer = "t" in entry.options
        chan.can_transfer = "T" in entry.options
        await core.bridge_pair(chan, peer, on_end=complete)

    # -- AMI views ---------------------------------------------------------------------------

    def status_events(
        self, qname: str | None, member_filter: str | None
    ) -> list[tuple[str, list[tuple[str, str]]]]:
        out: list[tuple[str, list[tuple[str, str]]]] = []
        now = self.core.clock.now()
        for queue in self.queues.values():
            if qname and queue.name != qname:
                continue
            c = queue.config
            perf = 100.0 * queue.completed_in_sl / queue.completed if queue.completed else 0.0
            total = queue.completed + queue.abandoned
            perf2 = 100.0 * queue.completed_in_sl / total if total else 0.0
            out.append(
                (
                    "QueueParams",
                    [
                        ("Queue", queue.name),
                        ("Max", str(c.maxlen)),
                        ("Strategy", c.strategy),
                        ("Calls", str(len(queue.entries))),
                        ("Holdtime", str(queue.holdtime)),
                        ("TalkTime", str(queue.talktime)),
                        ("Completed", str(queue.completed)),
                        ("Abandoned", str(queue.abandoned)),
                        ("ServiceLevel", str(c.servicelevel)),
                        ("ServicelevelPerf", f"{perf:.1f}"),
                        ("ServicelevelPerf2", f"{perf2:.1f}"),
                        ("Weight", str(c.weight)),
                    ],
                )
            )
            for m in queue.members.values():
                if member_filter and m.name != member_filter and m.interface != member_filter:
                    continue
                out.append(
                    (
                        "QueueMember",
                        [
                            ("Queue", queue.name),
                            ("Name", m.name),
                            ("Location", m.interface),
                            ("StateInterface", m.state_interface),
                            ("Membership", "dynamic" if m.dynamic else "static"),
                            ("Penalty", str(m.penalty)),
                            ("CallsTaken", str(m.calls)),
                            ("LastCall", str(int(m.lastcall))),
                            ("LastPause", str(int(m.lastpause))),
                            ("LoginTime", str(int(m.logintime))),
                            ("InCall", "1" if m.incall else "0"),
                            ("Status", str(m.status)),
                            ("Paused", "1" if m.paused else "0"),
                            ("PausedReason", m.reason),
                            ("Wrapuptime", str(m.wrapuptime)),
                        ],
                    )
                )
            for pos, e in enumerate(queue.entries, 1):
                ch = e.chan
                out.append(
                    (
                        "QueueEntry",
                        [
                            ("Queue", queue.name),
                            ("Position", str(pos)),
                            ("Channel", ch.name),
                            ("Uniqueid", ch.uniqueid),
                            ("CallerIDNum", ch.caller_num or "unknown"),
                            ("CallerIDName", ch.caller_name or "unknown"),
                            ("ConnectedLineNum", ch.conn_num or "unknown"),
                            ("ConnectedLineName", ch.conn_name or "unknown"),
                            ("Wait", str(int(now - e.joined))),
                            ("Priority", str(e.prio)),
                        ],
                    )
                )
        return out

    def summary_events(self, qname: str | None) -> list[tuple[str, list[tuple[str, str]]]]:
        out: list[tuple[str, list[tuple[str, str]]]] = []
        now = self.core.clock.now()
        for queue in self.queues.values():
            if qname and queue.name != qname:
                continue
            logged = sum(
                1 for m in queue.members.values() if m.status not in (INVALID, UNAVAILABLE)
            )
            available = sum(
                1 for m in queue.members.values() if not m.paused and self._status_ok(m)
            )
            longest = max((int(now - e.joined) for e in queue.entries), default=0)
            out.append(
                (
                    "QueueSummary",
                    [
                        ("Queue", queue.name),
                        ("LoggedIn", str(logged)),
                        ("Available", str(available)),
                        ("Callers", str(len(queue.entries))),
                        ("HoldTime", str(queue.holdtime)),
                        ("TalkTime", str(queue.talktime)),
                        ("LongestHoldTime", str(longest)),
                    ],
                )
            )
        return out
