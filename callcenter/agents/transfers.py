"""Transfers of a live call, with the case following the call.

An agent hands the caller on in one of three ways, all through AMI on the node's
typed operations:

- **blind** (``BlindTransfer``): to a queue (counselling, emergency, another language) or a
  configured external destination (112, a police station, a One Stop Centre);
- **warm** (``Atxfer``): she hears hold music while the agent consults the target, then the
  agent completes (her leg hangs up, which is what completes an attended transfer in
  Asterisk's bridge_basic.c) or cancels (``CancelAtxfer``) and is back with her. If the
  agent's phone drops mid-consult, Asterisk completes the transfer itself: the caller is
  never dropped;
- **conference**: caller and agent are redirected together into a ConfBridge room and the
  third party is originated into it; anyone may leave, the others stay until the last.

The case follows: whoever is offered the call next (rung by a queue, dialled for a consult,
or bridged in) gets a ``handover`` screen-pop with the case so far (category, flags, the
handing agent's note, the caller's token, the case reference when one is open), and every
hand-over is a row in the audit log under ``call:<node>:<linkedid>``, so the case can show
who held the call when.

Her number: an external destination gets it only when her recorded consent covers that
destination (scope and, for a department, its name); otherwise the helpline's number is
presented. The number travels only inside the AMI action that sets it on the channel; the
audit row says *that* it was presented and under which consent, never the number.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import select

from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import ConsentService
from callcenter.cases.models import CallerIdentity, Case, CaseNote, ConsentScope
from callcenter.cases.service import scrub_free_text
from callcenter.cases.vault import Purpose, Vault
from callcenter.pbx import events as ev
from callcenter.pbx.errors import PbxOperationError
from callcenter.pbx.model import LiveCall
from callcenter.pbx.models import CallRecord
from callcenter.pbx.node import PbxNode
from callcenter.pbx.operations import OriginateRequest
from callcenter.store import Store

from .errors import AgentError
from .models import Account

log = logging.getLogger(__name__)

TransferKind = Literal["blind", "warm", "conference"]
DestinationKind = Literal["queue", "external", "agent"]

#: Audit actions of this module (strings, as AuditLog takes them).
AUDIT_TRANSFER = "call.transfer"
AUDIT_HOLDER = "call.holder"
_NOTE_MAX = 1000


# -- errors ------------------------------------------------------------------------------


class TransferError(AgentError):
    code = "transfer_failed"


class NoCallToTransfer(TransferError):
    code = "no_call"


class UnknownDestination(TransferError):
    code = "unknown_destination"


class TransferInProgress(TransferError):
    code = "transfer_in_progress"


class NoConsultation(TransferError):
    code = "no_consultation"


class PbxRefused(TransferError):
    code = "pbx_refused"


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a call can be handed: a queue, a named agent, or an outside service."""

    key: str
    label: str
    kind: DestinationKind
    context: str
    exten: str
    #: For an external destination: the consent that lets her number go there.
    consent: ConsentScope | None = None
    department: str | None = None


@dataclass(frozen=True, slots=True)
class TransferSettings:
    destinations: tuple[Destination, ...] = ()
    #: Where a named agent is dialled for a consult (``a-<endpoint id>``).
    agent_context: str = "wpl-transfer"
    conference_context: str = "wpl-conference"
    #: What an external destination sees without her consent: the helpline.
    present_number: str = "1090"
    present_name: str = "1090 WPL"

    def destination(self, key: str) -> Destination:
        for each in self.destinations:
            if each.key == key:
                return each
        raise UnknownDestination(f"no transfer destination {key!r}")


