"""Supervisors listen to, whisper to, or barge into an agent's call, from the wallboard.

The supervisor's own softphone is rung (AMI Originate); when she answers, her channel
runs ``[wpl-supervise]`` at the mode's extension, which starts ChanSpy on the agent's
channel (options from apps/app_chanspy.c):

- ``listen``: ``ChanSpy(<agent channel>,quES)``: she hears both sides, nobody hears her;
- ``whisper``: adds ``w``: the agent hears her, the caller does not;
- ``barge``: adds ``B``: both the agent and the caller hear her.

``u`` makes ChanSpy take the full channel name, ``E`` ends the session when the agent's
channel hangs up, ``S`` when nothing is left to spy on, ``q`` keeps beeps and channel
names away from the call. Switching mode during the call redirects her channel to the
new mode's extension (AMI Redirect): ChanSpy stops and starts again on the same target,
her phone stays up. Every start, switch and end is a row in the audit log
(``supervision.*``, subject ``agent:<username>``), so a supervisor's listening is never
invisible.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from callcenter.cases.audit import AuditLog
from callcenter.pbx import events as ev
from callcenter.pbx.errors import PbxOperationError
from callcenter.pbx.node import PbxNode

from .errors import AgentError
from .models import Account

log = logging.getLogger(__name__)

SpyMode = Literal["listen", "whisper", "barge"]
MODES: tuple[SpyMode, ...] = ("listen", "whisper", "barge")

AUDIT_START = "supervision.start"
AUDIT_MODE = "supervision.mode"
AUDIT_END = "supervision.end"


class SupervisionError(AgentError):
    code = "supervision_failed"


class NotASupervisor(SupervisionError):
    code = "not_supervisor"


class AgentNotOnCall(SupervisionError):
    code = "agent_not_on_call"


class AlreadySupervising(SupervisionError):
    code = "already_supervising"


class NoSession(SupervisionError):
    code = "no_supervision"


class UnknownMode(SupervisionError):
    code = "unknown_mode"


class Accounts(Protocol):
    async def get(self, username: str) -> Account: ...


@dataclass(slots=True)
class SupervisionSession:
    supervisor: str
    supervisor_interface: str
    agent: str
    agent_channel: str
    linkedid: str
    mode: SpyMode
    action_id: str
    #: Her leg, once the PBX names it (OriginateResponse or ChanSpyStart).
    channel: str | None = None
    spying: bool = False
    ended: bool = False


class SupervisionService:
    """Listen / whisper / barge sessions on one PBX node."""

    def __init__(
        self,
        node: PbxNode,
        accounts: Accounts,
        audit: AuditLog,
        *,
        context: str = "wpl-supervise",
        on_change: Callable[[SupervisionSession], None] | None = None,
    ) -> None:
        self._node = node
        self._accounts = accounts
        self._audit = audit
        self._context = context
        self._on_change = on_change
        self._sessions: dict[str, SupervisionSession] = {}  # by supervisor
        self._tasks: set[asyncio.Task[None]] = set()
        node.on_event(self._on_event)

    def sessions(self) -> list[SupervisionSession]:
        return [s for s in self._sessions.values() if not s.ended]

    def session_of(self, supervisor: str) -> SupervisionSession | None:
        session = self._sessions.get(supervisor.strip().lower())
        return None if session is None or session.ended else session

    async def start(self, supervisor: str, agent: str, mode: str) -> SupervisionSession:
        chosen = _mode(mode)
        boss = await self._accounts.get(supervisor)
        if str(boss.role) != "supervisor":
            raise NotASupervisor("only a supervisor listens to, whispers to or barges a call")
        if self.session_of(boss.username) is not None:
            raise AlreadySupervising("end your current session first, or switch its mode")
        worker = await self._accounts.get(agent)
        channel, linkedid = self._agent_leg(worker.endpoint)
        session = SupervisionSession(
            boss.username, boss.endpoint, worker.username, channel, linkedid, chosen,
            action_id=f"spy-{uuid.uuid4().hex[:12]}",
        )
        self._sessions[boss.username] = session
        # Audited before her phone rings: a session that never connects is still recorded.
        await self._audit.record(
            actor=boss.username, action=AUDIT_START, subject=f"agent:{worker.username}",
            details={"mode": chosen, "call": f"{self._node.name}:{linkedid}"},
        )
        try:
            await self._node.ops.spy(
                boss.endpoint, channel, chosen, context=self._context,
                action_id=session.action_id,
            )
        except PbxOperationError as exc:
            await self._end(session, reason="pbx_refused")
            raise SupervisionError(f"the PBX refused: {exc.pbx_message}") from exc
        self._changed(session)
        return session

    async def switch(self, supervisor: str, mode: str) -> SupervisionSession:
        chosen = _mode(mode)
        session = self.session_of(supervisor)
        if session is None:
            raise NoSession("you are not listening to a call")
        if session.channel is None:
            raise NoSession("your phone has not answered yet; switch once it has")
        if chosen == session.mode:
            return session
        try:
            await self._node.ops.redirect(session.channel, self._context, chosen)
        except PbxOperationError as exc:
            raise SupervisionError(f"the PBX refused: {exc.pbx_message}") from exc
        previous, session.mode = session.mode, chosen
        await self._audit.record(
            actor=session.supervisor, action=AUDIT_MODE, subject=f"agent:{session.agent}",
            details={"from": previous, "to": chosen,
                     "call": f"{self._node.name}:{session.linkedid}"},
        )
        self._changed(session)
        return session

    async def stop(self, supervisor: str) -> None:
        session = self.session_of(supervisor)
        if session is None:
            raise NoSession("you are not listening to a call")
        if session.channel is not None:
            try:
                await self._node.ops.hangup(session.channel)
            except PbxOperationError:
                pass  # already gone: the end is recorded all the same
        await self._end(session, reason="supervisor")

    # -- helpers ------------------------------------------------------------------------

    def _agent_leg(self, endpoint: str) -> tuple[str, str]:
        for call in self._node.model.calls.values():
            holding = call.holder()
            if holding is not None and holding.interface == endpoint:
                return holding.channel, call.linkedid
            if call.phase == "connected" and call.agent_interface == endpoint and (
                call.agent_channel
            ):
                return call.agent_channel, call.linkedid
        raise AgentNotOnCall("she is not on a call now")

    async def _end(self, session: SupervisionSession, *, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        self._sessions.pop(session.supervisor, None)
        await self._audit.record(
            actor=session.supervisor, action=AUDIT_END, subject=f"agent:{session.agent}",
            details={"mode": session.mode, "reason": reason,
                     "call": f"{self._node.name}:{session.linkedid}"},
        )
        self._changed(session)

    def _changed(self, session: SupervisionSession) -> None:
        if self._on_change is not None:
            try:
                self._on_change(session)
            except Exception:  # noqa: BLE001 - a screen must not stop the session
                log.exception("supervision listener failed")

    def _on_event(self, event: ev.PbxEvent) -> None:
        if isinstance(event, ev.OriginateFinished):
            for session in self.sessions():
                if session.action_id == event.action_id:
                    if event.success:
                        session.channel = event.channel or session.channel
                    else:
                        self._spawn(self._end(session, reason="not_answered"))
        elif isinstance(event, ev.SpyStarted):
            session = self._by_channel(event.spyer.name, event.spyer.name)
            if session is not None:
                session.channel, session.spying = event.spyer.name, True
                self._changed(session)
        elif isinstance(event, ev.SpyStopped):
            session = self._by_channel(event.spyer.name, None)
            if session is not None:
                session.spying = False
        elif isinstance(event, ev.ChannelHungUp):
            session = self._by_channel(event.channel.name, None)
            if session is not None:
                self._spawn(self._end(session, reason="hangup"))

    def _by_channel(self, name: str, fallback_device: str | None) -> SupervisionSession | None:
        for session in self.sessions():
            if session.channel == name:
                return session
        if fallback_device is not None:
            device = fallback_device.rpartition("-")[0]
            for session in self.sessions():
                if session.channel is None and session.supervisor_interface == device:
                    return session
        return None

    def _spawn(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _mode(value: str) -> SpyMode:
    if value not in MODES:
        raise UnknownMode(f"mode must be one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


__all__ = [
    "MODES",
    "AgentNotOnCall",
    "AlreadySupervising",
    "NoSession",
    "NotASupervisor",
    "SupervisionError",
    "SupervisionService",
    "SupervisionSession",
    "UnknownMode",
]
