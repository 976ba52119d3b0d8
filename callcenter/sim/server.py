"""The simulator's AMI server: sessions, login, and Asterisk's reply to every action.

Bytes in are parsed by :class:`callcenter.ami.AMIParser` (``expect_banner=False``)
and replies are encoded by :func:`callcenter.ami.encoder.encode_frame`; replies
are shaped header for header like the recorded ones in ``actions.ami`` and
``actions_misc.ami``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callcenter.ami.encoder import encode_frame
from callcenter.ami.errors import AMIProtocolError
from callcenter.ami.frame import Frame
from callcenter.ami.parser import AMIParser

from .channels import STATE_DESC, Channel
from .clock import Clock
from .config import PhoneBehaviour, SimConfig
from .core import PBXCore
from .filters import EventFilter, event_mask
from .queues import QueueEngine

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
#: a client that does not read its events is dropped, as Asterisk's writetimeout does.
MAX_PENDING_WRITE = 16 * 1024 * 1024

Pairs = list[tuple[str, str]]


class AMISession:
    def __init__(
        self, sim: SimPBX, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.parser = AMIParser(expect_banner=False)
        self.authenticated = False
        self.username = ""
        self.events_on = True
        self.filter = EventFilter()
        #: Asterisk 22 style filters of the logged-in user (see ManagerUser.filters).
        self.user_filters: Any = None
        self.challenge: str | None = None
        self.closing = False
        # Events raised by the action being handled: Asterisk sends the
        # response first (they are queued behind it), so hold them back.
        self._held: list[bytes] | None = None
        #: bytes written to / read from the client (a VirtualClock waits for them to match).
        self.bytes_out = 0
        self.bytes_in = 0
        self.started = sim.clock.now()
        self.session_id = f"0x{id(self) & 0xFFFFFFFFFFFF:x}"
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        local = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"
        self.local = f"IPV4/TCP/{local[0]}/{local[1]}"

    # -- output -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_PENDING_WRITE:
            log.warning("AMI session %s does not read its events; dropping it", self.session_id)
            self.closing = True
            transport.abort()
            return
        self.bytes_out += len(data)
        self.writer.write(data)

    def on_event(self, name: str, privilege: str, data: bytes) -> None:
        if not self.authenticated or not self.events_on:
            return
        if not self.filter.empty and not self.filter.passes(data.decode("utf-8", "replace")):
            return
        if self.user_filters is not None:
            lines = data.decode("utf-8", "replace").split("\r\n")[1:]
            pairs = [tuple(line.split(": ", 1)) for line in lines if ": " in line]
            if not self.user_filters.allows(name, pairs):
                return
        if self._held is not None:
            self._held.append(data)
        else:
            self.write(data)

    def release(self) -> None:
        """Send the events held back while an action runs (they follow its response)."""
        held, self._held = self._held, None
        for data in held or ():
            self.write(data)

    def respond(
        self, frame: Frame, status: str, pairs: Pairs = (), *, message: str | None = None
    ) -> None:  # type: ignore[assignment]
        headers: Pairs = []
        if frame.action_id is not None:
            headers.append(("ActionID", frame.action_id))
        if message is not None:
            headers.append(("Message", message))
        headers.extend(pairs)
        self.write(encode_frame(("Response", status), headers))

    def error(self, frame: Frame, message: str) -> None:
        self.respond(frame, "Error", message=message)

    def success(self, frame: Frame, message: str | None = None, pairs: Pairs = ()) -> None:  # type: ignore[assignment]
        self.respond(frame, "Success", list(pairs), message=message)

    def send_list(
        self,
        frame: Frame,
        message: str,
        events: list[tuple[str, Pairs]],
        complete: str,
        *,
        action_id_first: bool = False,
    ) -> None:
        head: Pairs = [("ActionID", frame.action_id)] if frame.action_id is not None else []
        head += [("EventList", "start"), ("Message", message)]
        self.write(encode_frame(("Response", "Success"), head))
        aid = [("ActionID", frame.action_id)] if frame.action_id is not None else []
        for name, pairs in events:
            body = [*aid, *pairs] if action_id_first else [*pairs, *aid]
            self.write(encode_frame(("Event", name), body))
        self.write(
            encode_frame(
                ("Event", complete),
                [*aid, ("EventList", "Complete"), ("ListItems", str(len(events)))],
            )
        )

    # -- input --------------------------------------------------------------------

    async def run(self) -> None:
        self.write(BANNER)
        try:
            while not self.closing:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.bytes_in += len(data)
                try:
                    frames = self.parser.feed(data)
                except AMIProtocolError:
                    break
                for frame in frames:
                    if frame.kind != "action":
                        continue
                    await self.handle(frame)
                    if self.closing:
                        break
                await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sim.sessions.discard(self)
            self.closing = True
            try:
                self.writer.close()
            except RuntimeError:
                pass

    async def handle(self, frame: Frame) -> None:
        action = frame.name.lower()
        if not self.authenticated and action not in ("login", "challenge", "logoff"):
            self.error(frame, "Permission denied")
            return
        handler: Callable[[AMISession, Frame], Awaitable[None]] | None = ACTIONS.get(action)
        if handler is None:
            self.error(
                frame,
                f"Invalid/unknown command: {frame.name}. "
                "Use Action: ListCommands to show available commands.",
            )
            self.sim.security_event(
                "RequestBadFormat",
                self,
                "Error",
                [("RequestType", f"Action: {frame.name}")],
                account_last=True,
            )
            return
        self._held = []
        try:
            await handler(self, frame)
        finally:
            self.release()


# -- actions -----------------------------------------------------------------------------


async def _login(s: AMISession, f: Frame) -> None:
    if s.authenticated:
        s.success(f, "Already authenticated")
        return
    user = s.sim.users.get(f.get("Username") or "")
    ok = False
    if user is not None:
        if (f.get("AuthType") or "").lower() == "md5" and s.challenge is not None:
            expected = hashlib.md5((s.challenge + user.secret).encode()).hexdigest()
            ok = (f.get("Key") or "").lower() == expected
        else:
            ok = f.get("Secret") == user.secret
    if not ok:
        s.release()
        # manager.c sleeps before answering a failed login, then drops the session
        await s.sim.clock.sleep(s.sim.config.auth_fail_delay)
        s.error(f, "Authentication failed")
        s.closing = True
        await s.writer.drain()
        return
    assert user is not None
    s.authenticated = True
    s.username = user.username
    s.filter = EventFilter.from_lines(user.eventfilters)
    s.user_filters = user.filters
    mask = event_mask(f.get("Events") or "on")
    s.events_on = mask is not False
    s.success(f, "Authentication accepted")
    sim = s.sim
    uptime = int(sim.clock.now() - sim.core.started)
    reload_ = int(sim.clock.now() - sim.core.reloaded)
    if s.events_on:
        s.write(
            encode_frame(
                ("Event", "FullyBooted"),
                [
                    ("Privilege", "system,all"),
                    ("Uptime", str(uptime)),
                    ("LastReload", str(reload_)),
                    ("Status", "Fully Booted"),
                ],
            )
        )
    sim.security_event("SuccessfulAuth", s, "Informational", [("UsingPassword", "0")])


async def _challenge(s: AMISession, f: Frame) -> None:
    if (f.get("AuthType") or "").lower() != "md5":
        s.error(f, "Must specify AuthType")
        return
    if s.challenge is None:
        preset = s.sim.challenges
        s.challenge = (
            preset.pop(0) if preset else str(s.sim.core.random.randrange(100_000_000, 999_999_999))
        )
    s.success(f, None, [("Challenge", s.challenge)])


async def _logoff(s: AMISession, f: Frame) -> None:
    s.respond(f, "Goodbye", message="Thanks for all the fish.")
    s.closing = True


async def _ping(s: AMISession, f: Frame) -> None:
    s.success(f, None, [("Ping", "Pong"), ("Timestamp", f"{s.sim.clock.now():.6f}")])


async def _events(s: AMISession, f: Frame) -> None:
    mask = event_mask(f.get("EventMask") or "off")
    s.events_on = mask is not False
    s.success(f, None, [("Events", "On" if s.events_on else "Off")])


def _date_time(epoch: float) -> tuple[str, str]:
    t = time.gmtime(epoch)
    return time.strftime("%Y-%m-%d", t), time.strftime("%H:%M:%S", t)


async def _core_status(s: AMISession, f: Frame) -> None:
    core = s.sim.core
    sd, st = _date_time(core.started)
    rd, rt = _date_time(core.reloaded)
    current = sum(1 for c in core.channels.values() if c.pbx_task is not None and c.tech != "Local")
    s.success(
        f,
        None,
        [
            ("CoreStartupDate", sd),
            ("CoreStartupTime", st),
            ("CoreReloadDate", rd),
            ("CoreReloadTime", rt),
            ("CoreCurrentCalls", str(current)),
            ("CoreProcessedCalls", str(core.processed_calls)),
        ],
    )


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


async def _core_show_channels(s: AMISession, f: Frame) -> None:
    core = s.sim.core
    events: list[tuple[str, Pairs]] = []
    now = core.clock.now()
    for chan in sorted(core.channels.values(), key=lambda c: c.created, reverse=True):
        events.append(
            (
                "CoreShowChannel",
                [
                    *chan.snapshot(),
                    ("Application", chan.app),
                    ("ApplicationData", chan.appdata),
                    ("Duration", _duration(now - chan.created)),
                    ("BridgeId", chan.bridge.uniqueid if chan.bridge else ""),
                ],
            )
        )
    s.send_list(f, "Channels will follow", events, "CoreShowChannelsComplete", action_id_first=True)


async def _queue_status(s: AMISession, f: Frame) -> None:
    events = s.sim.queues.status_events(f.get("Queue"), f.get("Member"))
    s.send_list(f, "Queue status will follow", events, "QueueStatusComplete")


async def _queue_summary(s: AMISession, f: Frame) -> None:
    events = s.sim.queues.summary_events(f.get("Queue"))
    s.send_list(f, "Queue summary will follow", events, "QueueSummaryComplete")


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


async def _queue_add(s: AMISession, f: Frame) -> None:
    queue, interface = f.get("Queue"), f.get("Interface")
    # app_queue.c manager_add_queue_member checks each header on its own.
    if not queue:
        s.error(f, "'Queue' not specified.")
        return
    if not interface:
        s.error(f, "'Interface' not specified.")
        return
    penalty = f.get("Penalty") or "0"
    result = s.sim.queues.add_member(
        queue,
        interface,
        name=f.get("MemberName") or "",
        penalty=int(penalty) if penalty.isdigit() else 0,
        paused=_bool(f.get("Paused")),
        reason=f.get("Reason") or "",
        state_interface=f.get("StateInterface") or "",
    )
    if result == "ok":
        s.success(f, "Added interface to queue")
    elif result == "exists":
        s.error(f, "Unable to add interface: Already there")
    else:
        s.error(f, "Unable to add interface to queue: No such queue")


async def _queue_remove(s: AMISession, f: Frame) -> None:
    queue, interface = f.get("Queue"), f.get("Interface")
    if not queue or not interface:
        s.error(f, "Need 'Queue' and 'Interface' parameters.")
        return
    result = s.sim.queues.remove_member(queue, interface)
    messages = {
        "notthere": "Unable to remove interface: Not there",
        "nosuchqueue": "Unable to remove interface from queue: No such queue",
        "notdynamic": "Member not dynamic",
    }
    if result == "ok":
        s.success(f, "Removed interface from queue")
    else:
        s.error(f, messages[result])


async def _queue_pause(s: AMISession, f: Frame) -> None:
    interface, paused = f.get("Interface"), f.get("Paused")
    if not interface or not paused:
        # app_queue.c manager_pause_queue_member: one message for either missing.
        s.error(f, "Need 'Interface' and 'Paused' parameters.")
        return
    want = _bool(paused)
    if not s.sim.queues.pause_member(f.get("Queue"), interface, want, f.get("Reason") or ""):
        s.error(f, "Interface not found")
        return
    s.success(f, "Interface paused successfully" if want else "Interface unpaused successfully")


async def _queue_penalty(s: AMISession, f: Frame) -> None:
    interface, penalty = f.get("Interface"), f.get("Penalty")
    if not interface or not penalty:
        s.error(f, "Need 'Interface' and 'Penalty' parameters.")
        return
    ok = penalty.lstrip("-").isdigit() and int(penalty) >= 0
    if not ok or not s.sim.queues.set_penalty(f.get("Queue"), interface, int(penalty)):
        s.error(f, "Invalid interface, queuename or penalty")
        return
    s.success(f, "Interface penalty set successfully")


async def _originate(s: AMISession, f: Frame) -> None:
    channel = f.get("Channel")
    if not channel:
        s.error(f, "Channel not specified")
        return
    exten, context, app = f.get("Exten"), f.get("Context"), f.get("Application")
    if not app and not exten:
        s.error(f, "Exten not specified")
        return
    timeout_text = f.get("Timeout") or "30000"
    timeout = int(timeout_text) / 1000.0 if timeout_text.isdigit() else 30.0
    priority_text = f.get("Priority") or "1"
    variables: dict[str, str] = {}
    for item in f.get_all("Variable"):
        for pair in item.split(","):
            name, _, value = pair.partition("=")
            if name:
                variables[name.strip()] = value
    core = s.sim.core
    coro = core.originate(
        f.action_id if _bool(f.get("Async")) else None,
        channel,
        context=context or "default",
        exten=exten or "s",
        priority=int(priority_text) if priority_text.isdigit() else 1,
        ring_for=timeout,
        callerid=f.get("CallerID"),
        variables=variables,
        application=app,
        data=f.get("Data") or "",
    )
    if _bool(f.get("Async")):
        s.success(f, "Originate successfully queued")
        core.spawn(coro)
        return
    s.release()
    if await coro:
        s.success(f, "Originate successfully queued")
    else:
        s.error(f, "Originate failed")


def _named_channel(
    s: AMISession,
    f: Frame,
    *,
    missing: str = "No channel specified",
    unknown: str = "No such channel",
) -> Channel | None:
    """The channel the action's ``Channel`` header names; None once the error has been
    answered. Each manager.c action words its two refusals its own way."""
    name = f.get("Channel")
    if not name:
        s.error(f, missing)
        return None
    chan = s.sim.core.find_channel(name)
    if chan is None:
        s.error(f, unknown)
    return chan


def _transfer_request(s: AMISession, f: Frame) -> tuple[Channel, str] | None:
    """BlindTransfer's and Atxfer's shared checks, in manager.c's order: channel named,
    extension named, channel exists."""
    if not f.get("Channel"):
        s.error(f, "No channel specified")
        return None
    exten = f.get("Exten")
    if not exten:
        s.error(f, "No extension specified")
        return None
    chan = _named_channel(s, f, unknown="Channel specified does not exist")
    return None if chan is None else (chan, exten)


def _priority(core: PBXCore, context: str, exten: str, text: str) -> int:
    """A number, or a label looked up in the dialplan (ast_findlabel_extension); 0: none."""
    if text.isdigit():
        return int(text)
    ext = core.dialplan.find(context, exten)
    return ext.labels.get(text, 0) if ext is not None else 0


async def _redirect(s: AMISession, f: Frame) -> None:
    """manager.c action_redirect, with ExtraChannel (a dual redirect keeps the pair together)."""
    name = f.get("Channel")
    if not name:
        s.error(f, "Channel not specified")
        return
    core = s.sim.core
    exten = f.get("Exten")
    if not exten:
        s.error(f, "Exten not specified")
        return
    chan = core.find_channel(name)
    context = f.get("Context") or (chan.context if chan is not None else "")
    priority = _priority(core, context, exten, f.get("Priority") or "1")
    if priority < 1:
        s.error(f, "Priority is invalid")
        return
    name2, context2 = f.get("ExtraChannel"), f.get("ExtraContext")
    exten2, priority2 = f.get("ExtraExten"), 0
    if name2 and context2:
        if not exten2:
            s.error(f, "ExtraExten not specified")
            return
        if not f.get("ExtraPriority"):
            s.error(f, "ExtraPriority not specified")
            return
        priority2 = _priority(core, context2, exten2, f.get("ExtraPriority") or "")
        if priority2 < 1:
            s.error(f, "ExtraPriority is invalid")
            return
    if chan is None:
        s.error(f, f"Channel does not exist: {name}")
        return
    if chan.soft_hangup:
        s.error(f, "Redirect failed, channel not up.")
        return
    if not name2:
        s.success(f, "Redirect successful")
        core.redirect(chan, (context, exten, priority))
        return
    chan2 = core.find_channel(name2)
    if chan2 is None:
        s.error(f, f"ExtraChannel does not exist: {name2}")
        return
    if chan2.soft_hangup:
        s.error(f, "Redirect failed, extra channel not up.")
        return
    s.success(f, "Dual Redirect successful")
    second = (context2, exten2 or exten, priority2) if context2 else (context, exten, priority)
    # AST_FLAG_BRIDGE_DUAL_REDIRECT_WAIT: the bridge they share must not dissolve
    # between the two gotos, so the channel whose thread runs it moves first.
    moves = [(chan, (context, exten, priority)), (chan2, second)]
    moves.sort(key=lambda move: move[0].pbx_task is None)
    for target_chan, target in moves:
        core.redirect(target_chan, target)


async def _blind_transfer(s: AMISession, f: Frame) -> None:
    request = _transfer_request(s, f)
    if request is None:
        return
    chan, exten = request
    core = s.sim.core
    context = f.get("Context") or chan.context
    result = core.transfers.blind(chan, exten, context)
    if result == "Success":
        s.success(f, "Transfer succeeded")
    elif result == "Invalid":
        s.error(f, "Transfer invalid")
    else:
        s.error(f, "Transfer failed")


async def _atxfer(s: AMISession, f: Frame) -> None:
    request = _transfer_request(s, f)
    if request is None:
        return
    chan, exten = request
    core = s.sim.core
    code = core.config.features.atxfer
    if not code:
        s.error(f, "No attended transfer feature code found")
        return
    context = f.get("Context")
    if context:
        core.set_var(chan, "TRANSFER_CONTEXT", context)
    s.success(f, "Atxfer successfully queued")
    core.spawn(_queued_atxfer(core, chan, code, exten))


async def _queued_atxfer(core: PBXCore, chan: Channel, code: str, exten: str) -> None:
    """The queued DTMF reaches the bridge: the atxfer feature fires if she may transfer."""
    await core.clock.sleep(0)
    if chan.gone:
        return
    core.transfers.queue_digits(chan, code + exten)
    core.transfers.attended(chan, exten)


async def _cancel_atxfer(s: AMISession, f: Frame) -> None:
    chan = _named_channel(s, f, unknown="Channel specified does not exist")
    if chan is None:
        return
    core = s.sim.core
    code = core.config.features.atxferabort
    if not code:
        s.error(f, "No disconnect feature code found")
        return
    s.success(f, "CancelAtxfer successfully queued")
    core.transfers.queue_digits(chan, code)


async def _hangup(s: AMISession, f: Frame) -> None:
    chan = _named_channel(s, f)
    if chan is None:
        return
    if chan.soft_hangup:
        s.error(f, "No such channel")
        return
    core = s.sim.core
    cause_text = f.get("Cause") or ""
    cause = int(cause_text) if cause_text.isdigit() else 16
    s.success(f, "Channel Hungup")
    core.request_hangup(chan, cause)


async def _setvar(s: AMISession, f: Frame) -> None:
    variable = f.get("Variable")
    if not variable:
        s.error(f, "No variable specified")
        return
    core = s.sim.core
    name = f.get("Channel")
    value = f.get("Value") or ""
    if name:
        chan = core.find_channel(name)
        if chan is None:
            s.error(f, "No such channel")
            return
        s.success(f, "Variable Set")
        core.write(chan, variable, value)
        return
    s.sim.core.globals[variable] = value
    s.success(f, "Variable Set")


async def _getvar(s: AMISession, f: Frame) -> None:
    variable = f.get("Variable")
    if not variable:
        s.error(f, "No variable specified")
        return
    core = s.sim.core
    name = f.get("Channel")
    if name:
        chan = core.find_channel(name)
        if chan is None:
            s.error(f, "No such channel")
            return
        value = core.read(chan, variable)
    else:
        value = s.sim.core.globals.get(variable, "")
    s.success(f, None, [("Variable", variable), ("Value", value)])


async def _dbput(s: AMISession, f: Frame) -> None:
    family, key = f.get("Family"), f.get("Key")
    if not family:
        s.error(f, "No family specified")
        return
    if not key:
        s.error(f, "No key specified")
        return
    s.sim.core.db_put(family, key, f.get("Val") or "")
    s.success(f, "Updated database successfully")


async def _dbget(s: AMISession, f: Frame) -> None:
    family, key = f.get("Family"), f.get("Key")
    if not family:
        s.error(f, "No family specified.")
        return
    if not key:
        s.error(f, "No key specified.")
        return
    value = s.sim.core.db_get(family, key)
    if value is None:
        s.error(f, "Database entry not found")
        return
    s.send_list(
        f,
        "Result will follow",
        [("DBGetResponse", [("Family", family), ("Key", key), ("Val", value)])],
        "DBGetComplete",
    )


async def _dbdel(s: AMISession, f: Frame) -> None:
    family, key = f.get("Family"), f.get("Key")
    if not family:
        s.error(f, "No family specified.")
        return
    if not key:
        s.error(f, "No key specified.")
        return
    if not s.sim.core.db_del(family, key):
        s.error(f, "Database entry not found")
        return
    s.success(f, "Key deleted successfully")


async def _mixmonitor(s: AMISession, f: Frame) -> None:
    chan = _named_channel(s, f)
    if chan is None:
        return
    chan.mixmonitor = f.get("File") or f"{chan.uniqueid}.wav"
    s.success(f)


async def _stop_mixmonitor(s: AMISession, f: Frame) -> None:
    chan = _named_channel(s, f)
    if chan is None:
        return
    chan.mixmonitor = None
    s.success(f)


async def _agi(s: AMISession, f: Frame) -> None:
    name, command = f.get("Channel"), f.get("Command")
    if not name or not command:
        s.error(f, "Both, Channel and Command are *required*")
        return
    chan = s.sim.core.find_channel(name)
    if chan is None:
        s.error(f, f"Channel {name} does not exist.")
        return
    # Queued whether or not the channel is in AsyncAGI now; it runs only if
    # (and when) the channel is in AGI(agi:async).
    chan.agi_queue.append((command, f.get("CommandID")))
    chan.agi_wakeup.set()
    s.success(f, "Added AGI command to queue")


async def _command(s: AMISession, f: Frame) -> None:
    command = " ".join((f.get("Command") or "").split())
    core = s.sim.core
    if command == "core show channels":
        lines = [f"{'Channel':<64} {'Location':<32} {'State':<7} {'Application(Data)':<30}"]
        for chan in sorted(core.channels.values(), key=lambda c: c.created, reverse=True):
            location = f"{chan.exten}@{chan.context}:{chan.priority}"
            appdata = f"{chan.app}({chan.appdata})" if chan.app else "(None)"
            lines.append(
                f"{chan.name[:64]:<64} {location[:32]:<32} "
                f"{STATE_DESC.get(chan.state, 'Unknown'):<7} {appdata[:30]:<30}"
            )
        n = len(core.channels)
        calls = sum(
            1 for c in core.channels.values() if c.pbx_task is not None and c.tech != "Local"
        )
        lines.append(f"{n} active channel{'s' if n != 1 else ''}")
        lines.append(f"{calls} active call{'s' if calls != 1 else ''}")
        lines.append(
            f"{core.processed_calls} call{'s' if core.processed_calls != 1 else ''} processed"
        )
        s.respond(
            f, "Success", [("Output", line) for line in lines], message="Command output follows"
        )
        return
    s.respond(
        f,
        "Error",
        [
            (
                "Output",
                f"No such command '{command}' "
                f"(type 'core show help {command}' for other possible commands)",
            )
        ],
        message="Command output follows",
    )


ACTIONS: dict[str, Callable[[AMISession, Frame], Awaitable[None]]] = {
    "login": _login,
    "challenge": _challenge,
    "logoff": _logoff,
    "ping": _ping,
    "events": _events,
    "corestatus": _core_status,
    "coreshowchannels": _core_show_channels,
    "queuestatus": _queue_status,
    "queuesummary": _queue_summary,
    "queueadd": _queue_add,
    "queueremove": _queue_remove,
    "queuepause": _queue_pause,
    "queuepenalty": _queue_penalty,
    "originate": _originate,
    "redirect": _redirect,
    "blindtransfer": _blind_transfer,
    "atxfer": _atxfer,
    "cancelatxfer": _cancel_atxfer,
    "hangup": _hangup,
    "setvar": _setvar,
    "getvar": _getvar,
    "dbput": _dbput,
    "dbget": _dbget,
    "dbdel": _dbdel,
    "mixmonitor": _mixmonitor,
    "stopmixmonitor": _stop_mixmonitor,
    "agi": _agi,
    "command": _command,
}


class SimPBX:
    """A simulated Asterisk 22 PBX reachable over AMI on a real TCP port."""

    def __init__(
        self, config: SimConfig | None = None, *, clock: Clock | None = None, speed: float = 1.0
    ) -> None:
        from .config import lab_config

        self.config = config or lab_config()
        self.clock = clock or Clock(speed)
        self.core = PBXCore(self.config, self.clock)
        self.queues = QueueEngine(self.core)
        self.users = {u.username: u for u in self.config.users}
        self.sessions: set[AMISession] = set()
        #: challenges to hand out first (replaying a recorded MD5 login needs its challenge).
        self.challenges: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.host = "127.0.0.1"

    async def start(self, host: str = "127.0.0.1", port: int = 5038) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.closing = True
            session.writer.transport.abort()
        # Aborting the transports ends each session's read loop; cancelling the
        # server's per-connection tasks instead makes asyncio log them as errors.
        if self._session_tasks:
            _, pending = await asyncio.wait(list(self._session_tasks), timeout=1.0)
            for task in pending:
                task.cancel()
        await self.core.shutdown()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimPBX:
        await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AMISession(self, reader, writer)
        self.sessions.add(session)
        self.core.sinks.append(session.on_event)
        task = asyncio.current_task()
        if task is not None:
            self._session_tasks.add(task)  # type: ignore[arg-type]
        try:
            await session.run()
        finally:
            if session.on_event in self.core.sinks:
                self.core.sinks.remove(session.on_event)
            if task is not None:
                self._session_tasks.discard(task)  # type: ignore[arg-type]

    def security_event(
        self,
        name: str,
        session: AMISession,
        severity: str,
        extra: Pairs,
        *,
        account_last: bool = False,
    ) -> None:
        now = self.clock.now()
        tv = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now * 1000) % 1000:03d}+0000"
        )
        started = session.started
        session_tv = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
            + f".{int(started * 1000) % 1000:03d}+0000"
        )
        head: Pairs = [
            ("EventTV", tv),
            ("Severity", severity),
            ("Service", "AMI"),
            ("EventVersion", "1"),
        ]
        account = [("AccountID", session.username)]
        body: Pairs = [
            ("SessionID", session.session_id),
            ("LocalAddress", session.local),
            ("RemoteAddress", session.remote),
        ]
        if account_last:
            headers = [*head, *body, *extra, ("SessionTV", session_tv), *account]
        else:
            headers = [*head, *account, *body, *extra, ("SessionTV", session_tv)]
        self.core.emit(name, "security,all", headers)

    # -- driving the PBX from tests and scenarios -----------------------------------------

    def place_call(self, endpoint: str, exten: str, **kwargs: Any) -> Any:
        """A call from a PJSIP endpoint (a synthetic caller's phone) to ``exten``."""
        return self.core.inbound_call(endpoint, exten, **kwargs)

    def set_phone(self, endpoint: str, behaviour: PhoneBehaviour) -> None:
        self.core.phones[endpoint] = behaviour
        self.core.device_changed(f"PJSIP/{endpoint}")
