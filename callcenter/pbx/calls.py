"""Writes the call record as the call goes: IVR start, IVR result, end.

Every write is an upsert on (node, Linkedid), so two instances, a restart, or a
replay after reconnect never make a second row for one call, and the ending is
written once (a later ending does not overwrite an earlier one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from callcenter.store import Store

from .model import LiveCall
from .models import CallLeg, CallRecord


def pbx_time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def classify(call: LiveCall) -> str:
    """The outcome of an ended call, from what the PBX reported."""
    flags = call.variables.get("WPL_FLAGS", "")
    if call.agent_interface:
        return "answered"
    if call.abandoned_in == "ivr":
        return "abandoned_ivr"
    if call.abandoned_in == "queue":
        return "abandoned_queue"
    if call.variables.get("WPL_OVERFLOW"):
        return "overflow"
    if call.queue == "wpl-fallback" or "fallback" in flags.split(","):
        return "fallback"
    return "ended"


class CallRecorder:
    def __init__(self, store: Store, *, on_error: Callable[[Exception], None] | None = None):
        self._store = store
        self._on_error = on_error

    async def _upsert(self, node: str, linkedid: str, **values: Any) -> None:
        for _attempt in range(2):
            try:
                async with self._store.transaction() as session:
                    row = await session.scalar(
                        select(CallRecord).where(
                            CallRecord.node == node, CallRecord.linkedid == linkedid
                        )
                    )
                    if row is None:
                        session.add(CallRecord(node=node, linkedid=linkedid, **values))
                        return
                    for key, value in values.items():
                        if key == "outcome" and row.outcome is not None:
                            continue  # the first recorded ending stands
                        if value is not None:
                            setattr(row, key, value)
                    return
            except IntegrityError:
                continue  # another writer created the row: update it instead
        raise RuntimeError("call record upsert kept conflicting")

    async def ivr_started(
        self,
        node: str,
        linkedid: str,
        *,
        caller_uniqueid: str,
        identity_id: int | None,
        token: str,
        at: float | None,
    ) -> None:
        await self._upsert(
            node, linkedid, caller_uniqueid=caller_uniqueid, caller_identity_id=identity_id,
            caller_token=token, started_at=pbx_time(at),
        )

    async def ivr_finished(self, node: str, linkedid: str, **routing: Any) -> None:
        await self._upsert(node, linkedid, **routing)

    async def call_ended(self, node: str, call: LiveCall) -> None:
        flags = call.variables.get("WPL_FLAGS")
        await self._upsert(
            node,
            call.linkedid,
            caller_uniqueid=call.caller_uniqueid,
            caller_token=call.label,
            started_at=pbx_time(call.started_at),
            queued_at=pbx_time(call.queued_at),
            answered_at=pbx_time(call.answered_at),
            ended_at=pbx_time(call.ended_at),
            queue=call.queue,
            agent_interface=call.agent_interface,
            hold_seconds=call.hold_time,
            talk_seconds=call.talk_time,
            flags=flags,
            outcome=classify(call),
        )
        await self.record_legs(node, call)

    async def record_legs(self, node: str, call: LiveCall) -> int:
        """One ``call_leg`` row per holder of the ended call, in hand-over order.

        Rows are keyed by (record, seq): a replay (another instance, a reconnect) adds
        only the legs not written yet, and never changes one already written.
        """
        if not call.holders:
            return 0
        for _attempt in range(2):
            try:
                return await self._add_legs(node, call)
            except IntegrityError:
                continue  # another writer added some legs first: add only the rest
        raise RuntimeError("call leg insert kept conflicting")

    async def _add_legs(self, node: str, call: LiveCall) -> int:
        async with self._store.transaction() as session:
            record_id = await session.scalar(
                select(CallRecord.id).where(
                    CallRecord.node == node, CallRecord.linkedid == call.linkedid
                )
            )
            if record_id is None:
                return 0
            written = set(await session.scalars(
                select(CallLeg.seq).where(CallLeg.call_record_id == record_id)
            ))
            added = 0
            for seq, holding in enumerate(call.holders, start=1):
                if seq in written:
                    continue
                until = holding.until if holding.until is not None else call.ended_at
                session.add(CallLeg(
                    call_record_id=record_id, node=node, linkedid=call.linkedid, seq=seq,
                    interface=holding.interface[:128], from_at=pbx_time(holding.since),
                    until_at=pbx_time(until),
                    ended_how=holding.ending(call.ended_at) or "answered",
                ))
                added += 1
            return added

    async def legs(self, node: str, linkedid: str) -> list[CallLeg]:
        async with self._store.session() as session:
            return list(await session.scalars(
                select(CallLeg).where(CallLeg.node == node, CallLeg.linkedid == linkedid)
                .order_by(CallLeg.seq)
            ))

    async def close_unobserved(
        self, node: str, live_linkedids: set[str], started_before: datetime
    ) -> int:
        """Close records of calls that ended while nobody followed the PBX.

        Only records that started before ``started_before`` (the PBX time of the
        snapshot) are touched, so a call that began after the snapshot is not
        mistaken for a lost one. Returns how many were closed.
        """
        async with self._store.transaction() as session:
            result = await session.execute(
                update(CallRecord)
                .where(
                    CallRecord.node == node,
                    CallRecord.outcome.is_(None),
                    CallRecord.started_at < started_before,
                    CallRecord.linkedid.not_in(live_linkedids or {""}),
                )
                .values(outcome="unobserved")
            )
            return int(result.rowcount or 0)

    async def get(self, node: str, linkedid: str) -> CallRecord | None:
        async with self._store.session() as session:
            return await session.scalar(
                select(CallRecord).where(CallRecord.node == node, CallRecord.linkedid == linkedid)
            )