def load_transfer_settings(path: Path | str) -> TransferSettings:
    """config/transfers.toml -> settings; a mistake says which entry and why."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    top = data.get("transfers", {})
    destinations: list[Destination] = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("destination", []), start=1):
        where = f"destination #{index}"
        try:
            key = str(raw["key"])
            kind = str(raw["kind"])
            context, exten = str(raw["context"]), str(raw["exten"])
        except KeyError as exc:
            raise ValueError(f"{where}: missing {exc.args[0]!r}") from None
        if kind not in ("queue", "external", "agent"):
            raise ValueError(f"{where} ({key}): kind must be queue, external or agent")
        if key in seen:
            raise ValueError(f"{where}: key {key!r} appears twice")
        seen.add(key)
        consent = raw.get("consent")
        scope = ConsentScope(consent) if consent else None
        department = raw.get("department")
        if scope is ConsentScope.DEPARTMENT and not department:
            raise ValueError(f"{where} ({key}): consent 'department' needs a department name")
        destinations.append(Destination(
            key, str(raw.get("label") or key), kind, context, exten,  # type: ignore[arg-type]
            scope, str(department) if department else None,
        ))
    return TransferSettings(
        destinations=tuple(destinations),
        agent_context=str(top.get("agent_context", "wpl-transfer")),
        conference_context=str(top.get("conference_context", "wpl-conference")),
        present_number=str(top.get("present_number", "1090")),
        present_name=str(top.get("present_name", "1090 WPL")),
    )


# -- what the receiving agent sees --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handover:
    """The case so far, as the next agent's console shows it."""

    node: str
    linkedid: str
    caller: str  # token or fixed label, never a number
    category: str | None
    flags: tuple[str, ...]
    notes: tuple[str, ...]
    case_reference: str | None
    from_agent: str
    kind: TransferKind
    destination: str


@dataclass(frozen=True, slots=True)
class HeldBy:
    interface: str
    since: float | None
    until: float | None


@dataclass(slots=True)
class _Transfer:
    node: str
    linkedid: str
    kind: TransferKind
    from_username: str
    from_interface: str
    from_channel: str
    destination: Destination
    handover: Handover
    state: str = "started"  # started | consulting | completed | cancelled | failed
    popped: set[str] = field(default_factory=set)


class Publisher(Protocol):
    """Where handover pops go: the bus (``web.screen_popped``) in the app."""

    async def __call__(self, username: str, pop: dict[str, Any]) -> None: ...


class Accounts(Protocol):
    async def get(self, username: str) -> Account: ...

    async def by_endpoint(self, endpoint: str) -> list[Account]: ...


def _device(channel_name: str) -> str:
    return channel_name.rpartition("-")[0]


def _flags(variables: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f for f in (variables.get("WPL_FLAGS") or "").split(",") if f)


