"""The asyncio AMI client: login, actions, event lists, events, AsyncAGI, keepalive, reconnect.

The transport is an ``asyncio.Protocol`` whose ``data_received`` only feeds the
parser and routes each frame synchronously: a response resolves its action's
future, a list event joins its action's list, an ``AsyncAGIExec`` resolves its
command, and every other event is offered to each subscriber's bounded queue.
Nothing on the read path awaits. That matters: Asterisk drops a manager session
whose reader falls behind its ``writetimeout``, so a slow handler must cost
that handler its events (dropped and counted), never the connection.

Frames are never logged: their headers carry callers' numbers (CallerIDNum,
ConnectedLineNum, Env, DialString...) and even channel names can (``Local/
5550100@...``). Logs name events, actions, ActionIDs, CommandIDs and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import logging
import random
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal, cast

from .agi import AGIResult, decode_agi_result
from .encoder import Headers, encode_action, new_action_id
from .errors import (
    AGIChannelGone,
    AGIError,
    AMIActionError,
    AMIAuthError,
    AMIConnectionError,
    AMIError,
    AMIProtocolError,
    AMITimeoutError,
)
from .frame import Frame
from .parser import DEFAULT_MAX_FRAME_SIZE, AMIParser, BadFrame

logger = logging.getLogger(__name__)

EventHandler = Callable[[Frame], Awaitable[None] | None]
ConnectionHook = Callable[[], Awaitable[None]]
HeaderInput = Mapping[str, object] | Iterable[tuple[str, object]]

# Events the AsyncAGI bookkeeping looks at before they are dispatched.
_AGI_EVENTS = frozenset({"AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd", "Hangup"})
# res_agi's replies to ``Action: AGI`` for a channel that is gone or has left
# AsyncAGI ("Channel X does not exist.", "Failed to add AGI command to channel
# X queue").
_AGI_GONE_MESSAGES = ("does not exist", "Failed to add AGI command")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: exponential, bounded, with jitter.

    Attempt ``n`` waits ``min(maximum, initial * factor**n)`` scaled by a random
    factor in ``[1 - jitter, 1]``, so many backends restarted together do not
    hit a recovering PBX in lockstep.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)


@dataclass(slots=True)
class AMIClientStats:
    """Counters for health checks and metrics (exported elsewhere)."""

    logins: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    frames_received: int = 0
    events_received: int = 0
    events_dropped: int = 0
    bad_frames: int = 0
    protocol_errors: int = 0
    handler_errors: int = 0
    hook_errors: int = 0
    unmatched_responses: int = 0
    missed_pongs: int = 0
    actions_sent: int = 0


class EventSubscription:
    """One handler registered with :meth:`AMIClient.on_event`.

    It has its own bounded queue and worker task, so a slow handler delays
    only itself; when its queue is full new events for it are dropped and
    counted in ``dropped`` (and the client's ``stats.events_dropped``).
    """

    __slots__ = (
        "pattern",
        "handler",
        "dropped",
        "_client",
        "_queue",
        "_task",
        "_exact",
        "_dropping_since",
    )

    def __init__(
        self, client: AMIClient, pattern: str, handler: EventHandler, queue_size: int
    ) -> None:
        self.pattern = pattern
        self.handler = handler
        self.dropped = 0
        self._client = client
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._exact = not any(c in pattern for c in "*?[")
        self._dropping_since = 0

    def matches(self, event_name: str) -> bool:
        # Case-insensitive like header names: Asterisk's spelling is not a contract.
        if self._exact:
            return self.pattern.lower() == event_name.lower()
        return fnmatchcase(event_name.lower(), self.pattern.lower())

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def unsubscribe(self) -> None:
        self._client._remove_subscription(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _offer(self, frame: Frame) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"ami-events-{self.pattern}"
            )
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1
            self._client.stats.events_dropped += 1
            if not self._dropping_since:
                self._dropping_since = self.dropped
                logger.warning(
                    "AMI handler %s for %r is behind: its queue of %d is full; dropping %s events",
                    _callable_name(self.handler),
                    self.pattern,
                    self._queue.maxsize,
                    frame.name,
                )
            return
        if self._dropping_since:
            logger.warning(
                "AMI handler %s for %r caught up after %d dropped events",
                _callable_name(self.handler),
                self.pattern,
                self.dropped - self._dropping_since + 1,
            )
            self._dropping_since = 0

    async def _run(self) -> None:
        queue = self._queue
        handler = self.handler
        while True:
            frame = await queue.get()
            try:
                outcome = handler(frame)
                if inspect.isawaitable(outcome):
                    await outcome
            except asyncio.CancelledError:
                raise
            except Exception:
                self._client.stats.handler_errors += 1
                logger.exception(
                    "AMI handler %s failed on a %s event", _callable_name(handler), frame.name
                )

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Pending:
    """An action waiting for its response (and, for lists, its events)."""

    __slots__ = ("action", "future", "collect", "agi_channel", "events")

    def __init__(
        self,
        action: str,
        future: asyncio.Future[Any],
        *,
        collect: bool = False,
        agi_channel: str | None = None,
    ) -> None:
        self.action = action
        self.future = future
        self.collect = collect
        # Set for the ack of ``Action: AGI``: ``future`` is then the command's
        # result future, failed on an Error ack and left alone on Success.
        self.agi_channel = agi_channel
        self.events: list[Frame] = []


class _AGICommand:
    __slots__ = ("channel", "future")

    def __init__(self, channel: str, future: asyncio.Future[AGIResult]) -> None:
        self.channel = channel
        self.future = future


class _AMIProtocol(asyncio.Protocol):
    """The transport glue: bytes to the parser, frames to the client, nothing else."""

    def __init__(self, client: AMIClient, parser: AMIParser) -> None:
        loop = asyncio.get_running_loop()
        self._client = client
        self._parser = parser
        self._bad_seen = 0
        self.transport: asyncio.Transport | None = None
        self.banner: asyncio.Future[Frame] = loop.create_future()
        #: Resolved (with the reason, or None) once the connection is gone.
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.reason: BaseException | None = None
        self.keepalive: asyncio.Task[None] | None = None
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.closed.done() or self.reason is not None:
            return
        try:
            frames = self._parser.feed(data)
        except AMIProtocolError as exc:
            self._client._on_protocol_error(self, exc)
            return
        parser = self._parser
        if parser.bad_frames != self._bad_seen:
            self._bad_seen = parser.bad_frames
            self._client._on_bad_frames(parser.take_bad_frames())
        if frames:
            self._client._on_frames(self, frames)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.reason or exc
        if not self.banner.done():
            self.banner.set_exception(AMIConnectionError("AMI connection closed before the banner"))
            self.banner.exception()  # retrieved: the login reports the loss itself
        if not self.closed.done():
            self.closed.set_result(reason)
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(AMIConnectionError("AMI connection lost"))
        if self.keepalive is not None:
            self.keepalive.cancel()
        self._client._on_connection_lost(self, reason)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the client ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed.done() or self.transport.is_closing():
            raise AMIConnectionError("AMI connection is closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if not self._paused:
            return
        if self._drain_waiter is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain_waiter)

    def abort(self, reason: BaseException) -> None:
        if self.reason is None:
            self.reason = reason
        if self.transport is not None:
            self.transport.abort()


class AMIClient:
    """An Asterisk Manager Interface session that stays up.

    ``connect()`` makes the first connection and login and raises if either
    fails (:class:`AMIAuthError` for refused credentials). After that, a lost
    connection (socket closed, framing lost, missed pong) fails every pending
    action with :class:`AMIConnectionError`, runs the ``on_disconnected``
    hooks, then reconnects with :class:`Backoff`, logs in again and runs the
    ``on_connected`` hooks (the resync point: the PBX may have changed while we
    were away). Refused credentials stop reconnecting: a wrong secret stays
    wrong, and hammering the PBX would only fill its security log.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        auth: Literal["md5", "plain"] = "md5",
        *,
        events: str = "on",
        action_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        login_timeout: float = 5.0,
        ping_interval: float | None = 15.0,
        ping_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        event_queue_size: int = 10_000,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        agi_gone_memory: int = 10_000,
        logoff_timeout: float = 1.0,
        name: str | None = None,
    ) -> None:
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', not {auth!r}")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.auth = auth
        #: Which PBX this is, for logs (several nodes may be connected).
        self.name = name or f"{host}:{port}"
        self.events = events
        self.action_timeout = action_timeout
        self.connect_timeout = connect_timeout
        self.login_timeout = login_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.event_queue_size = event_queue_size
        self.max_frame_size = max_frame_size
        self.logoff_timeout = logoff_timeout
        self.stats = AMIClientStats()

        self._protocol: _AMIProtocol | None = None
        self._logged_in = False
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._originate_waiters: dict[str, asyncio.Future[Frame]] = {}
        self._subscriptions: list[EventSubscription] = []
        self._routes: dict[str, tuple[EventSubscription, ...]] = {}
        self._on_connected: list[ConnectionHook] = []
        self._on_disconnected: list[ConnectionHook] = []
        #: Why the last connection ended (None while connected or before the first).
        self.last_disconnect_reason: BaseException | None = None

        # AsyncAGI bookkeeping. CommandIDs carry a per-client random prefix so a
        # restarted backend never mistakes an old command's result for a new one.
        self._agi_prefix = f"cc{secrets.token_hex(4)}"
        self._agi_ids = itertools.count(1)
        self._agi_commands: dict[str, _AGICommand] = {}
        self._agi_by_channel: dict[str, set[str]] = {}
        self._agi_active: set[str] = set()
        self._agi_gone: OrderedDict[str, None] = OrderedDict()
        self._agi_gone_memory = agi_gone_memory

    # -- lifecycle ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and logged in: actions can be sent."""
        return self._logged_in and self._protocol is not None

    async def __aenter__(self) -> AMIClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, log in, run the ``on_connected`` hooks, then keep the session up."""
        if self._closing:
            raise AMIConnectionError("AMI client is closed")
        if self._supervisor is not None and not self._supervisor.done():
            return  # connected, or the supervisor is already reconnecting
        protocol = await self._establish()
        await self._run_hooks(self._on_connected, "on_connected")
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(protocol), name=f"ami-supervisor-{self.name}"
        )

    async def close(self) -> None:
        """Log off, close the connection, stop reconnecting and stop the handlers."""
        if self._closing:
            return
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        protocol = self._protocol
        if protocol is not None:
            if self._logged_in:
                with contextlib.suppress(AMIError):
                    await self._request(protocol, "Logoff", [], timeout=self.logoff_timeout)
            if protocol.transport is not None:
                protocol.transport.close()
            try:
                async with asyncio.timeout(self.logoff_timeout):
                    await asyncio.shield(protocol.closed)
            except TimeoutError:
                protocol.abort(AMIConnectionError("AMI client closed"))
        self._protocol = None
        self._logged_in = False
        self._fail_all(lambda: AMIConnectionError("AMI client closed"))
        for subscription in list(self._subscriptions):
            await subscription._stop()

    def on_connected(self, hook: ConnectionHook) -> ConnectionHook:
        """Run ``await hook()`` after every successful login (first one included)."""
        self._on_connected.append(hook)
        return hook

    def on_disconnected(self, hook: ConnectionHook) -> ConnectionHook:
        """Run ``await hook()`` after a connection is lost, before reconnecting."""
        self._on_disconnected.append(hook)
        return hook

    async def _establish(self) -> _AMIProtocol:
        loop = asyncio.get_running_loop()
        parser = AMIParser(max_frame_size=self.max_frame_size)
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _AMIProtocol(self, parser), self.host, self.port
                )
        except (OSError, TimeoutError) as exc:
            raise AMIConnectionError(
                f"cannot connect to AMI {self.name}: {exc or type(exc).__name__}"
            ) from exc
        self._protocol = protocol
        try:
            await self._login(protocol)
        except BaseException as exc:
            protocol.abort(exc)
            if self._protocol is protocol:
                self._protocol = None
            self._fail_all(lambda: AMIConnectionError("AMI login did not complete"))
            raise
        self._logged_in = True
        self.stats.logins += 1
        self.last_disconnect_reason = None
        if self.ping_interval:
            protocol.keepalive = loop.create_task(
                self._keepalive(protocol, self.ping_interval), name=f"ami-ping-{self.name}"
            )
        logger.info("AMI logged in to %s as %s (%s)", self.name, self.username, self.auth)
        return protocol

    async def _login(self, protocol: _AMIProtocol) -> None:
        timeout = self.login_timeout
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(protocol.banner)
        except TimeoutError as exc:
            raise AMIConnectionError(f"no AMI banner from {self.name} in {timeout}s") from exc
        pairs: list[tuple[str, object]]
        try:
            if self.auth == "md5":
                reply = await self._request(
                    protocol, "Challenge", [("AuthType", "MD5")], timeout=timeout
                )
                challenge = cast(Frame, reply).get("Challenge")
                if not challenge:
                    raise AMIAuthError(f"AMI {self.name} sent no MD5 challenge")
                key = hashlib.md5((challenge + self._secret).encode("utf-8")).hexdigest()
                pairs = [
                    ("AuthType", "MD5"),
                    ("Username", self.username),
                    ("Key", key),
                    ("Events", self.events),
                ]
            else:
                pairs = [
                    ("Username", self.username),
                    ("Secret", self._secret),
                    ("Events", self.events),
                ]
            await self._request(protocol, "Login", pairs, timeout=timeout)
        except AMIActionError as exc:
            raise AMIAuthError(
                f"AMI {self.name} refused login for {self.username!r}: {exc.message}"
            ) from exc
        except AMITimeoutError as exc:
            raise AMIConnectionError(f"AMI login to {self.name} timed out") from exc

    async def _supervise(self, protocol: _AMIProtocol) -> None:
        while True:
            reason = await asyncio.shield(protocol.closed)
            if self._closing:
                return
            self.last_disconnect_reason = reason
            logger.warning(
                "AMI connection to %s lost (%s); reconnecting",
                self.name,
                _describe(reason),
            )
            await self._run_hooks(self._on_disconnected, "on_disconnected")
            if not self.reconnect:
                return
            reconnected = await self._reconnect()
            if reconnected is None:
                return
            protocol = reconnected
            await self._run_hooks(self._on_connected, "on_connected")

    async def _reconnect(self) -> _AMIProtocol | None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1
            try:
                return await self._establish()
            except AMIAuthError as exc:
                self.last_disconnect_reason = exc
                logger.error(
                    "AMI %s refused our credentials on reconnect; giving up until restarted",
                    self.name,
                )
                return None
            except AMIConnectionError as exc:
                self.stats.connect_failures += 1
                logger.warning(
                    "AMI reconnect to %s failed (attempt %d): %s", self.name, attempt, exc
                )
            except Exception:
                self.stats.connect_failures += 1
                logger.exception("AMI reconnect to %s failed unexpectedly", self.name)
        return None

    async def _keepalive(self, protocol: _AMIProtocol, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if protocol is not self._protocol or not self._logged_in:
                return
            try:
                await self._request(protocol, "Ping", [], timeout=self.ping_timeout)
            except AMITimeoutError:
                self.stats.missed_pongs += 1
                logger.warning(
                    "AMI %s did not answer Ping within %ss; dropping the connection",
                    self.name,
                    self.ping_timeout,
                )
                protocol.abort(AMIConnectionError("AMI keepalive: no pong"))
                return
            except AMIError:
                return  # the connection is already going down

    async def _run_hooks(self, hooks: list[ConnectionHook], kind: str) -> None:
        for hook in list(hooks):
            try:
                await hook()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.hook_errors += 1
                logger.exception("AMI %s hook %s failed", kind, _callable_name(hook))

    # -- actions ---------------------------------------------------------------

    async def send_action(
        self,
        action: str,
        headers: HeaderInput | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the API; names the action
        **fields: object,
    ) -> Frame:
        """Send ``action`` and return its response.

        Headers come from ``headers`` (a mapping, or pairs for repeated names)
        and keyword arguments; a list value repeats the header (``Variable=[
        "A=1", "B=2"]``); ``None`` values are left out. ``timeout`` defaults to
        ``action_timeout``. Raises :class:`AMIActionError` on ``Response:
        Error``, :class:`AMITimeoutError`, :class:`AMIConnectionError`.
        """
        protocol = self._ready_protocol()
        reply = await self._request(
            protocol, action, _merge(headers, fields), timeout=self._timeout(timeout)
        )
        return cast(Frame, reply)

    async def send_list_action(
        self,
        action: str,
        headers: HeaderInput | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the API; names the action
        **fields: object,
    ) -> list[Frame]:
        """Send a list action (QueueStatus, CoreShowChannels, DBGet...) and collect it.

        Returns the events carrying its ActionID up to and including the one
        with ``EventList: Complete``; ``[]`` when the response has no
        ``EventList: start`` (not a list action). ``timeout`` covers the whole
        list. Those events are not given to the event handlers.
        """
        protocol = self._ready_protocol()
        reply = await self._request(
            protocol,
            action,
            _merge(headers, fields),
            timeout=self._timeout(timeout),
            collect=True,
        )
        return cast(list[Frame], reply)

    async def originate(
        self,
        headers: HeaderInput | None = None,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - part of the API; names the action
        **fields: object,
    ) -> Frame:
        """``Originate`` with ``Async: true``; returns its ``OriginateResponse`` event.

        The event's ``Response`` is ``Success`` or ``Failure`` (with ``Reason``);
        it arrives only when the first leg answers or fails, so ``timeout``
        must cover the ring time (and a queue wait for a Local channel). The
        event still reaches the event handlers too.
        """
        protocol = self._ready_protocol()
        pairs = _merge(headers, fields)
        action_id = next((str(v) for k, v in pairs if k.lower() == "actionid"), None)
        if action_id is None:
            action_id = new_action_id()
            pairs.insert(0, ("ActionID", action_id))
        pairs = [(k, v) for k, v in pairs if k.lower() != "async"] + [("Async", "true")]
        if action_id in self._originate_waiters:
            raise AMIError(f"an Originate with ActionID {action_id} is already waiting")
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        # Registered before the action is written: the OriginateResponse may come
        # in the same read as the response.
        self._originate_waiters[action_id] = waiter
        try:
            await self._request(protocol, "Originate", pairs, timeout=self.action_timeout)
            try:
                async with asyncio.timeout(timeout):
                    return await waiter
            except TimeoutError as exc:
                raise AMITimeoutError(
                    f"Originate {action_id}: no OriginateResponse within {timeout}s"
                ) from exc
        finally:
            self._originate_waiters.pop(action_id, None)
            _retrieve(waiter)

    def _ready_protocol(self) -> _AMIProtocol:
        protocol = self._protocol
        if protocol is None or not self._logged_in:
            raise AMIConnectionError(f"AMI {self.name} is not connected")
        return protocol

    def _timeout(self, timeout: float | None) -> float:
        return self.action_timeout if timeout is None else timeout

    async def _request(
        self,
        protocol: _AMIProtocol,
        action: str,
        pairs: list[tuple[str, object]],
        *,
        timeout: float,  # noqa: ASYNC109 - each action has its own limit
        collect: bool = False,
    ) -> Frame | list[Frame]:
        data, action_id = encode_action(action, cast(Headers, pairs))
        if action_id in self._pending:
            raise AMIError(f"ActionID {action_id} is already in use by a pending action")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = _Pending(action, future, collect=collect)
        try:
            protocol.write(data)
            self.stats.actions_sent += 1
            await protocol.drain()
            try:
                async with asyncio.timeout(timeout):
                    return cast(Frame | list[Frame], await future)
            except TimeoutError as exc:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    raise cast(BaseException, future.exception()) from None
                raise AMITimeoutError(
                    f"{action} ({action_id}) got no reply within {timeout}s"
                ) from exc
        finally:
            pending = self._pending.get(action_id)
            if pending is not None and pending.future is future:
                del self._pending[action_id]
            _retrieve(future)

    # -- AsyncAGI --------------------------------------------------------------

    async def agi(
        self,
        channel: str,
        command: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the API; names the command
    ) -> AGIResult:
        """Run an AGI command on a channel in ``AGI(agi:async)`` and return its result.

        Resolves on the ``AsyncAGIExec`` event with our CommandID. Raises
        :class:`AGIChannelGone` at once when the channel has left AsyncAGI or
        hung up (Asterisk would accept the command and never answer it),
        :class:`AMITimeoutError` after ``timeout`` (``None``: no limit; GET DATA
        has its own), :class:`AMIConnectionError` if the connection drops (the
        result would be lost with it).
        """
        if channel in self._agi_gone:
            raise AGIChannelGone(channel)
        protocol = self._ready_protocol()
        command_id = f"{self._agi_prefix}-{next(self._agi_ids)}"
        data, action_id = encode_action(
            "AGI", [("Channel", channel), ("Command", command), ("CommandID", command_id)]
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AGIResult] = loop.create_future()
        self._agi_commands[command_id] = _AGICommand(channel, future)
        self._agi_by_channel.setdefault(channel, set()).add(command_id)
        self._pending[action_id] = _Pending("AGI", future, agi_channel=channel)
        try:
            try:
                protocol.write(data)
            except AMIError:
                del self._pending[action_id]
                raise
            self.stats.actions_sent += 1
            await protocol.drain()
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError as exc:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    raise cast(BaseException, future.exception()) from None
                raise AMITimeoutError(
                    f"AGI command {command_id} got no result within {timeout}s"
                ) from exc
        finally:
            # The ack entry stays: Asterisk always acks, and an ack that comes
            # after the channel left must be consumed quietly, not counted as
            # unmatched. A lost connection clears it.
            self._agi_commands.pop(command_id, None)
            ids = self._agi_by_channel.get(channel)
            if ids is not None:
                ids.discard(command_id)
                if not ids:
                    del self._agi_by_channel[channel]
            _retrieve(future)

    def agi_channel_active(self, channel: str) -> bool:
        """Seen in AsyncAGIStart on this connection and not ended or hung up since."""
        return channel in self._agi_active

    def _agi_event(self, frame: Frame) -> None:
        channel = frame.get("Channel")
        if not channel:
            return
        name = frame.name
        if name == "AsyncAGIStart":
            self._agi_gone.pop(channel, None)
            self._agi_active.add(channel)
            return
        if name == "AsyncAGIExec":
            command_id = frame.get("CommandId")
            command = self._agi_commands.pop(command_id, None) if command_id else None
            if command is None or command.future.done():
                return
            try:
                result = decode_agi_result(frame.get("Result") or "")
            except AGIError as exc:
                command.future.set_exception(exc)
            else:
                command.future.set_result(result)
            return
        # AsyncAGIEnd or Hangup: nothing more will run on this channel.
        self._agi_active.discard(channel)
        gone = self._agi_gone
        gone[channel] = None
        gone.move_to_end(channel)
        while len(gone) > self._agi_gone_memory:
            gone.popitem(last=False)
        for command_id in self._agi_by_channel.pop(channel, ()):
            command = self._agi_commands.pop(command_id, None)
            if command is not None and not command.future.done():
                command.future.set_exception(AGIChannelGone(channel))

    # -- events ------------------------------------------------------------------

    def on_event(
        self, pattern: str, handler: EventHandler, *, queue_size: int | None = None
    ) -> EventSubscription:
        """Call ``handler(frame)`` for events named ``pattern`` (exact or glob, ``"*"``).

        Handlers may be coroutine functions. Each subscription runs in its own
        task from its own bounded queue (``queue_size``, default
        ``event_queue_size``), in the order events arrived. Handlers must not
        modify the frame: it is shared.
        """
        subscription = EventSubscription(
            self, pattern, handler, queue_size or self.event_queue_size
        )
        self._subscriptions.append(subscription)
        self._routes.clear()
        return subscription

    def _remove_subscription(self, subscription: EventSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
        self._routes.clear()

    def _dispatch(self, frame: Frame) -> None:
        name = frame.name
        route = self._routes.get(name)
        if route is None:
            route = tuple(s for s in self._subscriptions if s.matches(name))
            self._routes[name] = route
        for subscription in route:
            subscription._offer(frame)

    # -- the read path (synchronous; called from data_received) -------------------

    def _on_frames(self, protocol: _AMIProtocol, frames: list[Frame]) -> None:
        if protocol is not self._protocol:
            return
        stats = self.stats
        stats.frames_received += len(frames)
        pending = self._pending
        for frame in frames:
            kind = frame.kind
            if kind == "event":
                stats.events_received += 1
                action_id = frame.action_id
                if action_id is not None:
                    entry = pending.get(action_id)
                    if entry is not None and entry.collect:
                        self._list_event(action_id, entry, frame)
                        continue
                    if frame.name == "OriginateResponse":
                        waiter = self._originate_waiters.get(action_id)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(frame)
                if frame.name in _AGI_EVENTS:
                    self._agi_event(frame)
                self._dispatch(frame)
            elif kind == "response":
                self._response(frame)
            elif kind == "banner":
                if not protocol.banner.done():
                    protocol.banner.set_result(frame)

    def _response(self, frame: Frame) -> None:
        action_id = frame.action_id
        entry = self._pending.get(action_id) if action_id is not None else None
        if entry is None:
            self.stats.unmatched_responses += 1
            logger.debug("AMI %s: response for no pending action (%s)", self.name, action_id)
            return
        future = entry.future
        if frame.name.lower() == "error":
            del self._pending[cast(str, action_id)]
            if not future.done():
                future.set_exception(self._action_error(entry, frame))
            return
        if entry.agi_channel is not None:
            del self._pending[cast(str, action_id)]
            return
        if entry.collect and (frame.get("EventList") or "").lower() == "start":
            return  # the list's events follow; the Complete event resolves it
        if entry.collect:
            # Success without "EventList: start": no list is coming (not a list
            # action); waiting would only end in a timeout.
            del self._pending[cast(str, action_id)]
            if not future.done():
                future.set_result([])
            return
        del self._pending[cast(str, action_id)]
        if not future.done():
            future.set_result(frame)

    def _action_error(self, entry: _Pending, frame: Frame) -> AMIError:
        error = AMIActionError(entry.action, frame)
        if entry.agi_channel is not None and any(m in error.message for m in _AGI_GONE_MESSAGES):
            gone = AGIChannelGone(entry.agi_channel)
            gone.__cause__ = error
            return gone
        return error

    def _list_event(self, action_id: str, entry: _Pending, frame: Frame) -> None:
        entry.events.append(frame)
        marker = frame.get("EventList")
        if marker is not None and marker.lower() == "complete":
            del self._pending[action_id]
            if not entry.future.done():
                entry.future.set_result(entry.events)

    def _on_bad_frames(self, bad: list[BadFrame]) -> None:
        self.stats.bad_frames += len(bad)
        for each in bad:
            # The reason's tail quotes the offending line, which may hold a
            # number; its head says what was wrong.
            logger.warning(
                "AMI %s: skipped a malformed frame of %d bytes (%s)",
                self.name,
                each.size,
                each.reason.split(":", 1)[0],
            )

    def _on_protocol_error(self, protocol: _AMIProtocol, exc: AMIProtocolError) -> None:
        self.stats.protocol_errors += 1
        logger.warning("AMI %s: %s; dropping the connection", self.name, exc)
        protocol.abort(AMIConnectionError(f"AMI framing lost: {exc}"))

    def _on_connection_lost(self, protocol: _AMIProtocol, reason: BaseException | None) -> None:
        if protocol is not self._protocol:
            return
        was_logged_in = self._logged_in
        self._protocol = None
        self._logged_in = False
        if was_logged_in and not self._closing:
            self.stats.disconnects += 1
        detail = _describe(reason)
        self._fail_all(lambda: AMIConnectionError(f"AMI connection to {self.name} lost: {detail}"))
        # Whatever was in AsyncAGI may have left it while we were away.
        self._agi_active.clear()

    def _fail_all(self, error: Callable[[], AMIError]) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(error())
        commands, self._agi_commands = self._agi_commands, {}
        self._agi_by_channel.clear()
        for command in commands.values():
            if not command.future.done():
                command.future.set_exception(error())
        for waiter in self._originate_waiters.values():
            if not waiter.done():
                waiter.set_exception(error())


def _merge(headers: HeaderInput | None, fields: Mapping[str, object]) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    if headers is not None:
        pairs.extend(headers.items() if isinstance(headers, Mapping) else headers)
    pairs.extend(fields.items())
    return pairs


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Mark an exception set by the read path as seen when nobody awaited it.
    if future.done() and not future.cancelled():
        future.exception()
    elif not future.done():
        future.cancel()


def _describe(reason: BaseException | None) -> str:
    if reason is None:
        return "closed by the PBX"
    return str(reason) or type(reason).__name__


def _callable_name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
