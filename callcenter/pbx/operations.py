"""Typed PBX operations over AMI.

Domain code calls these instead of composing actions. They also own the
idempotency the backend needs when it re-applies its intent after a reconnect:
adding a member who is already there, or removing one who is gone, is not an
error. Every write first calls ``guard()``; the instance that owns the PBX passes
a check of its lease there, so a stale owner cannot steer calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from callcenter.ami import AMIActionError, Frame

from .errors import PbxOperationError


class ActionSender(Protocol):
    """What operations need from an AMI client (``callcenter.ami.AMIClient``)."""

    async def send_action(
        self, action: str, headers: Mapping[str, object] | None = None, **kwargs: object
    ) -> Frame: ...

    async def send_list_action(
        self, action: str, headers: Mapping[str, object] | None = None, **kwargs: object
    ) -> list[Frame]: ...


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """An outbound call. ``variables`` become channel variables on every leg.

    ``timeout_s`` is how long Asterisk waits for the first leg to answer; for a
    callback that first queues for an agent it must cover the queue wait too.
    """

    channel: str
    context: str
    exten: str
    priority: int = 1
    caller_id: str | None = None
    variables: Mapping[str, str] | None = None
    timeout_s: float = 30.0
    account_code: str | None = None


def _no_guard() -> None:
    return None


class PbxOperations:
    def __init__(self, ami: ActionSender, *, guard: Callable[[], None] = _no_guard) -> None:
        self._ami = ami
        self._guard = guard

    async def _write(self, action: str, **headers: object) -> Frame:
        self._guard()
        try:
            return await self._ami.send_action(action, **headers)
        except AMIActionError as exc:
            raise PbxOperationError(action, exc.message) from exc

    # -- queue members ---------------------------------------------------------

    async def add_member(
        self,
        queue: str,
        interface: str,
        *,
        member_name: str | None = None,
        state_interface: str | None = None,
        penalty: int = 0,
        paused: bool = False,
        reason: str | None = None,
    ) -> bool:
        """QueueAdd; returns False when she was already a member (not an error)."""
        try:
            await self._write(
                "QueueAdd", Queue=queue, Interface=interface, MemberName=member_name,
                StateInterface=state_interface, Penalty=penalty, Paused=paused,
                Reason=reason if paused else None,
            )
        except PbxOperationError as exc:
            if "Already there" in exc.pbx_message:
                return False
            raise
        return True

    async def remove_member(self, queue: str, interface: str) -> bool:
        """QueueRemove; returns False when she was not a member."""
        try:
            await self._write("QueueRemove", Queue=queue, Interface=interface)
        except PbxOperationError as exc:
            if "Not there" in exc.pbx_message:
                return False
            raise
        return True

    async def pause_member(
        self, interface: str, paused: bool, *, queue: str | None = None, reason: str = ""
    ) -> None:
        """QueuePause in one queue (``queue``) or, without it, in every queue."""
        await self._write(
            "QueuePause", Interface=interface, Paused=paused, Queue=queue,
            Reason=reason or None,
        )

    async def set_penalty(self, interface: str, penalty: int, *, queue: str | None = None) -> None:
        await self._write("QueuePenalty", Interface=interface, Penalty=penalty, Queue=queue)

    # -- calls -----------------------------------------------------------------

    async def originate(self, request: OriginateRequest, *, action_id: str | None = None) -> str:
        """Async Originate; returns the ActionID its OriginateResponse will carry."""
        variables = [f"{k}={v}" for k, v in (request.variables or {}).items()]
        response = await self._write(
            "Originate",
            ActionID=action_id,
            Channel=request.channel,
            Context=request.context,
            Exten=request.exten,
            Priority=request.priority,
            CallerID=request.caller_id,
            Timeout=int(request.timeout_s * 1000),
            Account=request.account_code,
            Variable=variables or None,
            Async=True,
        )
        return response.action_id or ""

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None:
        await self._write(
            "Redirect", Channel=channel, Context=context, Exten=exten, Priority=priority
        )

    async def hangup(self, channel: str, cause: int = 16) -> None:
        await self._write("Hangup", Channel=channel, Cause=cause)

    async def set_variable(self, channel: str, variable: str, value: str) -> None:
        await self._write("Setvar", Channel=channel, Variable=variable, Value=value)

    async def get_variable(self, channel: str, variable: str) -> str | None:
        try:
            response = await self._ami.send_action("Getvar", Channel=channel, Variable=variable)
        except AMIActionError as exc:
            raise PbxOperationError("Getvar", exc.message) from exc
        value = response.get("Value")
        return value if value not in (None, "") else None

    async def start_recording(self, channel: str, file: str, options: str = "b") -> None:
        await self._write("MixMonitor", Channel=channel, File=file, Options=options)

    async def stop_recording(self, channel: str) -> None:
        await self._write("StopMixMonitor", Channel=channel)

    # -- AstDB -------------------------------------------------------------------

    async def db_put(self, family: str, key: str, value: str) -> None:
        await self._write("DBPut", Family=family, Key=key, Val=value)

    async def db_get(self, family: str, key: str) -> str | None:
        try:
            items = await self._ami.send_list_action("DBGet", Family=family, Key=key)
        except AMIActionError as exc:
            if "not found" in exc.message:
                return None
            raise PbxOperationError("DBGet", exc.message) from exc
        for item in items:
            if item.name == "DBGetResponse":
                return item.get("Val")
        return None

    async def db_del(self, family: str, key: str) -> bool:
        try:
            await self._write("DBDel", Family=family, Key=key)
        except PbxOperationError as exc:
            if "not found" in exc.pbx_message.lower():
                return False
            raise
        return True

    # -- snapshots (read-only) -----------------------------------------------------

    async def queue_status(self, queue: str | None = None) -> list[Frame]:
        return await self._ami.send_list_action("QueueStatus", Queue=queue)

    async def channels(self) -> list[Frame]:
        return await self._ami.send_list_action("CoreShowChannels")