class TransferService:
    """Transfers for one PBX node (see the module docstring)."""

    def __init__(
        self,
        node: PbxNode,
        accounts: Accounts,
        store: Store,
        audit: AuditLog,
        consent: ConsentService,
        vault: Vault,
        settings: TransferSettings,
        *,
        publish: Publisher | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._node = node
        self._accounts = accounts
        self._store = store
        self._audit = audit
        self._consent = consent
        self._vault = vault
        self.settings = settings
        self._publish = publish
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Open transfers by Linkedid: at most one at a time per call.
        self._open: dict[str, _Transfer] = {}
        #: Handovers still to be shown, by Linkedid (kept until the call ends).
        self._handovers: dict[str, _Transfer] = {}
        self._seen_holders: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        node.on_event(self._on_event)

    # -- commands ---------------------------------------------------------------------

    def destinations(self) -> tuple[Destination, ...]:
        return self.settings.destinations

    async def blind(
        self, username: str, destination: str, *, category: str | None = None, note: str = ""
    ) -> Handover:
        """Send her on to ``destination``; this agent's part of the call ends."""
        target = self.settings.destination(destination)
        agent, call, channel = await self._her_call(username)
        transfer = await self._start(agent, call, channel, target, "blind", category, note)
        caller = self._node.model.channels.get(call.caller_uniqueid)
        try:
            if target.kind == "external" and caller is not None:
                # Her channel runs the external dialplan itself: the presentation goes there.
                await self._present(transfer, call, caller.name, inherit=False)
            await self._node.ops.blind_transfer(channel, target.context, target.exten)
        except PbxOperationError as exc:
            await self._failed(transfer, exc)
        return transfer.handover

    async def warm(
        self, username: str, destination: str, *, category: str | None = None, note: str = ""
    ) -> Handover:
        """Consult ``destination`` while she hears hold music (Atxfer)."""
        target = self._target(destination)
        agent, call, channel = await self._her_call(username)
        transfer = await self._start(agent, call, channel, target, "warm", category, note)
        try:
            if target.kind == "external":
                # The consult leg is dialled from the agent's channel: the presentation
                # is inherited by it, never shown to the agent's own phone.
                await self._present(transfer, call, channel, inherit=True)
            await self._node.ops.attended_transfer(channel, target.context, target.exten)
        except PbxOperationError as exc:
            await self._failed(transfer, exc)
        transfer.state = "consulting"
        return transfer.handover

    async def complete(self, username: str) -> None:
        """Join her with the consulted party; this agent leaves the call."""
        transfer = self._consulting(username)
        try:
            await self._node.ops.complete_attended_transfer(transfer.from_channel)
        except PbxOperationError as exc:
            raise PbxRefused(f"the PBX did not complete the transfer: {exc.pbx_message}") from exc
        await self._settle(transfer, "completed")

    async def cancel(self, username: str) -> None:
        """End the consult; the agent is back with the caller."""
        transfer = self._consulting(username)
        try:
            await self._node.ops.cancel_attended_transfer(transfer.from_channel)
        except PbxOperationError as exc:
            raise PbxRefused(f"the PBX did not cancel the consult: {exc.pbx_message}") from exc
        self._handovers.pop(transfer.linkedid, None)
        await self._settle(transfer, "cancelled")

    async def conference(
        self, username: str, destination: str, *, category: str | None = None, note: str = ""
    ) -> Handover:
        """Caller, agent and a third party in one room; anyone may leave."""
        target = self._target(destination)
        agent, call, channel = await self._her_call(username)
        caller = self._node.model.channels.get(call.caller_uniqueid)
        if caller is None:
            raise NoCallToTransfer("her call is not on the PBX any more")
        transfer = await self._start(agent, call, channel, target, "conference", category, note)
        room = f"c-{call.linkedid}"
        context = self.settings.conference_context
        try:
            if target.kind == "external":
                await self._present(transfer, call, caller.name, inherit=True)
            # Her queue leg ends here and a new one starts in the room: say why it ended.
            self._node.model.announce_leaving(call.linkedid, channel, "conference")
            await self._node.ops.redirect_pair(caller.name, channel, context, room)
            await self._node.ops.originate(OriginateRequest(
                channel=f"Local/{target.exten}@{target.context}", context=context, exten=room,
                caller_id=f'"{self.settings.present_name}" <{self.settings.present_number}>',
                variables={"WPL_CONFERENCE": call.linkedid},
            ))
        except PbxOperationError as exc:
            await self._failed(transfer, exc)
        await self._settle(transfer, "completed", keep_handover=True)
        return transfer.handover

    def custody(self, linkedid: str) -> list[HeldBy]:
        """Who held the live call when (PBX clock), from the model's bridges."""
        call = self._node.model.calls.get(linkedid)
        if call is None:
            return []
        return [HeldBy(h.interface, h.since, h.until) for h in call.holders]

    async def recorded_custody(self, linkedid: str) -> list[dict[str, Any]]:
        """The audit rows of the call's hand-overs and holders, oldest first."""
        rows = await self._audit.entries(subject=self._subject(linkedid), limit=200)
        return [
            {"seq": r.seq, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
             "details": r.details}
            for r in reversed(rows)
        ]

    # -- the pieces of a command ---------------------------------------------------------

    def _target(self, key: str) -> Destination:
        if key.startswith("agent:"):
            endpoint = key.removeprefix("agent:")
            device = endpoint.removeprefix("PJSIP/")
            return Destination(key, endpoint, "agent", self.settings.agent_context, f"a-{device}")
        return self.settings.destination(key)

    async def _her_call(self, username: str) -> tuple[Account, LiveCall, str]:
        agent = await self._accounts.get(username)
        for call in self._node.model.calls.values():
            holding = call.holder()
            if holding is not None and holding.interface == agent.endpoint:
                if call.linkedid in self._open:
                    raise TransferInProgress("a transfer of this call is already under way")
                return agent, call, holding.channel
        raise NoCallToTransfer(f"{agent.username} is not on a call")

    def _consulting(self, username: str) -> _Transfer:
        name = username.strip().lower()
        for transfer in self._open.values():
            if transfer.from_username == name and transfer.kind == "warm":
                return transfer
        raise NoConsultation("there is no consult to complete or cancel")

    async def _start(
        self,
        agent: Account,
        call: LiveCall,
        channel: str,
        target: Destination,
        kind: TransferKind,
        category: str | None,
        note: str,
    ) -> _Transfer:
        handover = await self._handover(agent.username, call, target, kind, category, note)
        transfer = _Transfer(
            self._node.name, call.linkedid, kind, agent.username, agent.endpoint, channel,
            target, handover,
        )
        self._open[call.linkedid] = transfer
        self._handovers[call.linkedid] = transfer
        await self._audit.record(
            actor=agent.username, action=AUDIT_TRANSFER, subject=self._subject(call.linkedid),
            details={"kind": kind, "state": "requested", "destination": target.key,
                     "destination_kind": target.kind, "from": agent.endpoint},
        )
        return transfer

    async def _handover(
        self,
        username: str,
        call: LiveCall,
        target: Destination,
        kind: TransferKind,
        category: str | None,
        note: str,
    ) -> Handover:
        notes: list[str] = []
        reference: str | None = None
        case_category: str | None = None
        async with self._store.session() as session:
            record = await session.scalar(select(CallRecord).where(
                CallRecord.node == self._node.name, CallRecord.linkedid == call.linkedid))
            if record is not None:
                case = await session.scalar(select(Case).where(Case.origin_call_id == record.id))
                if case is not None:
                    reference, case_category = case.reference, case.category
                    notes.extend(
                        n.text for n in await session.scalars(
                            select(CaseNote).where(CaseNote.case_id == case.id)
                            .order_by(CaseNote.at, CaseNote.id))
                    )
        if note.strip():
            notes.append(scrub_free_text(note, limit=_NOTE_MAX, field_name="note"))
        return Handover(
            node=self._node.name,
            linkedid=call.linkedid,
            caller=call.label or "unidentified",
            category=category or case_category or call.variables.get("WPL_CATEGORY") or None,
            flags=_flags(call.variables),
            notes=tuple(notes),
            case_reference=reference,
            from_agent=username,
            kind=kind,
            destination=target.label,
        )

    async def _present(
        self, transfer: _Transfer, call: LiveCall, channel: str, *, inherit: bool
    ) -> None:
        """Choose what number the external destination sees, and say why in the audit."""
        target = transfer.destination
        number, consent_id = await self._consented_number(call.linkedid, target)
        presented = number if number is not None else self.settings.present_number
        prefix = "__" if inherit else ""
        await self._node.ops.set_variable(channel, f"{prefix}XFER_PRESENT_NUM", presented)
        await self._node.ops.set_variable(
            channel, f"{prefix}XFER_PRESENT_NAME", self.settings.present_name
        )
        await self._audit.record(
            actor=transfer.from_username, action=AUDIT_TRANSFER,
            subject=self._subject(call.linkedid),
            details={"kind": transfer.kind, "state": "presentation",
                     "destination": target.key,
                     "presented": "her_number" if number is not None else "helpline",
                     "consent_id": consent_id},
        )

    async def _consented_number(
        self, linkedid: str, target: Destination
    ) -> tuple[str | None, int | None]:
        if target.consent is None:
            return None, None
        async with self._store.session() as session:
            record = await session.scalar(select(CallRecord).where(
                CallRecord.node == self._node.name, CallRecord.linkedid == linkedid))
            identity = (
                None if record is None or record.caller_identity_id is None
                else await session.get(CallerIdentity, record.caller_identity_id)
            )
        if identity is None or identity.sealed is None:
            return None, None
        now = self._clock()
        for consent in await self._consent.consents_for(identity.id):
            if consent.covers(target.consent, target.department, now):
                number = self._vault.open(identity.sealed, Purpose.CALLER)
                return number.e164, consent.id
        return None, None

    async def _failed(self, transfer: _Transfer, exc: PbxOperationError) -> None:
        self._open.pop(transfer.linkedid, None)
        self._handovers.pop(transfer.linkedid, None)
        transfer.state = "failed"
        await self._audit.record(
            actor=transfer.from_username, action=AUDIT_TRANSFER,
            subject=self._subject(transfer.linkedid),
            details={"kind": transfer.kind, "state": "failed", "destination":
                     transfer.destination.key, "pbx": exc.pbx_message[:120]},
        )
        raise PbxRefused(f"the PBX refused the transfer: {exc.pbx_message}") from exc

    async def _settle(
        self, transfer: _Transfer, state: str, *, keep_handover: bool = True
    ) -> None:
        if transfer.state in ("completed", "cancelled", "failed"):
            return
        transfer.state = state
        self._open.pop(transfer.linkedid, None)
        if not keep_handover:
            self._handovers.pop(transfer.linkedid, None)
        await self._audit.record(
            actor=transfer.from_username, action=AUDIT_TRANSFER,
            subject=self._subject(transfer.linkedid),
            details={"kind": transfer.kind, "state": state,
                     "destination": transfer.destination.key},
        )

    def _subject(self, linkedid: str) -> str:
        return f"call:{self._node.name}:{linkedid}"

    # -- following the PBX ------------------------------------------------------------------

    def _on_event(self, event: ev.PbxEvent) -> None:
        if isinstance(event, ev.BlindTransferred):
            self._blind_done(event)
        elif isinstance(event, ev.AttendedTransferred):
            self._attended_done(event)
        elif isinstance(event, ev.AgentCalled):
            self._offered(event.caller.linkedid, event.interface)
        elif isinstance(event, ev.ChannelCreated):
            # A consult leg ringing a named agent's phone: same Linkedid, her device.
            self._offered(event.channel.linkedid, _device(event.channel.name))
        elif isinstance(event, (ev.BridgeEntered, ev.BridgeLeft)):
            # A party dialled through a Local channel (a conference's third party) has a
            # Linkedid of her own: look at every call being handed on, not only the event's.
            for linkedid in {event.channel.linkedid, *self._handovers, *self._seen_holders}:
                self._holders_changed(linkedid)
        elif isinstance(event, ev.ChannelHungUp):
            call_gone = event.channel.uniqueid == event.channel.linkedid
            if call_gone:
                self._open.pop(event.channel.linkedid, None)
                self._handovers.pop(event.channel.linkedid, None)
                self._seen_holders.pop(event.channel.linkedid, None)

    def _blind_done(self, event: ev.BlindTransferred) -> None:
        transfer = self._open.get(event.transferer.linkedid)
        if transfer is None or transfer.kind != "blind":
            return
        if event.succeeded:
            self._spawn(self._settle(transfer, "completed"))
        else:
            self._handovers.pop(transfer.linkedid, None)
            self._spawn(self._settle(transfer, "failed"))

    def _attended_done(self, event: ev.AttendedTransferred) -> None:
        transfer = self._open.get(event.orig_transferer.linkedid) or self._open.get(
            event.second_transferer.linkedid
        )
        if transfer is None:
            return
        # Completed from the console, or her phone hung up mid-consult: Asterisk joined
        # the caller with the target either way.
        self._spawn(self._settle(transfer, "completed" if event.succeeded else "failed"))

    def _offered(self, linkedid: str, interface: str) -> None:
        transfer = self._handovers.get(linkedid)
        if transfer is None or not interface or interface == transfer.from_interface:
            return
        if interface.startswith("Local/"):
            return  # a dialplan hop: the phone it dials is offered the call itself
        self._spawn(self._pop(transfer, interface))

    def _holders_changed(self, linkedid: str) -> None:
        call = self._node.model.calls.get(linkedid)
        if call is None:
            return
        seen = self._seen_holders.get(linkedid, 0)
        if len(call.holders) <= seen:
            return
        self._seen_holders[linkedid] = len(call.holders)
        for holding in call.holders[seen:]:
            transfer = self._handovers.get(linkedid)
            if transfer is not None and holding.interface != transfer.from_interface:
                self._spawn(self._pop(transfer, holding.interface))
            if seen or transfer is not None:
                # The first holder is the queue's answer; later ones are hand-overs.
                self._spawn(self._holder_row(linkedid, holding.interface, holding.since))

    async def _holder_row(self, linkedid: str, interface: str, since: float | None) -> None:
        await self._audit.record(
            actor="pbx", action=AUDIT_HOLDER, subject=self._subject(linkedid),
            # As PBX time in words: the audit refuses long integers (they could be numbers).
            details={"interface": interface,
                     "since": None if since is None
                     else datetime.fromtimestamp(since, UTC).isoformat()},
        )

    async def _pop(self, transfer: _Transfer, interface: str) -> None:
        try:
            accounts = [a for a in await self._accounts.by_endpoint(interface) if a.takes_calls]
        except Exception as exc:  # noqa: BLE001 - a pop is lost, the call is not
            log.warning("handover pop: account lookup failed: %s", type(exc).__name__)
            return
        for account in accounts:
            if account.username in transfer.popped or self._publish is None:
                continue
            transfer.popped.add(account.username)
            pop = {"username": account.username, "phase": "handover",
                   "handover": asdict(transfer.handover)}
            await self._publish(account.username, pop)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("transfer task failed: %s", type(task.exception()).__name__)

    async def settled(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


__all__ = [
    "AUDIT_HOLDER",
    "AUDIT_TRANSFER",
    "Destination",
    "Handover",
    "HeldBy",
    "NoCallToTransfer",
    "NoConsultation",
    "PbxRefused",
    "TransferError",
    "TransferInProgress",
    "TransferService",
    "TransferSettings",
    "UnknownDestination",
    "load_transfer_settings",
]
