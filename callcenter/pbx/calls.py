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
from .models import CallRecord


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
