"""Live feeds: an agent's console and the supervisors' wallboard, across instances.

Three parts:

* :class:`ClientSocket`: one browser's socket with its own bounded send queue and writer
  task. A browser on a bad link must never hold back anyone else's screen-pop, so a
  socket whose queue fills is closed (code 1013, "try again later") and its browser
  reconnects and gets a fresh full state.
* :class:`SocketHub`: the sockets of this instance, by agent and by kind.
* :class:`WebFanout`: the agents service's listeners publish on the bus; bus events are
  delivered to this instance's sockets. So a screen-pop raised by the instance that
  follows the PBX reaches a console connected to any instance, and only that agent's
  console. It also keeps what the other instances have said (agent views, queue stats),
  so a wallboard served by an instance that follows no PBX is as full as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import WSMsgType, web

from callcenter.agents.views import AgentDirectory, AgentView, ScreenPop
from callcenter.bus import Bus, BusEvent, Subscription

from .auth import session_of
from .bus_events import AgentChanged, QueuesUpdated, ScreenPopped
from .deps import StatsSource, WebOptions
from .keys import FANOUT, HUB, OPTIONS, SESSIONS
from .metrics import WebMetrics
from .openapi import ALL_ROLES, SUPERVISORS, api
from .security import check_origin

log = logging.getLogger(__name__)

SocketKind = Literal["console", "wallboard"]

# Close codes: 1013 "try again later" for a socket that fell behind; 4401 (private range)
# when the session behind the socket is gone, so the page goes back to sign-in.
CLOSE_TOO_SLOW = 1013
CLOSE_SIGNED_OUT = 4401


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def view_dict(view: AgentView) -> dict[str, Any]:
    return json.loads(_dumps(dataclasses.asdict(view)))


class ClientSocket:
    """One open socket: a bounded queue of text messages and the task that writes them."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        kind: SocketKind,
        username: str,
        capacity: int,
        on_slow: Callable[[ClientSocket], None],
    ) -> None:
        self.ws = ws
        self.kind = kind
        self.username = username
        self.closed = False
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=capacity)
        self._on_slow = on_slow
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"ws-writer:{kind}"
        )

    def offer(self, text: str) -> bool:
        """Queue ``text``; a full queue means this browser cannot keep up: close it."""
        if self.closed:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.closed = True
            self._on_slow(self)
            return False
        return True

    async def _write(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self.closed = True  # the peer went away; the handler's read loop ends too

    async def close(self, code: int, reason: bytes) -> None:
        self.closed = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason)


