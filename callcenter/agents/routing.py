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


# -- transfers and supervision ---------------------------------------------------------------

TRANSFER_COMMANDS = (
    "blind", "warm", "conference", "complete", "cancel", "supervise", "switch", "stop",
)


class TransferCommand(BusEvent):
    """A transfer or supervision command taken by an instance that does not own the PBX."""

    topic: ClassVar[str] = "transfers.command"

    request_id: str
    node: str
    username: str
    command: str
    destination: str | None = None
    category: str | None = None
    note: str = ""
    agent: str | None = None
    mode: str | None = None


class TransferCommandResult(BusEvent):
    topic: ClassVar[str] = "transfers.command_result"

    request_id: str
    #: The hand-over (blind / warm / conference) or the supervision session, as JSON.
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None


def _refusal(code: str, message: str) -> AgentError:
    """The owner's refusal as the same exception type it raised there (same HTTP status)."""
    from . import supervision, transfers

    for module in (transfers, supervision):
        for name in module.__all__:
            kind = getattr(module, name)
            if isinstance(kind, type) and issubclass(kind, AgentError) and kind.code == code:
                return kind(message)
    return RemoteAgentError(code, message)


class OwnerRoutedTransfers:
    """Transfers and supervision that work on every instance, like the agent commands.

    While this instance owns the PBX the local services run the command; otherwise the
    command goes over the bus to the owner, whose answer (or refusal, with its code)
    comes back. The receiving agent's pop already travels the bus (``web.screen_popped``).
    """

    def __init__(
        self,
        transfers: Any,
        supervision: Any | None,
        *,
        node: str,
        owning: Callable[[], bool],
        bus: Bus,
        timeout_s: float = 5.0,
    ) -> None:
        self._transfers = transfers
        self._supervision = supervision
        self._node = node
        self._owning = owning
        self._bus = bus
        self._timeout = timeout_s
        self._pending: dict[str, asyncio.Future[TransferCommandResult]] = {}
        #: Sessions as the owner last answered them, for GET on this instance.
        self._remote_sessions: dict[str, Any] = {}
        self.supervision = _RoutedSupervision(self) if supervision is not None else None

    async def start(self) -> None:
        self._bus.subscribe(TransferCommand, self._on_command)
        self._bus.subscribe(TransferCommandResult, self._on_result)

    # -- the transfer service's interface ----------------------------------------------

    def destinations(self) -> Any:
        return self._transfers.destinations()

    async def blind(self, username: str, destination: str, *, category: str | None = None,
                    note: str = "") -> Any:
        return await self._handover("blind", username, destination, category, note)

    async def warm(self, username: str, destination: str, *, category: str | None = None,
                   note: str = "") -> Any:
        return await self._handover("warm", username, destination, category, note)

    async def conference(self, username: str, destination: str, *,
                         category: str | None = None, note: str = "") -> Any:
        return await self._handover("conference", username, destination, category, note)

    async def complete(self, username: str) -> None:
        await self._run(TransferCommand(request_id="", node=self._node, username=username,
                                        command="complete"))

    async def cancel(self, username: str) -> None:
        await self._run(TransferCommand(request_id="", node=self._node, username=username,
                                        command="cancel"))

    async def _handover(self, kind: str, username: str, destination: str,
                        category: str | None, note: str) -> Any:
        from .transfers import Handover

        data = await self._run(TransferCommand(
            request_id="", node=self._node, username=username, command=kind,
            destination=destination, category=category, note=note,
        ))
        if isinstance(data, Handover):
            return data
        assert data is not None
        return Handover(**{**data, "flags": tuple(data["flags"]), "notes": tuple(data["notes"])})

    # -- on the owner ------------------------------------------------------------------------

    async def _on_command(self, event: BusEvent) -> None:
        assert isinstance(event, TransferCommand)
        if event.node != self._node or not self._owning():
            return
        try:
            result = _jsonable(await self._local(event))
        except AgentError as exc:
            answer = TransferCommandResult(request_id=event.request_id, error_code=exc.code,
                                           error_message=str(exc))
        else:
            answer = TransferCommandResult(request_id=event.request_id, result=result)
        await self._bus.publish(answer)

    async def _local(self, command: TransferCommand) -> Any:
        name, user = command.command, command.username
        if name in ("blind", "warm", "conference"):
            start = getattr(self._transfers, name)
            return await start(user, command.destination or "", category=command.category,
                               note=command.note)
        if name in ("complete", "cancel"):
            await getattr(self._transfers, name)(user)
            return None
        if self._supervision is None:
            raise RemoteAgentError("supervision_off", "supervision is not configured here")
        if name == "supervise":
            return await self._supervision.start(user, command.agent or "", command.mode or "")
        if name == "switch":
            return await self._supervision.switch(user, command.mode or "")
        if name == "stop":
            await self._supervision.stop(user)
            return None
        raise RemoteAgentError("unknown_command", f"unknown transfer command {name!r}")

    # -- on any instance ---------------------------------------------------------------------

    async def _on_result(self, event: BusEvent) -> None:
        assert isinstance(event, TransferCommandResult)
        future = self._pending.get(event.request_id)
        if future is not None and not future.done():
            future.set_result(event)

    async def _run(self, command: TransferCommand) -> Any:
        if self._owning():
            return await self._local(command)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[TransferCommandResult] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = future
        try:
            await self._bus.publish(command.model_copy(update={"request_id": request_id}))
            try:
                result = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                # Not retried: a transfer the owner did run must not run twice.
                raise OwnerUnreachable(
                    "the instance that owns the PBX did not answer; check the call before "
                    "trying again"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if result.error_code is not None:
            raise _refusal(result.error_code, result.error_message or result.error_code)
        return result.result


class _RoutedSupervision:
    """The supervision service's interface, routed like the transfers."""

    def __init__(self, routed: OwnerRoutedTransfers) -> None:
        self._routed = routed

    async def start(self, supervisor: str, agent: str, mode: str) -> Any:
        return self._session(supervisor, await self._routed._run(TransferCommand(
            request_id="", node=self._routed._node, username=supervisor, command="supervise",
            agent=agent, mode=mode)))

    async def switch(self, supervisor: str, mode: str) -> Any:
        return self._session(supervisor, await self._routed._run(TransferCommand(
            request_id="", node=self._routed._node, username=supervisor, command="switch",
            mode=mode)))

    async def stop(self, supervisor: str) -> None:
        await self._routed._run(TransferCommand(
            request_id="", node=self._routed._node, username=supervisor, command="stop"))
        self._routed._remote_sessions.pop(supervisor.strip().lower(), None)

    def session_of(self, supervisor: str) -> Any:
        local = self._routed._supervision
        if self._routed._owning() and local is not None:
            return local.session_of(supervisor)
        return self._routed._remote_sessions.get(supervisor.strip().lower())

    def _session(self, supervisor: str, data: Any) -> Any:
        from .supervision import SupervisionSession

        session = data if isinstance(data, SupervisionSession) else SupervisionSession(**data)
        self._routed._remote_sessions[supervisor.strip().lower()] = session
        return session


def _jsonable(value: Any) -> dict[str, Any] | None:
    from dataclasses import asdict, is_dataclass

    if value is None:
        return None
    assert is_dataclass(value) and not isinstance(value, type)
    return asdict(value)
