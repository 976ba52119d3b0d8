"""The simulated PBX core: channels, events, device states, dialplan, apps, AsyncAGI, dialing.

No sockets here. :class:`PBXCore` publishes every AMI event to its sinks (the
AMI sessions) as ``(name, privilege, encoded bytes)``; the AMI server in
:mod:`callcenter.sim.server` only parses actions and calls methods of the core.
Event shapes and orders follow the Asterisk 22 traces in
``tests/fixtures/asterisk``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from callcenter.ami.encoder import encode_frame

from .channels import (
    CAUSE_TEXT,
    DOWN,
    RING,
    RINGING,
    UP,
    Bridge,
    Channel,
    ChannelHungUp,
    ChannelInterrupted,
    ChannelRedirected,
    ChannelTimedOut,
)
from .clock import Clock
from .config import Endpoint, PhoneBehaviour, SimConfig
from .dialplan import Dialplan, parse_extensions, split_app, split_args, substitute, truthy

if TYPE_CHECKING:
    from .queues import QueueEngine

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, bytes], None]
#: told when a dialled leg leaves its caller: (the channel that ended it, reason or None).
LegEnd = Callable[[Channel, str | None], None]

DEVICE_STATES = {
    0: "UNKNOWN",
    1: "NOT_INUSE",
    2: "INUSE",
    3: "BUSY",
    4: "INVALID",
    5: "UNAVAILABLE",
    6: "RINGING",
    7: "RINGINUSE",
    8: "ONHOLD",
}
NOT_INUSE, INUSE, BUSY, INVALID, UNAVAILABLE, RINGING_STATE, RINGINUSE = 1, 2, 3, 4, 5, 6, 7

# SIP responses chan_pjsip sends for a hangup cause (shown as TechCause).
_SIP_FOR_CAUSE = {1: 404, 17: 486, 19: 480, 21: 403, 34: 503}
_URI_SAFE = "!*'()"


@dataclass(frozen=True, slots=True)
class OriginateRecord:
    """One Originate as the PBX received it (simulator time)."""

    at: float
    target: str
    context: str
    exten: str
    variables: dict[str, str]
    application: str | None


class PeerLeft(ChannelInterrupted):
    """The other party of a bridge left it."""


class AppResult:
    NEXT = "next"
    GOTO = "goto"
    HANGUP = "hangup"


class PBXCore:
    def __init__(self, config: SimConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.dialplan: Dialplan = parse_extensions(config.dialplan)
        self.endpoints: dict[str, Endpoint] = {e.name: e for e in config.endpoints}
        self.phones: dict[str, PhoneBehaviour] = {e.name: e.phone for e in config.endpoints}
        self.channels: dict[str, Channel] = {}
        self.by_uniqueid: dict[str, Channel] = {}
        self.astdb: dict[str, str] = {}
        #: global variables set by AMI Setvar without a channel.
        self.globals: dict[str, str] = {}
        self.sinks: list[EventSink] = []
        #: in-process observers of every event (name, headers): actors, invariant checks.
        self.listeners: list[Callable[[str, list[tuple[str, str]]], None]] = []
        #: observers of one channel's events, by Uniqueid (synthetic callers).
        self.channel_listeners: dict[str, Callable[[str, list[tuple[str, str]]], None]] = {}
        self.by_device: dict[str, set[Channel]] = {}
        self.started = self.clock.now()
        self.reloaded = self.started
        self.processed_calls = config.processed_calls
        self._uid_seq = itertools.count(
            config.first_sequence if config.first_uniqueid is None else config.first_uniqueid
        )
        self._pjsip_seq = itertools.count(config.first_sequence)
        self._local_seq = itertools.count(0)
        self._device_cache: dict[str, int] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self.events_emitted = 0
        #: Every Originate the PBX accepted, in order: what tests count "who was dialled" on.
        self.originate_log: list[OriginateRecord] = []
        self.random = random.Random(0)
        self.queues: QueueEngine | None = None
        #: called with every finished call leg (for statistics and invariants).
        self.on_hangup: list[Callable[[Channel], None]] = []
        #: live bridges by BridgeUniqueid (audio paths, transfers, CoreShowChannels).
        self.bridges: dict[str, Bridge] = {}
        #: dialled legs whose end the application reports (Queue's AgentComplete):
        #: leg channel -> (the channel whose thread dialled it, callback(ender, reason)).
        self.legs: dict[Channel, tuple[Channel, LegEnd]] = {}
        from .conference import Conferences
        from .spy import Spying
        from .transfers import Transfers

        self.transfers = Transfers(self)
        self.conferences = Conferences(self)
        self.spying = Spying(self)

    # -- events -----------------------------------------------------------------

    def emit(
        self,
        name: str,
        privilege: str,
        headers: Iterable[tuple[str, str]],
        *,
        timestamp: bool = True,
    ) -> None:
        pairs: list[tuple[str, str]] = [("Privilege", privilege)]
        if timestamp and self.config.timestampevents:
            pairs.append(("Timestamp", f"{self.clock.now():.6f}"))
        pairs.extend(headers)
        self.events_emitted += 1
        for listener in self.listeners:
            listener(name, pairs)
        if self.channel_listeners:
            uniqueid = next((v for k, v in pairs if k == "Uniqueid"), None)
            callback = self.channel_listeners.get(uniqueid) if uniqueid else None
            if callback is not None:
                callback(name, pairs)
        if not self.sinks:
            return
        data = encode_frame(("Event", name), pairs)
        for sink in list(self.sinks):
            sink(name, privilege, data)

    def chan_event(
        self,
        name: str,
        chan: Channel,
        extra: Iterable[tuple[str, str]] = (),
        privilege: str = "call,all",
    ) -> None:
        self.emit(name, privilege, [*chan.snapshot(), *extra])

    def spawn(self, coro: Awaitable[object]) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task failed", exc_info=task.exception())

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- channels ---------------------------------------------------------------

    def _uniqueid(self) -> str:
        return f"{int(self.clock.now())}.{next(self._uid_seq)}"

    def new_channel(
        self,
        tech: str,
        resource: str,
        *,
        state: int,
        caller_num: str,
        caller_name: str,
        context: str,
        exten: str,
        linkedid: str | None = None,
        name: str | None = None,
    ) -> Channel:
        if name is None:
            name = f"{tech}/{resource}-{next(self._pjsip_seq):08x}"
        chan = Channel(
            self,
            name,
            self._uniqueid(),
            tech=tech,
            resource=resource,
            state=state,
            caller_num=caller_num,
            caller_name=caller_name,
            context=context,
            exten=exten,
            linkedid=linkedid,
        )
        self.channels[chan.name] = chan
        self.by_uniqueid[chan.uniqueid] = chan
        self.by_device.setdefault(chan.endpoint, set()).add(chan)
        self.chan_event("Newchannel", chan)
        self.device_changed(chan.endpoint)
        return chan

    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def set_state(self, chan: Channel, state: int) -> None:
        if chan.state == state:
            return
        chan.state = state
        if state == UP and chan.answered_at is None:
            chan.answered_at = self.clock.now()
            chan.answered_event.set()
        self.chan_event("Newstate", chan)
        self.device_changed(chan.endpoint)

    def set_var(self, chan: Channel, name: str, value: str, *, event: bool = True) -> None:
        chan.variables[name] = value
        if event:
            self.chan_event("VarSet", chan, [("Variable", name), ("Value", value)], "dialplan,all")

    def set_callerid(self, chan: Channel, num: str | None, name: str | None) -> None:
        if num is not None:
            chan.caller_num = num
        if name is not None:
            chan.caller_name = name
        self.chan_event(
            "NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")]
        )

    def set_connected(self, chan: Channel, num: str, name: str) -> None:
        chan.conn_num, chan.conn_name = num, name
        self.chan_event("NewConnectedLine", chan)

    def remote_hangup(self, chan: Channel, cause: int | None = None) -> None:
        """The far end hung up (a BYE from the phone, or the other half of a Local channel)."""
        if chan.gone or chan.soft_hangup:
            return
        chan.remote_hangup = True
        extra = [("Cause", str(cause))] if cause is not None else []
        if cause is not None and not chan.hangup_cause:
            chan.hangup_cause = cause
        self.chan_event("HangupRequest", chan, extra)
        chan.interrupt(ChannelHungUp())
        if self._notify_bridge(chan):
            return
        if chan.pbx_task is None and chan.bridge is None and not chan.in_dial:
            self.destroy(chan)

    def request_hangup(self, chan: Channel, cause: int = 16) -> None:
        """AMI Hangup / AGI HANGUP: a soft hangup of the channel's thread."""
        if chan.gone:
            return
        chan.hangup_cause = cause
        if chan.tech == "PJSIP" and cause in _SIP_FOR_CAUSE:
            chan.tech_cause = _SIP_FOR_CAUSE[cause]
        self.chan_event("SoftHangupRequest", chan, [("Cause", "16")])
        chan.softhangup_sent = True
        chan.interrupt(ChannelHungUp())
        if self._notify_bridge(chan):
            return
        if chan.pbx_task is None and chan.bridge is None and not chan.in_dial:
            self.destroy(chan)

    def _notify_bridge(self, chan: Channel) -> bool:
        """A bridged channel hangs up: whoever runs its bridge deals with it."""
        bridge = chan.bridge
        if bridge is None:
            return False
        if bridge.watcher is not None:
            bridge.watcher(chan)
            return True
        owner = bridge.owner
        if owner is not None and owner is not chan and not owner.gone:
            owner.interrupt(PeerLeft())
            return True
        return False

    # -- bridges ------------------------------------------------------------------

    def new_bridge(
        self,
        *,
        bridge_type: str = "basic",
        creator: str = "<unknown>",
        name: str = "<unknown>",
        technology: str | None = None,
    ) -> Bridge:
        bridge = Bridge(
            str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            bridge_type=bridge_type,
            creator=creator,
            name=name,
            technology=technology,
        )
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call,all", bridge.headers(0))
        return bridge

    def bridge_enter(self, bridge: Bridge, chan: Channel) -> None:
        bridge.channels.append(chan)
        chan.bridge = bridge
        chan.bridge_owner = bridge.owner if bridge.owner is not chan else None
        self.emit("BridgeEnter", "call,all", [*bridge.headers(), *chan.snapshot()])

    def bridge_leave(self, bridge: Bridge, chan: Channel) -> None:
        if chan not in bridge.channels:
            return
        bridge.channels.remove(chan)
        if chan.bridge is bridge:
            chan.bridge = None
        self.emit("BridgeLeave", "call,all", [*bridge.headers(), *chan.snapshot()])

    def bridge_destroy(self, bridge: Bridge) -> None:
        if bridge.destroyed:
            return
        bridge.destroyed = True
        bridge.ended.set()
        self.bridges.pop(bridge.uniqueid, None)
        self.emit("BridgeDestroy", "call,all", bridge.headers(0))

    def bridge_merge(self, dest: Bridge, src: Bridge, kick: Channel | None = None) -> None:
        """bridge_do_merge: ``src``'s channels move into ``dest``; ``kick`` leaves instead."""
        self.emit(
            "BridgeMerge", "call,all", [*dest.headers(prefix="To"), *src.headers(prefix="From")]
        )
        if kick is not None:
            self.bridge_leave(src, kick)
        for chan in list(src.channels):
            self.bridge_leave(src, chan)
            self.bridge_enter(dest, chan)

    def end_leg(self, chan: Channel, ender: Channel, reason: str | None = None) -> None:
        """The dialled leg ``chan`` (or every leg ``chan``'s thread dialled) is over."""
        for leg, (owner, callback) in list(self.legs.items()):
            if leg is chan or owner is chan:
                del self.legs[leg]
                callback(ender, reason)

    def member_departed(self, bridge: Bridge, chan: Channel) -> None:
        """A threadless member hung up and leaves a bridge that goes on without it."""
        self.end_leg(chan, chan)
        self.bridge_leave(bridge, chan)
        if not chan.gone and chan.pbx_task is None:
            self.destroy(chan, 16)

    def watch_plain(self, bridge: Bridge) -> None:
        """A bridge nobody's thread runs: it dissolves when one party is left."""
        bridge.owner = None

        def member_hung_up(chan: Channel) -> None:
            self.member_departed(bridge, chan)
            alive = [c for c in bridge.channels if not c.soft_hangup]
            if len(alive) > 1:
                return
            for other in list(bridge.channels):
                self.end_leg(other, chan)
                self.bridge_leave(bridge, other)
                if other.pbx_task is None:
                    self.destroy(other, 16)
                else:
                    other.interrupt(PeerLeft())
            self.bridge_destroy(bridge)

        bridge.watcher = member_hung_up

    def redirect(self, chan: Channel, target: tuple[str, str, int]) -> None:
        """ast_async_goto: the channel leaves what it does (a bridge too) and runs ``target``."""
        if chan.pbx_task is not None:
            chan.redirect_to = target
            chan.interrupt(ChannelRedirected())
            return
        bridge = chan.bridge
        if bridge is not None:
            self.end_leg(chan, chan)
            self.bridge_leave(bridge, chan)
            if bridge.owner is not None and bridge.owner in bridge.channels:
                # the two-party bridge it leaves dissolves (unless its owner moves too)
                bridge.owner.interrupt(PeerLeft())
            elif bridge.watcher is None and len(bridge.channels) <= 1:
                for other in list(bridge.channels):
                    self.bridge_leave(bridge, other)
                    if other.pbx_task is None:
                        self.destroy(other, 16)
                self.bridge_destroy(bridge)
        chan.bridge_owner = None
        chan.context, chan.exten, chan.priority = target
        chan.redirect_to = None
        self.start_pbx(chan)

    def destroy(self, chan: Channel, cause: int | None = None) -> None:
        """The channel is gone: the Hangup event, device state, Local peer."""
        if chan.gone:
            return
        chan.gone = True
        chan.soft_hangup = True
        if cause is not None and not chan.hangup_cause:
            chan.hangup_cause = cause
        if chan.timeout_handle is not None:
            chan.timeout_handle.cancel()
        extra = [
            ("Cause", str(chan.hangup_cause)),
            ("Cause-txt", CAUSE_TEXT.get(chan.hangup_cause, "Unknown")),
        ]
        if chan.tech_cause is not None:
            extra.append(("TechCause", str(chan.tech_cause)))
        self.chan_event("Hangup", chan, extra)
        self.channels.pop(chan.name, None)
        self.by_uniqueid.pop(chan.uniqueid, None)
        self.by_device.get(chan.endpoint, set()).discard(chan)
        chan.gone_event.set()
        self.device_changed(chan.endpoint)
        peer = chan.local_peer
        if peer is not None and not peer.gone:
            self.remote_hangup(peer, chan.hangup_cause or 16)
        for callback in self.on_hangup:
            callback(chan)

    # -- device state -----------------------------------------------------------

    def device_state(self, device: str) -> int:
        tech, _, resource = device.partition("/")
        if tech == "PJSIP":
            phone = self.phones.get(resource)
            if resource not in self.endpoints:
                return INVALID
            if phone is not None and not phone.registered:
                return UNAVAILABLE
        inuse = ringing = False
        for chan in self.by_device.get(device, ()):
            if chan.state == UP or chan.state == RING:
                inuse = True
            else:
                ringing = True
        if inuse and ringing:
            return RINGINUSE
        if ringing:
            return RINGING_STATE
        if inuse:
            return INUSE
        return NOT_INUSE

    def device_changed(self, device: str) -> None:
        state = self.device_state(device)
        if self._device_cache.get(device) == state:
            return
        self._device_cache[device] = state
        if self.queues is not None:
            self.queues.device_changed(device, state)
        self.emit(
            "DeviceStateChange", "call,all", [("Device", device), ("State", DEVICE_STATES[state])]
        )

    # -- variables and functions ---------------------------------------------------

    def resolver(self, chan: Channel) -> Callable[[str], str]:
        return lambda expr: self.read(chan, expr)

    def read(self, chan: Channel, expr: str) -> str:
        """Value of a variable or dialplan function for ``chan`` (Getvar, ${...})."""
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", expr, re.S)
        if m is None:
            return self._builtin_var(chan, expr)
        func, arg = m.group(1).upper(), m.group(2)
        if func == "CALLERID":
            what = arg.lower()
            if what == "num":
                return chan.caller_num
            if what == "name":
                return chan.caller_name
            if what == "all":
                return f'"{chan.caller_name}" <{chan.caller_num}>'
            return ""
        if func == "CONNECTEDLINE":
            return chan.conn_num if arg.lower() == "num" else chan.conn_name
        if func == "DB":
            return self.astdb.get(arg.strip("/"), "")
        if func == "DB_EXISTS":
            found = arg.strip("/") in self.astdb
            chan.variables["DB_RESULT"] = self.astdb.get(arg.strip("/"), "")
            return "1" if found else "0"
        if func == "LEN":
            return str(len(arg))
        if func == "ISNULL":
            return "1" if arg == "" else "0"
        if func == "EXISTS":
            return "0" if arg == "" else "1"
        if func == "IF":
            cond, _, rest = arg.partition("?")
            yes, _, no = rest.partition(":")
            return yes if truthy(cond.strip()) else no
        if func == "TIMEOUT":
            return chan.variables.get("__TIMEOUT_ABSOLUTE", "0")
        if func == "QUEUE_MEMBER" and self.queues is not None:
            qname, _, option = arg.partition(",")
            return self.queues.member_function(qname, option)
        return ""

    def _builtin_var(self, chan: Channel, name: str) -> str:
        if name in chan.variables:
            return chan.variables[name]
        if name in self.globals:
            return self.globals[name]
        if name in self.dialplan.globals:
            return self.dialplan.globals[name]
        builtin = {
            "EPOCH": lambda: str(int(self.clock.now())),
            "UNIQUEID": lambda: chan.uniqueid,
            "LINKEDID": lambda: chan.linkedid,
            "CHANNEL": lambda: chan.name,
            "EXTEN": lambda: chan.exten,
            "CONTEXT": lambda: chan.context,
            "PRIORITY": lambda: str(chan.priority),
            "CALLERID(num)": lambda: chan.caller_num,
            "HANGUPCAUSE": lambda: str(chan.hangup_cause),
        }
        getter = builtin.get(name)
        return getter() if getter else ""

    def write(self, chan: Channel, name: str, value: str) -> None:
        """``Set(name=value)``: channel variables and the writable functions."""
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", name)
        if m is None:
            self.set_var(chan, name.lstrip("_"), value)
            return
        func, arg = m.group(1).upper(), m.group(2).lower()
        if func == "CALLERID":
            if arg == "num":
                self.set_callerid(chan, value, None)
            elif arg == "name":
                self.set_callerid(chan, None, value)
            elif arg == "all":
                num, cname = parse_callerid(value)
                self.set_callerid(chan, num, cname)
        elif func == "TIMEOUT" and arg == "absolute":
            self.set_absolute_timeout(chan, float(value or 0))
        elif func == "DB":
            self.astdb[m.group(2).strip("/")] = value
        else:
            self.set_var(chan, name, value)

    def set_absolute_timeout(self, chan: Channel, seconds: float) -> None:
        if chan.timeout_handle is not None:
            chan.timeout_handle.cancel()
            chan.timeout_handle = None
        chan.variables["__TIMEOUT_ABSOLUTE"] = (
            str(int(seconds)) if seconds == int(seconds) else str(seconds)
        )
        if seconds > 0:
            chan.timeout_handle = self.clock.call_later(
                seconds, lambda: chan.interrupt(ChannelTimedOut())
            )

    # -- inbound calls and the PBX thread -----------------------------------------

    def inbound_call(
        self,
        endpoint: str,
        exten: str,
        *,
        caller_num: str | None = None,
        caller_name: str | None = None,
        variables: dict[str, str] | None = None,
    ) -> Channel:
        """A call arrives from a PJSIP endpoint (a synthetic caller) and runs the dialplan."""
        ep = self.endpoints[endpoint]
        chan = self.new_channel(
            "PJSIP",
            endpoint,
            state=RING,
            caller_num=ep.caller_num if caller_num is None else caller_num,
            caller_name=ep.caller_name if caller_name is None else caller_name,
            context=ep.context,
            exten=exten,
        )
        self.processed_calls += 1
        self.set_var(chan, "SIPDOMAIN", "127.0.0.1")
        for name, value in (variables or {}).items():
            # e.g. a trunk's X-headers read into variables before the dialplan
            self.set_var(chan, name, value)
        self.start_pbx(chan)
        return chan

    def start_pbx(self, chan: Channel) -> None:
        chan.pbx_task = self.spawn(self.run_pbx(chan))  # type: ignore[assignment]

    async def run_pbx(self, chan: Channel) -> None:
        try:
            await self._run_dialplan(chan)
        finally:
            await self._run_h(chan)
            self._end_of_pbx(chan)

    async def _run_dialplan(self, chan: Channel) -> None:
        while not chan.soft_hangup:
            ext = self.dialplan.find(chan.context, chan.exten)
            if ext is None or chan.priority not in ext.priorities:
                if ext is None and chan.priority == 1 and self.dialplan.exists(chan.context, "i"):
                    chan.exten = "i"
                    continue
                return
            app, args = ext.priorities[chan.priority]
            try:
                chan.check()
                data = substitute(args, self.resolver(chan))
                chan.app, chan.appdata = app, data
                self.chan_event(
                    "Newexten",
                    chan,
                    [("Extension", chan.exten), ("Application", app), ("AppData", data)],
                    "dialplan,all",
                )
                result = await self.exec_app(chan, app, data)
            except ChannelHungUp:
                return
            except ChannelTimedOut:
                chan.clear_interrupt()
                if self.dialplan.exists(chan.context, "T"):
                    chan.exten, chan.priority = "T", 1
                    continue
                chan.hangup_cause = chan.hangup_cause or 16
                return
            except ChannelRedirected:
                chan.clear_interrupt()
                if chan.redirect_to is not None:
                    chan.context, chan.exten, chan.priority = chan.redirect_to
                    chan.redirect_to = None
                continue
            if result == AppResult.HANGUP:
                return
            if result == AppResult.NEXT:
                chan.priority += 1

    async def _run_h(self, chan: Channel) -> None:
        if not self.dialplan.exists(chan.context, "h") or chan.exten == "h":
            return
        chan.exten, chan.priority = "h", 1
        ext = self.dialplan.find(chan.context, "h")
        assert ext is not None
        while chan.priority in ext.priorities:
            app, args = ext.priorities[chan.priority]
            data = substitute(args, self.resolver(chan))
            self.chan_event(
                "Newexten",
                chan,
                [("Extension", "h"), ("Application", app), ("AppData", data)],
                "dialplan,all",
            )
            if app.lower() in (
                "set",
                "noop",
                "execif",
                "gotoif",
                "mixmonitor",
                "stopmixmonitor",
                "hangup",
            ):
                try:
                    result = await self.exec_app(chan, app, data)
                except ChannelInterrupted:
                    result = AppResult.NEXT
                if result == AppResult.HANGUP:
                    break
                if result == AppResult.GOTO:
                    continue
            chan.priority += 1

    def _end_of_pbx(self, chan: Channel) -> None:
        if chan.gone:
            return
        if not chan.softhangup_sent:
            # the thread ends the call: after a far-end hangup, a bridge that
            # ended, or the end of the dialplan (autofallthrough)
            self.chan_event("SoftHangupRequest", chan, [("Cause", "16")])
            chan.softhangup_sent = True
            if not chan.remote_hangup:
                chan.hangup_cause = chan.hangup_cause or 16
        self.destroy(chan)

    # -- applications ---------------------------------------------------------------

    async def exec_app(self, chan: Channel, app: str, data: str) -> str:
        handler = getattr(self, "app_" + app.lower(), None)
        if handler is None:
            log.warning("simulated dialplan: application %s not supported, skipped", app)
            return AppResult.NEXT
        result: str = await handler(chan, data)
        return result

    async def app_noop(self, chan: Channel, data: str) -> str:
        return AppResult.NEXT

    async def app_answer(self, chan: Channel, data: str) -> str:
        if chan.state != UP:
            self.set_state(chan, UP)
            await chan.wait(self.config.answer_media_wait)
        return AppResult.NEXT

    async def app_hangup(self, chan: Channel, data: str) -> str:
        cause = int(data) if data.strip().isdigit() else 16
        chan.hangup_cause = chan.hangup_cause or cause
        chan.softhangup_sent = True
        self.chan_event("SoftHangupRequest", chan, [("Cause", str(cause))])
        chan.soft_hangup = True
        return AppResult.HANGUP

    async def app_wait(self, chan: Channel, data: str) -> str:
        await chan.wait(float(data or 0))
        return AppResult.NEXT

    async def app_echo(self, chan: Channel, data: str) -> str:
        await chan.wait(None)
        return AppResult.NEXT

    async def app_playback(self, chan: Channel, data: str) -> str:
        files = split_args(data)[0].split("&") if data else []
        for name in files:
            await chan.wait(self.sound_seconds(name))
        self.set_var(chan, "PLAYBACKSTATUS", "SUCCESS")
        return AppResult.NEXT

    async def app_set(self, chan: Channel, data: str) -> str:
        name, _, value = data.partition("=")
        self.write(chan, name.strip(), value)
        return AppResult.NEXT

    async def app_mixmonitor(self, chan: Channel, data: str) -> str:
        chan.mixmonitor = split_args(data)[0]
        self.set_var(chan, "MIXMONITOR_FILENAME", chan.mixmonitor)
        return AppResult.NEXT

    async def app_stopmixmonitor(self, chan: Channel, data: str) -> str:
        chan.mixmonitor = None
        return AppResult.NEXT

    async def app_goto(self, chan: Channel, data: str) -> str:
        self._goto(chan, data)
        return AppResult.GOTO

    async def app_gotoif(self, chan: Channel, data: str) -> str:
        cond, _, rest = data.partition("?")
        yes, _, no = rest.partition(":")
        target = yes if truthy(cond.strip()) else no
        if not target:
            return AppResult.NEXT
        self._goto(chan, target)
        return AppResult.GOTO

    async def app_execif(self, chan: Channel, data: str) -> str:
        cond, _, rest = data.partition("?")
        parts = split_args(rest, ":")
        chosen = parts[0] if truthy(cond.strip()) else (parts[1] if len(parts) > 1 else "")
        if not chosen:
            return AppResult.NEXT
        app, args = split_app(chosen)
        result = await self.exec_app(chan, app, args)
        return AppResult.HANGUP if result == AppResult.HANGUP else AppResult.NEXT

    async def app_gosub(self, chan: Channel, data: str) -> str:
        stack = chan.gosub_stack
        target = data
        args: list[str] = []
        if "(" in data and data.endswith(")"):
            target, _, argtext = data[:-1].partition("(")
            args = split_args(argtext)
        stack.append((chan.context, chan.exten, chan.priority + 1))
        for i, value in enumerate(args, 1):
            chan.variables[f"ARG{i}"] = value
        self._goto(chan, target)
        return AppResult.GOTO

    async def app_return(self, chan: Channel, data: str) -> str:
        stack = chan.gosub_stack
        if not stack:
            return AppResult.HANGUP
        chan.context, chan.exten, chan.priority = stack.pop()
        return AppResult.GOTO

    def _goto(self, chan: Channel, target: str) -> None:
        parts = [p.strip() for p in split_args(target)]
        if len(parts) == 3:
            chan.context, chan.exten = parts[0], parts[1]
        elif len(parts) == 2:
            chan.exten = parts[0]
        label = parts[-1]
        if label.isdigit():
            chan.priority = int(label)
            return
        ext = self.dialplan.find(chan.context, chan.exten)
        if ext is None or label not in ext.labels:
            raise ChannelHungUp()
        chan.priority = ext.labels[label]

    async def app_queue(self, chan: Channel, data: str) -> str:
        assert self.queues is not None
        return await self.queues.queue_app(chan, data)

    async def app_agi(self, chan: Channel, data: str) -> str:
        if not data.startswith("agi:async"):
            log.warning("simulated dialplan: only AGI(agi:async) is supported")
            return AppResult.NEXT
        from .agi import run_async_agi

        return await run_async_agi(self, chan)

    async def app_dial(self, chan: Channel, data: str) -> str:
        args = split_args(data)
        targets = [t for t in args[0].split("&") if t]
        timeout = float(args[1]) if len(args) > 1 and args[1].strip() else None
        if not targets:
            return AppResult.NEXT
        tech, _, resource = targets[0].partition("/")
        try:
            status, peer = await self.dial(
                chan, resource, ring_for=timeout, app="AppDial", dialstring=resource
            )
        except ChannelInterrupted:
            # app_dial: the caller hung up (or was taken away) while it rang: CANCEL, which
            # the h extension still sees.
            self.set_var(chan, "DIALSTATUS", "CANCEL")
            raise
        self.set_var(chan, "DIALSTATUS", status)
        if status != "ANSWER" or peer is None:
            return AppResult.NEXT
        other_half = chan.local_peer
        if other_half is not None:
            # Connected line crosses the Local channel: whoever is bridged with
            # the other half now sees the answered party, and that half takes
            # its caller id when the call is torn down.
            if other_half.bridge is not None:
                for bridged in other_half.bridge.channels:
                    if bridged is not other_half:
                        self.set_connected(bridged, peer.caller_num, peer.caller_name)
            other_half.pending_callerid = (peer.caller_num, peer.caller_name)
        options = args[2] if len(args) > 2 else ""
        # t: the called party may transfer; T: the caller may (features.conf codes)
        peer.can_transfer = "t" in options
        chan.can_transfer = "T" in options
        if chan.state != UP:
            # the bridge answers the caller first (as features.c pre_bridge_setup)
            self.set_state(chan, UP)
        # without the g option Dial ends the call whoever hung up first
        await self.bridge_pair(chan, peer)
        return AppResult.HANGUP

    async def app_confbridge(self, chan: Channel, data: str) -> str:
        return await self.conferences.app(chan, data)

    async def app_chanspy(self, chan: Channel, data: str) -> str:
        return await self.spying.app(chan, data)

    def audio_paths(self) -> set[tuple[str, str]]:
        """Who hears whom now: (listener, speaker) channel names, as the media would flow."""
        return self.spying.audio_paths()

    def sound_seconds(self, name: str) -> float:
        return self.config.sounds.get(name, self.config.default_sound_samples) / 8000.0

    # -- dialing and bridging ----------------------------------------------------------

    def start_ring(
        self,
        caller: Channel | None,
        resource: str,
        *,
        app: str,
        dialstring: str,
        on_created: Callable[[Channel], None] | None = None,
        variables: dict[str, str] | None = None,
        callerid: tuple[str | None, str | None] | None = None,
    ) -> tuple[str, Channel | None]:
        """Request a PJSIP channel to ``resource`` and ring it for ``caller``.

        Returns ("RINGING", channel), or ("BUSY"|"CHANUNAVAIL", None). ``caller``
        None is an Originate: DialBegin/DialState/DialEnd then carry only the
        Dest* part, as in the traces.
        """
        # PJSIP/agent1, or PJSIP/5550100@trunk (a number through a trunk endpoint)
        number, _, trunk = resource.rpartition("@")
        endpoint = trunk if number else resource
        ep = self.endpoints.get(endpoint)
        phone = self.phones.get(resource) or self.phones.get(endpoint)
        if ep is None or phone is None or not phone.registered:
            return "CHANUNAVAIL", None
        peer = self.new_channel(
            "PJSIP",
            endpoint,
            state=DOWN,
            caller_num=ep.caller_num,
            caller_name=ep.caller_name,
            context=ep.context,
            exten="s",
            linkedid=caller.linkedid if caller is not None else None,
        )
        peer.in_dial = True
        peer.dialed = resource
        if caller is None:
            self.chan_event(
                "Newexten",
                peer,
                [("Extension", "s"), ("Application", app), ("AppData", "(Outgoing Line)")],
                "dialplan,all",
            )
            for name, value in (variables or {}).items():
                self.set_var(peer, name, value)
            if callerid is not None:
                self.set_callerid(peer, callerid[0], callerid[1])
                self.set_connected(peer, peer.caller_num, peer.caller_name)
        else:
            self.set_var(peer, "DIALEDPEERNUMBER", resource)
        if on_created is not None:
            on_created(peer)
        self.dial_event("DialBegin", caller, peer, [("DialString", dialstring)])
        if caller is not None:
            self.set_connected(caller, peer.caller_num, peer.caller_name)
            peer.exten = caller.exten
            peer.conn_num, peer.conn_name = caller.caller_num, caller.caller_name
        if phone.busy:
            # 486 Busy Here from the phone
            self.end_ring(caller, peer, "BUSY", 17)
            return "BUSY", None
        self.set_state(peer, RINGING)
        if caller is not None:
            self.chan_event(
                "Newexten",
                peer,
                [("Extension", peer.exten), ("Application", app), ("AppData", "(Outgoing Line)")],
                "dialplan,all",
            )
            self.chan_event("NewConnectedLine", peer)
        self.dial_event("DialState", caller, peer, [("DialStatus", "RINGING")])
        return "RINGING", peer

    def dial_event(
        self, name: str, caller: Channel | None, peer: Channel, extra: list[tuple[str, str]]
    ) -> None:
        head = caller.snapshot() if caller is not None else []
        self.emit(name, "call,all", [*head, *peer.snapshot("Dest"), *extra])

    def answer_delay(self, peer: Channel) -> float | None:
        """When the phone rung on ``peer`` answers (None: it does not)."""
        phone = self.phones.get(peer.dialed) or self.phones.get(peer.resource)
        if phone is None:
            return None
        decide = getattr(phone, "decide", None)
        if callable(decide):
            result: float | None = decide(peer)
            return result
        return phone.answer_after

    def answer_ring(self, caller: Channel | None, peer: Channel) -> None:
        self.set_state(peer, UP)
        peer.in_dial = False
        self.dial_event("DialEnd", caller, peer, [("DialStatus", "ANSWER")])
        phone = self.phones.get(peer.dialed) or self.phones.get(peer.resource)
        # the phone's talk time runs from when the parties are connected
        peer.talk_time = phone.hangup_after if phone is not None else None
        if caller is None:
            self._start_talk_timer(peer)

    def _start_talk_timer(self, peer: Channel) -> None:
        talk = peer.talk_time
        if talk is not None:
            peer.talk_time = None
            self.clock.call_later(talk, lambda: self.remote_hangup(peer, 16))

    def end_ring(self, caller: Channel | None, peer: Channel, status: str, cause: int) -> None:
        """Stop ringing ``peer`` (DialEnd with ``status``) and hang the leg up."""
        if peer.gone:
            return
        self.dial_event("DialEnd", caller, peer, [("DialStatus", status)])
        peer.in_dial = False
        self.destroy(peer, cause)

    async def dial(
        self,
        caller: Channel | None,
        resource: str,
        *,
        ring_for: float | None,
        app: str,
        dialstring: str,
        variables: dict[str, str] | None = None,
        callerid: tuple[str | None, str | None] | None = None,
    ) -> tuple[str, Channel | None]:
        """Ring one endpoint until it answers or ``ring_for`` s; returns (DIALSTATUS, channel)."""
        timeout = ring_for
        status, peer = self.start_ring(
            caller, resource, app=app, dialstring=dialstring, variables=variables, callerid=callerid
        )
        if peer is None:
            return status, None
        answer_after = self.answer_delay(peer)
        waits = [t for t in (answer_after, timeout) if t is not None]
        try:
            if caller is not None:
                await caller.wait(min(waits) if waits else None)
            elif waits:
                await self.clock.sleep(min(waits))
            else:
                await peer.gone_event.wait()
        except ChannelInterrupted:
            self.end_ring(caller, peer, "CANCEL", 0)
            raise
        if peer.gone:
            return "CANCEL", None
        if answer_after is None or (timeout is not None and answer_after > timeout):
            self.end_ring(caller, peer, "NOANSWER", 19 if caller is None else 0)
            return "NOANSWER", None
        self.answer_ring(caller, peer)
        return "ANSWER", peer

    async def bridge_pair(
        self,
        owner: Channel,
        peer: Channel,
        *,
        creator_first: bool = False,
        on_end: LegEnd | None = None,
    ) -> Channel:
        """Bridge ``owner`` (whose thread runs this) with ``peer`` until she is alone.

        Returns the channel that ended the bridge. The peer (a dialled leg with
        no dialplan of its own) is hung up afterwards, as app_dial/app_queue do.
        Transfers and three-way calls change who else is in the bridge meanwhile;
        as bridge_basic's hangup hook does, a party leaving a bridge of three or
        more just leaves, and the bridge dissolves when one party is left.
        ``on_end`` is told once when the peer's leg ends (``reason`` is
        ``"transfer"`` when a transfer took it away).
        """
        bridge = self.new_bridge()
        bridge.owner = owner
        first, second = (owner, peer) if creator_first else (peer, owner)
        for chan in (first, second):
            self.bridge_enter(bridge, chan)
        self._start_talk_timer(peer)
        self.set_var(peer, "BRIDGEPEER", owner.name)
        self.set_var(owner, "BRIDGEPEER", peer.name)
        if on_end is not None:
            self.legs[peer] = (owner, on_end)
        ender: Channel = owner
        redirected: ChannelRedirected | None = None
        while True:
            try:
                await owner.wait(None)
            except PeerLeft:
                owner.clear_interrupt()
                if owner.redirect_to is not None:
                    redirected = ChannelRedirected()
                    break
                others = [c for c in bridge.channels if c is not owner]
                departed = [c for c in others if c.soft_hangup or c.gone]
                if len(others) > len(departed):
                    for chan in departed:
                        self.member_departed(bridge, chan)
                    continue
                ender = departed[0] if departed else peer
            except ChannelHungUp:
                ender = owner
                alive = [c for c in bridge.channels if c is not owner and not c.soft_hangup]
                if len(alive) >= 2:
                    # she leaves a three-way call; the others stay bridged
                    self.end_leg(owner, owner)
                    self.bridge_leave(bridge, owner)
                    self.watch_plain(bridge)
                    owner.hangup_cause = owner.hangup_cause or 16
                    return ender
            except ChannelRedirected as exc:
                redirected = exc
            break
        self.end_leg(owner, ender)
        if owner.pending_callerid is not None:
            self.set_callerid(owner, *owner.pending_callerid)
            owner.pending_callerid = None
        order = [ender] if ender in bridge.channels else []
        if owner not in order:
            order.append(owner)
        order += [c for c in bridge.channels if c not in order]
        members = [c for c in order if c in bridge.channels]
        for chan in members:
            self.bridge_leave(bridge, chan)
        self.bridge_destroy(bridge)
        for chan in members:
            if chan is not owner and not chan.gone and chan.pbx_task is None:
                self.destroy(chan, 16)
        if redirected is not None:
            raise redirected
        owner.hangup_cause = owner.hangup_cause or 16
        return ender

    # -- Originate ---------------------------------------------------------------------

    async def originate(
        self,
        action_id: str | None,
        target: str,
        *,
        context: str,
        exten: str,
        priority: int,
        ring_for: float,
        callerid: str | None,
        variables: dict[str, str],
        application: str | None = None,
        data: str = "",
    ) -> bool:
        """Originate a call; True when it was answered (OriginateResponse Success)."""
        self.originate_log.append(OriginateRecord(
            at=self.clock.now(), target=target, context=context, exten=exten,
            variables=dict(variables), application=application,
        ))
        timeout = ring_for
        tech, _, resource = target.partition("/")
        num, name = parse_callerid(callerid) if callerid else (None, None)
        if tech.lower() == "local":
            return await self._originate_local(
                action_id, resource, context, exten, priority, timeout, num, name, variables
            )
        status, chan = await self.dial(
            None,
            resource,
            ring_for=timeout,
            app="AppDial2",
            dialstring=resource,
            variables=variables,
            callerid=(num, name) if callerid else None,
        )
        if status != "ANSWER" or chan is None:
            reason = {"NOANSWER": "3", "BUSY": "5", "CHANUNAVAIL": "0"}.get(status, "0")
            self._originate_response(
                action_id, "Failure", target, context, exten, reason, None, num, name
            )
            return False
        chan.context, chan.exten, chan.priority = context, exten, priority
        self._originate_response(
            action_id, "Success", chan.name, context, exten, "4", chan, num, name
        )
        self.processed_calls += 1
        if application:
            self.spawn(self._run_application(chan, application, data))
        else:
            self.start_pbx(chan)
        return True

    async def _run_application(self, chan: Channel, application: str, data: str) -> None:
        """Originate with Application/Data: the app runs on the answered channel, then hangup."""
        chan.pbx_task = asyncio.current_task()  # type: ignore[assignment]
        chan.app, chan.appdata = application, data
        try:
            await self.exec_app(chan, application, data)
        except ChannelInterrupted:
            pass
        finally:
            self._end_of_pbx(chan)

    def _originate_response(
        self,
        action_id: str | None,
        response: str,
        channel: str,
        context: str,
        exten: str,
        reason: str,
        chan: Channel | None,
        num: str | None,
        name: str | None,
    ) -> None:
        headers: list[tuple[str, str]] = []
        if action_id is not None:
            headers.append(("ActionID", action_id))
        headers += [
            ("Response", response),
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Reason", reason),
            ("Uniqueid", chan.uniqueid if chan is not None else "<null>"),
            ("CallerIDNum", num or "<unknown>"),
            ("CallerIDName", name or "<unknown>"),
        ]
        self.emit("OriginateResponse", "call,all", headers)

    async def _originate_local(
        self,
        action_id: str | None,
        resource: str,
        context: str,
        exten: str,
        priority: int,
        ring_for: float,
        num: str | None,
        name: str | None,
        variables: dict[str, str],
    ) -> bool:
        timeout = ring_for
        lexten, _, lcontext = resource.partition("@")
        lcontext = lcontext.split("/")[0] or "default"
        base = f"Local/{lexten}@{lcontext}-{next(self._local_seq):08x}"
        one = self.new_channel(
            "Local",
            f"{lexten}@{lcontext}",
            state=DOWN,
            caller_num="",
            caller_name="",
            context=lcontext,
            exten=lexten,
            name=base + ";1",
        )
        two = self.new_channel(
            "Local",
            f"{lexten}@{lcontext}",
            state=RING,
            caller_num="",
            caller_name="",
            context=lcontext,
            exten=lexten,
            name=base + ";2",
            linkedid=one.linkedid,
        )
        one.local_peer, two.local_peer = two, one
        one.local_half, two.local_half = 1, 2
        one.in_dial = True
        self.chan_event(
            "Newexten",
            one,
            [("Extension", lexten), ("Application", "AppDial2"), ("AppData", "(Outgoing Line)")],
            "dialplan,all",
        )
        for var, value in variables.items():
            self.set_var(one, var, value)
            self.set_var(two, var, value)
        if num is not None or name is not None:
            self.set_callerid(one, num, name)
            self.set_connected(one, one.caller_num, one.caller_name)
            self.set_callerid(two, num, name)
            self.set_connected(two, one.caller_num, one.caller_name)
        self.emit(
            "LocalBridge",
            "call,all",
            [
                *[("LocalOne" + k[0:], v) for k, v in one.snapshot()],
                *[("LocalTwo" + k[0:], v) for k, v in two.snapshot()],
                ("Context", lcontext),
                ("Exten", lexten),
                ("LocalOptimization", "Yes"),
            ],
        )
        self.emit("DialBegin", "call,all", [*one.snapshot("Dest"), ("DialString", resource)])
        self.processed_calls += 1
        self.start_pbx(two)
        # The originate is answered when the ;2 half is answered by its dialplan.
        done = asyncio.ensure_future(two.answered_event.wait())
        gone = asyncio.ensure_future(two.gone_event.wait())
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.clock.call_later(timeout, lambda: expired.done() or expired.set_result(None))
        finished, pending = await asyncio.wait(
            {done, gone, expired}, return_when=asyncio.FIRST_COMPLETED
        )
        timer.cancel()
        for task in pending:
            task.cancel()
        if done not in finished or one.gone:
            if not one.gone:
                self.emit(
                    "DialEnd", "call,all", [*one.snapshot("Dest"), ("DialStatus", "NOANSWER")]
                )
                one.in_dial = False
                self.destroy(one, 19)
            self._originate_response(
                action_id, "Failure", f"Local/{resource}", context, exten, "3", None, num, name
            )
            return False
        self.set_state(one, UP)
        # Connected line crosses the Local channel: ;1 now shows who answered ;2.
        if two.conn_num or two.conn_name:
            self.set_callerid(one, two.conn_num, two.conn_name)
        self.emit("DialEnd", "call,all", [*one.snapshot("Dest"), ("DialStatus", "ANSWER")])
        one.in_dial = False
        one.context, one.exten, one.priority = context, exten, priority
        self._originate_response(
            action_id, "Success", one.name, context, exten, "4", one, num, name
        )
        self.start_pbx(one)
        return True

    # -- AstDB ----------------------------------------------------------------------------

    def db_put(self, family: str, key: str, value: str) -> None:
        self.astdb[f"{family}/{key}"] = value

    def db_get(self, family: str, key: str) -> str | None:
        return self.astdb.get(f"{family}/{key}")

    def db_del(self, family: str, key: str) -> bool:
        return self.astdb.pop(f"{family}/{key}", None) is not None

    # -- DTMF from the far end ------------------------------------------------------------

    async def send_dtmf(
        self, chan: Channel, digits: str, duration_ms: int = 280, gap: float = 0.14
    ) -> None:
        """RFC 4733 digits from the caller's phone: DTMFBegin, DTMFEnd, then the digit is read."""
        for digit in digits:
            if chan.gone:
                return
            self.chan_event(
                "DTMFBegin", chan, [("Digit", digit), ("Direction", "Received")], "dtmf,all"
            )
            await self.clock.sleep(gap)
            if chan.gone:
                return
            self.chan_event(
                "DTMFEnd",
                chan,
                [("Digit", digit), ("DurationMs", str(duration_ms)), ("Direction", "Received")],
                "dtmf,all",
            )
            chan.deliver_digit(digit)
            # a bridged phone's digits may be a feature code (atxfer abort, complete...)
            self.transfers.on_digit(chan, digit)


def parse_callerid(text: str) -> tuple[str | None, str | None]:
    """``"Name" <num>`` -> (num, name), as ast_callerid_parse."""
    text = text.strip()
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return m.group(2).strip() or None, m.group(1).strip() or None
    if re.fullmatch(r"[0-9+*#]+", text):
        return text, None
    return None, text or None


def uri_encode(text: str) -> str:
    return quote(text, safe=_URI_SAFE)
