"""A fake Asterisk manager on loopback TCP that answers with what real Asterisk 22 sent.

Its replies come from the recorded traces in ``tests/fixtures/asterisk``: each
``NAME.ami.sent`` action is paired with the frames of ``NAME.ami`` that carry its
ActionID (the response, then any EventList events or an OriginateResponse), kept
byte for byte and sent back with the ActionID rewritten to the client's. When a
trace holds several replies to one action (DBGet found / not found, QueueRemove
of different members), the one whose recorded headers best match the client's
action wins.

Beyond replay it plays the parts of Asterisk that tests need to steer: the
banner, plain and MD5 login (a wrong secret gets ``Authentication failed``
after a delay, then the connection is closed, as in ``login_wrong_secret``),
Ping, Logoff, and AsyncAGI (``Action: AGI`` is acked with ``Added AGI command
to queue``; the result comes in ``AsyncAGIExec`` with the client's CommandID
and a URL-encoded ``Result``; a channel that has left AsyncAGI is still acked
and never answered, like the real thing). Tests can push raw bytes and events,
override any action's behaviour, and drop connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from callcenter.ami import AMIParser, Frame
from callcenter.ami.encoder import encode_frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
#: Traces whose replies are replayed; earlier traces win ties between equal matches.
DEFAULT_TRACES = (
    "actions",
    "actions_misc",
    "corestatus",
    "queue_asyncagi_call",
    "ivr_getdata_dtmf",
    "ivr_getdata_timeout",
    "callback_originate_local",
    "queue_priority_two_callers",
)
# Actions the fake answers itself rather than from a recording.
_BUILT_IN = frozenset({"login", "challenge", "logoff", "ping", "agi"})
# What res/res_agi.c leaves unescaped in the Result it URL-encodes (see the
# traces: ``200%20result%3D%20(timeout)%0A``).
_AGI_SAFE = "!*'()"
_ACTION_ID_LINE = re.compile(rb"^ActionID: [^\r\n]*\r\n", re.MULTILINE)

T = TypeVar("T")
ActionBehaviour = Callable[["FakeAMISession", Frame], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One action a lab client sent and every frame Asterisk sent with its ActionID."""

    trace: str
    action: Frame
    #: Raw frames without their terminating blank line, in the order received.
    replies: tuple[bytes, ...]
    reply_frames: tuple[Frame, ...]


def raw_frames(data: bytes) -> list[bytes]:
    """Split a recorded ``.ami`` stream into raw frames (banner line dropped)."""
    if data.startswith(b"Asterisk Call Manager"):
        data = data[data.index(b"\n") + 1 :]
    return [chunk for chunk in data.split(b"\r\n\r\n") if chunk.strip()]


def parse_one(raw: bytes) -> Frame | None:
    frames = AMIParser(expect_banner=False).feed(raw + b"\r\n\r\n")
    return frames[0] if frames else None


@cache
def _trace(directory: Path, name: str) -> tuple[tuple[Frame, ...], tuple[tuple[bytes, Frame], ...]]:
    sent = AMIParser(expect_banner=False).feed((directory / f"{name}.ami.sent").read_bytes())
    received: list[tuple[bytes, Frame]] = []
    for raw in raw_frames((directory / f"{name}.ami").read_bytes()):
        frame = parse_one(raw)
        if frame is not None:
            received.append((raw, frame))
    return tuple(sent), tuple(received)


def load_exchanges(
    traces: Iterable[str] = DEFAULT_TRACES, directory: Path = FIXTURES
) -> dict[str, list[RecordedExchange]]:
    """Recorded replies by lower-case action name, in trace order."""
    exchanges: dict[str, list[RecordedExchange]] = {}
    for trace in traces:
        sent, received = _trace(directory, trace)
        by_id: dict[str, list[tuple[bytes, Frame]]] = {}
        for raw, frame in received:
            if frame.action_id is not None and frame.kind in ("response", "event"):
                by_id.setdefault(frame.action_id, []).append((raw, frame))
        for action in sent:
            replies = by_id.get(action.action_id or "")
            if not replies:
                continue
            exchanges.setdefault(action.name.lower(), []).append(
                RecordedExchange(
                    trace=trace,
                    action=action,
                    replies=tuple(raw for raw, _ in replies),
                    reply_frames=tuple(frame for _, frame in replies),
                )
            )
    return exchanges


