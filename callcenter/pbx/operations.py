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

    async def redirect_pair(
        self,
        channel: str,
        extra_channel: str,
        context: str,
        exten: str,
        *,
        extra_context: str | None = None,
        extra_exten: str | None = None,
        priority: int = 1,
    ) -> None:
        """Redirect both parties of a bridge at once (Redirect with ExtraChannel).

        Two separate Redirects would leave the second party alone in a dissolving
        bridge for a moment; Asterisk moves both together when asked in one action.
        """
        await self._write(
            "Redirect", Channel=channel, ExtraChannel=extra_channel,
            Context=context, Exten=exten, Priority=priority,
            ExtraContext=extra_context or context, ExtraExten=extra_exten or exten,
            ExtraPriority=priority,
        )

    # -- transfers (bridge_basic.c semantics, driven by AMI) ------------------------

    async def blind_transfer(self, transferer: str, context: str, exten: str) -> None:
        """BlindTransfer: the *other* parties of ``transferer``'s bridge go to the dialplan.

        ``transferer`` is the agent's channel; Asterisk answers Success once the transferee
        is placed at ``context``/``exten`` (not when anyone answers there) and raises a
        BlindTransfer event with the Result.
        """
        await self._write("BlindTransfer", Channel=transferer, Context=context, Exten=exten)

    async def attended_transfer(self, transferer: str, context: str, exten: str) -> None:
        """Atxfer: the transferee hears hold music while ``transferer`` dials ``exten``.

        Completion is Asterisk's: the transferer hanging up while consulting completes the
        transfer (bridge_basic.c, TRANSFER_CONSULTING + transferer hangup), so a first agent
        who drops mid-consult does not drop the caller.
        """
        await self._write("Atxfer", Channel=transferer, Context=context, Exten=exten)

    async def cancel_attended_transfer(self, transferer: str) -> None:
        """CancelAtxfer: the consult leg ends, the transferer is back with the caller.

        Uses the ``atxferabort`` feature; Asterisk refuses when none is configured or no
        attended transfer is in progress on ``transferer``.
        """
        await self._write("CancelAtxfer", Channel=transferer)

    async def complete_attended_transfer(self, transferer: str) -> None:
        """Complete a consult by hanging up the transferer's channel.

        AMI has no "complete" action; hanging up is what a phone does and what
        bridge_basic.c turns into the completed transfer (AttendedTransfer event).
        """
        await self.hangup(transferer)

    async def spy(
        self,
        supervisor_interface: str,
        target_channel: str,
        mode: str,
        *,
        context: str = "wpl-supervise",
        caller_id: str = '"1090 supervision" <1090>',
        timeout_s: float = 30.0,
        action_id: str | None = None,
    ) -> str:
        """Ring the supervisor's own phone; once she answers, ChanSpy on ``target_channel``.

        ``mode`` is the extension in ``context`` (listen / whisper / barge), each running
        ChanSpy with its options; the target travels as WPL_SPY_TARGET (ChanSpy's ``u``
        option takes a full channel name). Returns the ActionID of the OriginateResponse.
        """
        return await self.originate(
            OriginateRequest(
                channel=supervisor_interface, context=context, exten=mode,
                caller_id=caller_id, variables={"WPL_SPY_TARGET": target_channel},
                timeout_s=timeout_s,
            ),
            action_id=action_id,
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
