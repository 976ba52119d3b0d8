"""Call records and caller identities on SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.ami import AMIParser
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import CallerIdentity
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.calls import CallRecorder, classify
from callcenter.pbx.events import typed_event
from callcenter.pbx.model import LiveCall, PbxModel
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

TRACES = Path(__file__).parent / "fixtures" / "asterisk"
NUMBER = "+91 98765 43210"


@pytest.fixture
def vault() -> Vault:
    return Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))


async def test_identity_is_stored_once_per_number_and_sealed(
    migrated_store: Store, vault: Vault
) -> None:
    identities = IdentityStore(migrated_store)
    first = await identities.remember(vault.admit_caller_id(NUMBER))
    again = await identities.remember(vault.admit_caller_id("09876543210"))
    assert first == again
    async with migrated_store.session() as session:
        row = await session.scalar(select(CallerIdentity))
        assert row is not None and row.times_seen == 2
        assert row.sealed is not None and "9876543210" not in row.sealed
        assert str(vault.open(row.sealed, vault.admit_caller_id(NUMBER).token.purpose)) != NUMBER
        assert vault.open(row.sealed, vault.admit_caller_id(NUMBER).token.purpose).e164 == (
            "+919876543210"
        )


async def test_concurrent_writers_make_one_identity_and_one_call_record(
    migrated_store: Store, vault: Vault
) -> None:
    identities = IdentityStore(migrated_store)
    recorder = CallRecorder(migrated_store)
    entry = vault.admit_caller_id(NUMBER)
    ids = await asyncio.gather(*(identities.remember(entry) for _ in range(5)))
    assert len(set(ids)) == 1
    await asyncio.gather(
        *(
            recorder.ivr_started(
                "pbx1", "1795327929.5", caller_uniqueid="1795327929.5",
                identity_id=ids[0], token=entry.token.code, at=1795327929.9,
            )
            for _ in range(4)
        )
    )
    async with migrated_store.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallRecord)) == 1


def _replayed_calls(trace: str) -> list[LiveCall]:
    model = PbxModel("pbx1")
    ended: list[LiveCall] = []
    model.on_call_ended(ended.append)
    for frame in AMIParser().feed((TRACES / f"{trace}.ami").read_bytes()):
        if frame.kind == "event" and (event := typed_event("pbx1", frame)) is not None:
            model.apply(event)
    return ended


@pytest.mark.parametrize(
    ("trace", "outcome"),
    [
        ("queue_asyncagi_call", "answered"),
        ("queue_abandon_call", "abandoned_queue"),
        ("queue_ringnoanswer", "answered"),
    ],
)
async def test_ended_call_gets_its_outcome_once(
    migrated_store: Store, trace: str, outcome: str
) -> None:
    recorder = CallRecorder(migrated_store)
    (call,) = _replayed_calls(trace)
    assert classify(call) == outcome
    await recorder.call_ended("pbx1", call)
    # A replay after a reconnect must not change or double the record.
    call.agent_interface = None
    call.abandoned_in = "ivr"
    await recorder.call_ended("pbx1", call)
    record = await recorder.get("pbx1", call.linkedid)
    assert record is not None and record.outcome == outcome
    assert record.ended_at is not None
    async with migrated_store.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallRecord)) == 1


def test_hangup_in_ivr_is_abandoned_in_ivr() -> None:
    frames = AMIParser().feed((TRACES / "queue_asyncagi_call.ami").read_bytes())
    model = PbxModel("pbx1")
    ended: list[LiveCall] = []
    model.on_call_ended(ended.append)
    for frame in frames:
        if frame.kind != "event":
            continue
        if frame.name == "AsyncAGIEnd":
            break  # she hangs up while still in the IVR: replay her Hangup now
        if (event := typed_event("pbx1", frame)) is not None:
            model.apply(event)
    hangup = next(
        f for f in frames
        if f.name == "Hangup" and f["Uniqueid"] == f["Linkedid"]
    )
    model.apply(typed_event("pbx1", hangup))  # type: ignore[arg-type]
    assert [classify(c) for c in ended] == ["abandoned_ivr"]