def load_agi_results(
    traces: Iterable[str] = DEFAULT_TRACES, directory: Path = FIXTURES
) -> dict[str, str]:
    """Decoded AGI result line by command text, from the AsyncAGIExec events recorded."""
    from urllib.parse import unquote

    results: dict[str, str] = {}
    for trace in traces:
        sent, received = _trace(directory, trace)
        execs = {
            frame.get("CommandId"): frame
            for _, frame in received
            if frame.kind == "event" and frame.name == "AsyncAGIExec"
        }
        for action in sent:
            if action.name != "AGI":
                continue
            exec_frame = execs.get(action.get("CommandID"))
            if exec_frame is not None and action.get("Command"):
                results.setdefault(action["Command"], unquote(exec_frame["Result"]))
    return results


def recorded_event(
    name: str, trace: str = "queue_asyncagi_call", directory: Path = FIXTURES
) -> Frame:
    """The first ``name`` event of a trace, as a template."""
    _, received = _trace(directory, trace)
    for _, frame in received:
        if frame.kind == "event" and frame.name == name:
            return frame
    raise LookupError(f"no {name} event in {trace}")


def event_bytes(template: Frame, **replace: str) -> bytes:
    """Re-encode a recorded event with some header values replaced (case-insensitive)."""
    wanted = {k.lower(): v for k, v in replace.items()}
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in template.pairs():
        lowered = name.lower()
        if lowered in wanted:
            if lowered in seen:
                continue
            seen.add(lowered)
            value = wanted[lowered]
        pairs.append((name, value))
    for name, value in replace.items():
        if name.lower() not in seen:
            pairs.append((name, value))
    return encode_frame(pairs[0], pairs[1:])


def agi_encode(result_line: str) -> str:
    """URL-encode an AGI result line the way res_agi does for AsyncAGIExec."""
    if not result_line.endswith("\n"):
        result_line += "\n"
    return quote(result_line, safe=_AGI_SAFE)


def _now() -> str:
    return f"{time.time():.6f}"


