"""Agents' commands reach the instance that owns the PBX, whichever instance took them.

Behind a load balancer an agent's console may be served by an instance that does
not own the PBX (only the owner holds the AMI stream and may change queue
members). :class:`OwnerRoutedDirectory` runs a command locally while this
instance owns the PBX, and otherwise sends it over the bus to the owner and
waits for the owner's answer. Views on a non-owner come from the owner's
``web.agent_changed`` events, so ``GET /api/me`` answers the same everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from callcenter.bus import Bus, BusEvent

from .errors import AgentError
from .views import AgentListener, AgentView, CallCard, PopListener

log = logging.getLogger(__name__)

COMMANDS = ("login", "logout", "pause", "unpause", "wrap_up_done")


class AgentCommand(BusEvent):
    topic: ClassVar[str] = "agents.command"

    request_id: str
    node: str
    username: str
    command: str
    reason: str | None = None


class AgentCommandResult(BusEvent):
    topic: ClassVar[str] = "agents.command_result"

    request_id: str
    view: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None


class RemoteAgentError(AgentError):
    """The owner refused the command; carries the owner's stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OwnerUnreachable(AgentError):
    code = "pbx_owner_unreachable"


def view_from_dict(data: dict[str, Any]) -> AgentView:
    """An AgentView from its JSON form (as carried on the bus)."""
    fields = dict(data)
    call = fields.get("call")
    if call is not None:
        call = dict(call)
        call["flags"] = tuple(call.get("flags") or ())
        fields["call"] = CallCard(**call)
    for name in ("queues", "paused_queues"):
        fields[name] = tuple(fields.get(name) or ())
    return AgentView(**fields)


class OwnerRoutedDirectory:
    """An AgentDirectory that works on every instance (see the module docstring)."""

    def __init__(
        self,
        local: Any,
        *,
        node: str,
        owning: Callable[[], bool],
        bus: Bus,
        timeout_s: float = 5.0,
        absent_views: Callable[[list[AgentView]], list[AgentView]] | None = None,
    ) -> None:
        self._local = local
        self._node = node
        self._owning = owning
        self._bus = bus
        self._timeout = timeout_s
        self._pending: dict[str, asyncio.Future[AgentCommandResult]] = {}
        self._remote_views: dict[str, AgentView] = {}
        #: Views of agents who are not signed in but should be seen (rostered now).
        self._absent_views = absent_views

    async def start(self) -> None:
        self._bus.subscribe(AgentCommand, self._on_command)
        self._bus.subscribe(AgentCommandResult, self._on_result)
        self._bus.subscribe("web.agent_changed", self._on_view)

    # -- on the owner ------------------------------------------------------------------

    async def _on_command(self, event: BusEvent) -> None:
        assert isinstance(event, AgentCommand)
        if event.node != self._node or not self._owning():
            return
        try:
            view = await self._run_local(event.command, event.username, event.reason)
        except AgentError as exc:
            result = AgentCommandResult(
                request_id=event.request_id, error_code=exc.code, error_message=str(exc)
            )
        else:
            result = AgentCommandResult(request_id=event.request_id, view=_as_dict(view))
        await self._bus.publish(result)

    async def _run_local(self, command: str, username: str, reason: str | None) -> AgentView:
        if command not in COMMANDS:
            raise RemoteAgentError("unknown_command", f"unknown agent command {command!r}")
        method: Callable[..., Awaitable[AgentView]] = getattr(self._local, command)
        return await (method(username, reason or "") if command == "pause" else method(username))

    # -- on any instance -------------------------------------------------------------------

    async def _on_result(self, event: BusEvent) -> None:
        assert isinstance(event, AgentCommandResult)
        future = self._pending.get(event.request_id)
        if future is not None and not future.done():
            future.set_result(event)

    async def _on_view(self, event: BusEvent) -> None:
        try:
            username = event.username  # type: ignore[attr-defined]
            self._remote_views[username] = view_from_dict(event.view)  # type: ignore[attr-defined]
        except (TypeError, AttributeError) as exc:
            log.warning("unreadable agent view on the bus: %s", type(exc).__name__)

    async def _command(self, command: str, username: str, reason: str | None = None) -> AgentView:
        if self._owning():
            return await self._run_local(command, username, reason)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[AgentCommandResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._bus.publish(AgentCommand(
                request_id=request_id, node=self._node, username=username,
                command=command, reason=reason,
            ))
            try:
                result = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise OwnerUnreachable(
                    "the instance that owns the PBX did not answer; try again in a moment"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if result.error_code is not None:
            raise RemoteAgentError(result.error_code, result.error_message or result.error_code)
        assert result.view is not None
        view = view_from_dict(result.view)
        self._remote_views[username] = view
        return view

    async def login(self, username: str) -> AgentView:
        return await self._command("login", username)

    async def logout(self, username: str) -> AgentView:
        return await self._command("logout", username)

    async def pause(self, username: str, reason: str) -> AgentView:
        return await self._command("pause", username, reason)

    async def unpause(self, username: str) -> AgentView:
        return await self._command("unpause", username)

    async def wrap_up_done(self, username: str) -> AgentView:
        return await self._command("wrap_up_done", username)

    def view(self, username: str) -> AgentView | None:
        if self._owning():
            return self._local.view(username)
        return self._remote_views.get(username) or self._local.view(username)

    def views(self) -> list[AgentView]:
        present = self._local.views() if self._owning() else list(self._remote_views.values())
        if self._absent_views is None:
            return present
        return present + self._absent_views(present)

    def pause_reasons(self) -> tuple[str, ...]:
        return self._local.pause_reasons()

    def on_change(self, listener: AgentListener) -> None:
        self._local.on_change(listener)

    def on_screen_pop(self, listener: PopListener) -> None:
        self._local.on_screen_pop(listener)


def _as_dict(view: AgentView) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(view)