class SocketHub:
    """The open sockets of this instance."""

    def __init__(self, *, capacity: int, metrics: WebMetrics) -> None:
        self._capacity = capacity
        self._metrics = metrics
        self._consoles: dict[str, set[ClientSocket]] = {}
        self._wallboards: set[ClientSocket] = set()
        self._closing: set[asyncio.Task[None]] = set()

    def attach(self, ws: web.WebSocketResponse, *, kind: SocketKind, username: str) -> ClientSocket:
        client = ClientSocket(
            ws, kind=kind, username=username, capacity=self._capacity, on_slow=self._too_slow
        )
        if kind == "console":
            self._consoles.setdefault(username, set()).add(client)
        else:
            self._wallboards.add(client)
        self._metrics.ws_clients.labels(kind).inc()
        return client

    def detach(self, client: ClientSocket) -> None:
        if client.kind == "console":
            mine = self._consoles.get(client.username)
            if mine is not None and client in mine:
                mine.discard(client)
                if not mine:
                    del self._consoles[client.username]
                self._metrics.ws_clients.labels("console").dec()
        elif client in self._wallboards:
            self._wallboards.discard(client)
            self._metrics.ws_clients.labels("wallboard").dec()

    def console_users(self) -> list[str]:
        return list(self._consoles)

    @property
    def wallboard_count(self) -> int:
        return len(self._wallboards)

    def to_console(self, username: str, text: str) -> int:
        return sum(client.offer(text) for client in list(self._consoles.get(username, ())))

    def to_wallboards(self, text: str) -> int:
        return sum(client.offer(text) for client in list(self._wallboards))

    def _too_slow(self, client: ClientSocket) -> None:
        self._metrics.ws_dropped.labels(client.kind).inc()
        log.warning("closing a %s socket that cannot keep up", client.kind)
        self.detach(client)
        task = asyncio.get_running_loop().create_task(
            client.close(CLOSE_TOO_SLOW, b"too slow; reconnect")
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        clients = [c for group in self._consoles.values() for c in group] + list(self._wallboards)
        for client in clients:
            self.detach(client)
        await asyncio.gather(
            *(c.close(1001, b"server shutting down") for c in clients), *self._closing
        )


class WebFanout:
    """Agents' changes -> bus -> every instance's sockets; a read model of the others."""

    def __init__(
        self,
        *,
        agents: AgentDirectory,
        bus: Bus,
        hub: SocketHub,
        stats: StatsSource,
        options: WebOptions,
        overdue_referrals: Callable[[], list[dict[str, Any]]] | None = None,
        outbox_size: int = 10_000,
    ) -> None:
        self._agents = agents
        # The referral service's list, kept fresh by its sweep (this loop cannot await).
        self._overdue_referrals = overdue_referrals
        self._bus = bus
        self._hub = hub
        self._stats = stats
        self._options = options
        self._outbox: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize=outbox_size)
        self._remote_views: dict[str, dict[str, Any]] = {}
        self._remote_queues: dict[str, tuple[float, dict[str, Any]]] = {}
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.outbox_dropped = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._subscriptions = [
            self._bus.subscribe(AgentChanged, self._on_agent_changed),
            self._bus.subscribe(ScreenPopped, self._on_screen_popped),
            self._bus.subscribe(QueuesUpdated, self._on_queues_updated),
        ]
        self._agents.on_change(self._agent_changed)
        self._agents.on_screen_pop(self._screen_popped)
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish_loop(), name="web-fanout:publish"),
            loop.create_task(self._console_loop(), name="web-fanout:consoles"),
            loop.create_task(self._wallboard_loop(), name="web-fanout:wallboards"),
        ]

    async def close(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            await subscription.close()

    # -- from the agents service (synchronous listeners) ------------------------

    def _agent_changed(self, view: AgentView) -> None:
        self._post(AgentChanged(username=view.username, view=view_dict(view)))

    def _screen_popped(self, pop: ScreenPop) -> None:
        pop_dict = json.loads(_dumps(dataclasses.asdict(pop)))
        self._post(ScreenPopped(username=pop.username, pop=pop_dict))

    def _post(self, event: BusEvent) -> None:
        if not self._running:
            return
        if self._outbox.full():
            # Never block the agents service (and through it the AMI reader).
            self._outbox.get_nowait()
            self.outbox_dropped += 1
        self._outbox.put_nowait(event)

    async def _publish_loop(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await self._bus.publish(event)
            except Exception:
                log.exception("web fan-out: could not publish %s", event.topic)

    # -- from the bus (every instance, this one included) -------------------------

    async def _on_agent_changed(self, event: AgentChanged) -> None:
        self._remote_views[event.username] = event.view
        text = _dumps({"type": "agent", "agent": event.view})
        self._hub.to_console(event.username, text)
        self._hub.to_wallboards(text)

    async def _on_screen_popped(self, event: ScreenPopped) -> None:
        self._hub.to_console(event.username, _dumps({"type": "pop", "pop": event.pop}))

    async def _on_queues_updated(self, event: QueuesUpdated) -> None:
        self._remote_queues[event.node] = (time.monotonic(), event.snapshot)

    # -- read model ----------------------------------------------------------------

    def agent_view(self, username: str) -> dict[str, Any] | None:
        local = self._agents.view(username)
        if local is not None:
            return view_dict(local)
        return self._remote_views.get(username)

    def agent_views(self) -> list[dict[str, Any]]:
        merged = dict(self._remote_views)
        for view in self._agents.views():
            merged[view.username] = view_dict(view)
        return [merged[name] for name in sorted(merged)]

    def local_snapshots(self) -> dict[str, dict[str, Any]]:
        snapshots: dict[str, dict[str, Any]] = {}
        for node, snapshot in self._stats().items():
            if hasattr(snapshot, "model_dump"):
                snapshot = snapshot.model_dump(mode="json")
            snapshots[node] = snapshot
        return snapshots

    def queue_snapshots(self) -> list[dict[str, Any]]:
        """Every node's latest snapshot: this instance's own, then fresh ones from others."""
        merged = self.local_snapshots()
        # An instance that stopped publishing (died, lost its PBX) must not freeze numbers
        # on the wallboard as if they were live.
        stale_after = max(5.0, 5 * self._options.wallboard_interval)
        now = time.monotonic()
        for node, (received, snapshot) in self._remote_queues.items():
            if node not in merged and now - received <= stale_after:
                merged[node] = snapshot
        return [merged[node] for node in sorted(merged)]

    def abandoned(self, snapshots: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        calls = [
            {"node": snapshot.get("node"), **call}
            for snapshot in (snapshots if snapshots is not None else self.queue_snapshots())
            for call in snapshot.get("abandoned_calls", ())
        ]
        calls.sort(key=lambda c: c.get("at") or 0, reverse=True)
        return calls

    def wallboard(self) -> dict[str, Any]:
        snapshots = self.queue_snapshots()
        overdue_referrals = self._overdue_referrals
        return {
            "type": "wallboard",
            "at": time.time(),
            "queues": snapshots,
            "agents": self.agent_views(),
            "abandoned": self.abandoned(snapshots),
            "overdue_referrals": overdue_referrals() if overdue_referrals is not None else [],
        }

    def console_hello(self, username: str) -> dict[str, Any]:
        return {
            "type": "hello",
            "agent": self.agent_view(username),
            "pause_reasons": list(self._agents.pause_reasons()),
        }

    # -- periodic pushes --------------------------------------------------------

    async def _console_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.console_interval)
            for username in self._hub.console_users():
                view = self.agent_view(username)
                self._hub.to_console(username, _dumps({"type": "agent", "agent": view}))

    async def _wallboard_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.wallboard_interval)
            try:
                for node, snapshot in self.local_snapshots().items():
                    await self._bus.publish(QueuesUpdated(node=node, snapshot=snapshot))
                if self._hub.wallboard_count:
                    self._hub.to_wallboards(_dumps(self.wallboard()))
            except Exception:
                log.exception("web fan-out: wallboard update failed")


# -- handlers ----------------------------------------------------------------------


async def _serve(
    request: web.Request, *, kind: SocketKind, hello: dict[str, Any]
) -> web.WebSocketResponse:
    session = session_of(request)
    options = request.app[OPTIONS]
    check_origin(request, options.allowed_origins)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    hub = request.app[HUB]
    client = hub.attach(ws, kind=kind, username=session.username)
    client.offer(_dumps(hello))
    sessions = request.app[SESSIONS]
    try:
        while not ws.closed and not client.closed:
            try:
                message = await ws.receive(timeout=options.socket_session_check)
            except TimeoutError:
                if await sessions.get(session.id) is None:
                    await client.close(CLOSE_SIGNED_OUT, b"signed out")
                    break
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):
                break
            # Pages send nothing we act on: commands go through the REST API with CSRF.
    finally:
        hub.detach(client)
        if not client.closed:
            await client.close(1000, b"")
    return ws


@api("Her console's live feed: her state and her screen-pops (WebSocket)",
     roles=ALL_ROLES, websocket=True, tags=["live"])
async def console_socket(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    hello = request.app[FANOUT].console_hello(session.username)
    return await _serve(request, kind="console", hello=hello)


@api("The wallboard's live feed: queues, agents, abandoned calls (WebSocket)",
     roles=SUPERVISORS, websocket=True, tags=["live"])
async def wallboard_socket(request: web.Request) -> web.StreamResponse:
    return await _serve(request, kind="wallboard", hello=request.app[FANOUT].wallboard())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/console", console_socket, allow_head=False)
    app.router.add_get("/ws/wallboard", wallboard_socket, allow_head=False)