class FakeAMISession(asyncio.Protocol):
    """One client connection to the fake server."""

    def __init__(self, server: FakeAMIServer, index: int) -> None:
        self.server = server
        self.index = index
        self.parser = AMIParser(expect_banner=False)
        self.transport: asyncio.Transport | None = None
        self.authenticated = False
        self.challenge: str | None = None
        self.closed = False
        #: Every action frame this client sent, in order.
        self.received: list[Frame] = []

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.server.banner:
            transport.write(self.server.banner)
        self.server._changed()

    def data_received(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.received.append(frame)
            self.server.received.append(frame)
            self.server._changed()
            if frame.kind == "action":
                self._handle(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._changed()

    # -- sending ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    def reply(self, action: Frame, status: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        pairs: list[tuple[str, str]] = []
        if action.action_id is not None:
            pairs.append(("ActionID", action.action_id))
        pairs.extend(headers)
        self.write(encode_frame(("Response", status), pairs))

    def replay(self, action: Frame, exchange: RecordedExchange) -> None:
        replacement = (
            b"" if action.action_id is None else b"ActionID: %s\r\n" % (action.action_id.encode())
        )
        out = bytearray()
        for raw in exchange.replies:
            out += _ACTION_ID_LINE.sub(lambda _: replacement, raw + b"\r\n", count=1)
            out += b"\r\n"
        self.write(bytes(out))

    def drop(self) -> None:
        """Abort the connection (no FIN handshake niceties, like a crashed PBX)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- actions -----------------------------------------------------------------

    def _handle(self, action: Frame) -> None:
        name = action.name.lower()
        behaviour = self.server.behaviours.get(name)
        if behaviour is not None:
            outcome = behaviour(self, action)
            if inspect.isawaitable(outcome):
                self.server._spawn(outcome)
            return
        if name == "login":
            self._login(action)
        elif name == "challenge":
            self._challenge(action)
        elif not self.authenticated:
            self.reply(action, "Error", [("Message", "Permission denied")])
        elif name == "logoff":
            self.reply(action, "Goodbye", [("Message", "Thanks for all the fish.")])
            self.close()
        elif name == "ping":
            if self.server.answer_pings:
                self.reply(action, "Success", [("Ping", "Pong"), ("Timestamp", _now())])
        elif name == "agi":
            self._agi(action)
        else:
            exchange = self.server.choose(action)
            if exchange is None:
                self.reply(
                    action,
                    "Error",
                    [
                        (
                            "Message",
                            f"Invalid/unknown command: {action.name}. "
                            "Use Action: ListCommands to show available commands.",
                        )
                    ],
                )
            else:
                self.replay(action, exchange)

    def _challenge(self, action: Frame) -> None:
        if (action.get("AuthType") or "").lower() != "md5":
            self.reply(action, "Error", [("Message", "Must specify AuthType")])
            return
        self.challenge = self.server.challenge or str(secrets.randbelow(10**9))
        self.reply(action, "Success", [("Challenge", self.challenge)])

    def _login(self, action: Frame) -> None:
        if self.authenticated:
            self.reply(action, "Success", [("Message", "Already authenticated")])
            return
        server = self.server
        user_ok = action.get("Username") == server.username
        if (action.get("AuthType") or "").lower() == "md5":
            expected = (
                hashlib.md5((self.challenge + server.secret).encode()).hexdigest()
                if self.challenge is not None
                else None
            )
            accepted = user_ok and expected is not None and action.get("Key") == expected
        else:
            accepted = user_ok and action.get("Secret") == server.secret
        if not accepted:
            server.failed_logins += 1
            loop = asyncio.get_running_loop()
            loop.call_later(server.auth_failure_delay, self._refuse, action)
            return
        self.authenticated = True
        server.logins += 1
        self.reply(action, "Success", [("Message", "Authentication accepted")])
        self.write(
            b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 10\r\n"
            b"LastReload: 10\r\nStatus: Fully Booted\r\n\r\n"
        )
        server._changed()

    def _refuse(self, action: Frame) -> None:
        self.reply(action, "Error", [("Message", "Authentication failed")])
        self.close()

    def _agi(self, action: Frame) -> None:
        server = self.server
        channel = action.get("Channel") or ""
        command = action.get("Command") or ""
        command_id = action.get("CommandID") or ""
        if not channel or not command:
            self.reply(action, "Error", [("Message", "Both, Channel and Command are *required*")])
            return
        state = server.agi_state.get(channel)
        if state is None or state == "hungup":
            self.reply(action, "Error", [("Message", f"Channel {channel} does not exist.")])
            return
        self.reply(action, "Success", [("Message", "Added AGI command to queue")])
        if state != "active":
            return  # left AsyncAGI: Asterisk queues it and never runs it
        if channel in server.agi_hold:
            server.held_agi.append((channel, command, command_id))
            return
        server._run_agi(channel, command, command_id)


class FakeAMIServer:
    """The fake manager. ``async with FakeAMIServer() as pbx: ... pbx.port``."""

    def __init__(
        self,
        *,
        username: str = "lab",
        secret: str = "labsecret",
        challenge: str | None = None,
        exchanges: Mapping[str, list[RecordedExchange]] | None = None,
        agi_results: Mapping[str, str] | None = None,
        auth_failure_delay: float = 0.05,
        banner: bytes = BANNER,
        port: int = 0,
    ) -> None:
        self.host = "127.0.0.1"
        #: 0 until started (then the ephemeral port), unless a port is asked for.
        self.port = port
        self.username = username
        self.secret = secret
        #: A fixed MD5 challenge (None: a random one per Challenge, like Asterisk).
        self.challenge = challenge
        self.exchanges = dict(exchanges) if exchanges is not None else load_exchanges()
        #: Decoded result line by AGI command text (exact, or the longest prefix).
        self.agi_results: dict[str, str] = (
            dict(agi_results) if agi_results is not None else load_agi_results()
        )
        self.auth_failure_delay = auth_failure_delay
        self.banner = banner
        self.answer_pings = True
        #: Per lower-case action name: what to do instead of the default.
        self.behaviours: dict[str, ActionBehaviour] = {}
        self.preferred: dict[str, RecordedExchange] = {}
        #: Channel -> "active" (in AsyncAGI), "ended" (left it), "hungup".
        self.agi_state: dict[str, str] = {}
        #: Channels whose AGI commands are acked but not run until release_agi().
        self.agi_hold: set[str] = set()
        self.held_agi: list[tuple[str, str, str]] = []
        self.sessions: list[FakeAMISession] = []
        self.received: list[Frame] = []
        self.logins = 0
        self.failed_logins = 0
        self._server: asyncio.Server | None = None
        self._event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> FakeAMIServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for session in self.sessions:
            session.drop()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeAMIServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _new_session(self) -> FakeAMISession:
        session = FakeAMISession(self, len(self.sessions))
        self.sessions.append(session)
        return session

    def _spawn(self, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self) -> None:
        self._event.set()

    # -- observing -------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return len(self.sessions)

    @property
    def current(self) -> FakeAMISession | None:
        """The newest connection that is still open."""
        for session in reversed(self.sessions):
            if not session.closed:
                return session
        return None

    def actions(self, name: str | None = None) -> list[Frame]:
        """Actions received on every connection, optionally only those named ``name``."""
        return [
            f
            for f in self.received
            if f.kind == "action" and (name is None or f.name.lower() == name.lower())
        ]

    async def wait_for(self, predicate: Callable[[], T | None], within: float = 2.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every frame or connection)."""
        async with asyncio.timeout(within):
            while True:
                value = predicate()
                if value:
                    return value
                self._event.clear()
                await self._event.wait()

    async def wait_for_action(self, name: str, count: int = 1, within: float = 2.0) -> Frame:
        """The ``count``-th action named ``name`` (waits for it)."""
        found = await self.wait_for(
            lambda: (lambda xs: xs[count - 1] if len(xs) >= count else None)(self.actions(name)),
            within,
        )
        return found

    async def wait_for_logins(self, count: int, within: float = 2.0) -> None:
        await self.wait_for(lambda: self.logins >= count, within)

    # -- steering --------------------------------------------------------------------

    def on_action(self, name: str, behaviour: ActionBehaviour) -> None:
        """Replace what the server does for ``name`` (e.g. drop, stay silent, delay)."""
        self.behaviours[name.lower()] = behaviour

    def reset_action(self, name: str) -> None:
        self.behaviours.pop(name.lower(), None)

    def prefer(self, exchange: RecordedExchange) -> None:
        """Always answer this exchange's action with it."""
        self.preferred[exchange.action.name.lower()] = exchange

    def choose(self, action: Frame) -> RecordedExchange | None:
        name = action.name.lower()
        if name in self.preferred:
            return self.preferred[name]
        candidates = self.exchanges.get(name)
        if not candidates:
            return None
        asked = {(k.lower(), v) for k, v in action.pairs() if k.lower() not in ("actionid",)}

        def score(exchange: RecordedExchange) -> int:
            return sum(
                1
                for k, v in exchange.action.pairs()
                if k.lower() != "actionid" and (k.lower(), v) in asked
            )

        return max(candidates, key=score)  # max keeps the first of equals

    def push(self, data: bytes, *, session: FakeAMISession | None = None) -> None:
        """Write raw bytes to one session (default: every open one)."""
        targets = [session] if session is not None else [s for s in self.sessions if not s.closed]
        for each in targets:
            each.write(data)

    def send_event(
        self, name: str, headers: Iterable[tuple[str, str]] | Mapping[str, str] = ()
    ) -> None:
        """Send an event to every logged-in session."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        self.broadcast(encode_frame(("Event", name), list(items)))

    def broadcast(self, data: bytes) -> None:
        for session in self.sessions:
            if session.authenticated and not session.closed:
                session.write(data)

    def drop(self) -> None:
        """Abort every open connection."""
        for session in self.sessions:
            if not session.closed:
                session.drop()

    # -- AsyncAGI ------------------------------------------------------------------------

    def start_agi(self, channel: str, *, uniqueid: str = "1795327929.5") -> None:
        """A call reached ``AGI(agi:async)``: send AsyncAGIStart as recorded."""
        template = recorded_event("AsyncAGIStart")
        env = template["Env"].replace(
            quote("PJSIP/caller-00000005", safe=""), quote(channel, safe="")
        )
        self.agi_state[channel] = "active"
        self.broadcast(
            event_bytes(
                template,
                Timestamp=_now(),
                Channel=channel,
                Uniqueid=uniqueid,
                Linkedid=uniqueid,
                Env=env,
            )
        )

    def end_agi(self, channel: str) -> None:
        """The channel left AsyncAGI (ASYNCAGI BREAK, or a hangup): AsyncAGIEnd."""
        self.agi_state[channel] = "ended"
        self.broadcast(
            event_bytes(recorded_event("AsyncAGIEnd"), Timestamp=_now(), Channel=channel)
        )

    def hangup(self, channel: str, *, cause: int = 16) -> None:
        """The channel is gone: a Hangup event as recorded."""
        self.agi_state[channel] = "hungup"
        self.broadcast(
            event_bytes(
                recorded_event("Hangup"), Timestamp=_now(), Channel=channel, Cause=str(cause)
            )
        )

    def agi_result_for(self, command: str) -> str:
        if command in self.agi_results:
            return self.agi_results[command]
        prefixes = [k for k in self.agi_results if command.startswith(k)]
        if prefixes:
            return self.agi_results[max(prefixes, key=len)]
        return "510 Invalid or unknown command\n"

    def release_agi(self, channel: str) -> None:
        """Run the held commands of ``channel`` (in the order they came)."""
        self.agi_hold.discard(channel)
        held, self.held_agi = self.held_agi, []
        for each in held:
            if each[0] == channel:
                self._run_agi(*each)
            else:
                self.held_agi.append(each)

    def _run_agi(self, channel: str, command: str, command_id: str) -> None:
        if self.agi_state.get(channel) != "active":
            return
        template = recorded_event("AsyncAGIExec")
        result = self.agi_result_for(command)
        self.broadcast(
            event_bytes(
                template,
                Timestamp=_now(),
                Channel=channel,
                Result=agi_encode(result),
                CommandId=command_id,
            )
        )
        if command.strip().upper() == "ASYNCAGI BREAK":
            self.end_agi(channel)
