"""Consent and the reveal of a number: only a supervisor, only under consent or a written
emergency reason, and every attempt in the audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import (
    MIN_OVERRIDE_REASON,
    ConsentInvalid,
    ConsentService,
    NothingToReveal,
    OverrideReasonTooShort,
    RevealNotAllowed,
    RevealRefused,
    RevealWithoutConsent,
)
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import AuditEntry
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

CALLER = "+91 98765 43210"
CALLER_E164 = "+919876543210"
HARASSER = "+91 99999 12345"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def vault() -> Vault:
    return Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def consent(migrated_store: Store, vault: Vault, clock: Clock) -> ConsentService:
    return ConsentService(migrated_store, vault, AuditLog(migrated_store), clock=clock)


async def caller(store: Store, vault: Vault, number: str | None = CALLER) -> int:
    return await IdentityStore(store).remember(vault.admit_caller_id(number))


async def reveals(store: Store) -> list[dict[str, object]]:
    async with store.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    return [
        {"actor": r.actor, "subject": r.subject, **json.loads(r.details)}
        for r in rows if r.action == "identity.reveal"
    ]


async def test_reveal_refused_without_consent_and_audited(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    with pytest.raises(RevealWithoutConsent) as refused:
        await consent.reveal(identity, "sup.meena", "supervisor", "police")
    assert refused.value.code == "reveal_no_consent" and refused.value.audit_seq == 1
    (entry,) = await reveals(migrated_store)
    assert entry["granted"] is False and entry["refused"] == "reveal_no_consent"
    assert entry["subject"] == f"identity:{identity}" and entry["actor"] == "sup.meena"


async def test_only_a_supervisor_can_reveal_even_with_consent(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    await consent.record_consent(identity, "police", recorded_by="agent.asha")
    for role in ("agent", "counsellor", "admin"):
        with pytest.raises(RevealNotAllowed):
            await consent.reveal(identity, "agent.asha", role, "police")
    assert [e["refused"] for e in await reveals(migrated_store)] == [
        "reveal_not_supervisor"
    ] * 3


async def test_consent_to_sms_never_reveals_her_number(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    await consent.record_consent(identity, "sms", recorded_by="agent.asha")
    with pytest.raises(RevealNotAllowed):
        await consent.reveal(identity, "sup.meena", "supervisor", "sms")
    with pytest.raises(RevealWithoutConsent):  # and it covers no other purpose either
        await consent.reveal(identity, "sup.meena", "supervisor", "police")
    assert [e["granted"] for e in await reveals(migrated_store)] == [False, False]


async def test_reveal_allowed_with_consent_for_that_purpose(
    migrated_store: Store, vault: Vault, consent: ConsentService, clock: Clock
) -> None:
    identity = await caller(migrated_store, vault)
    given = await consent.record_consent(
        identity, "department", department="Cyber  Cell", recorded_by="agent.asha"
    )
    with pytest.raises(RevealWithoutConsent):
        await consent.reveal(identity, "sup.meena", "supervisor", "police")
    with pytest.raises(RevealWithoutConsent):
        await consent.reveal(identity, "sup.meena", "supervisor", "department",
                             department="Anti-Romeo Squad")
    number = await consent.reveal(identity, "sup.meena", "supervisor", "department",
                                  department="cyber cell")
    assert number.e164 == CALLER_E164
    granted = (await reveals(migrated_store))[-1]
    assert granted["granted"] is True and granted["basis"] == "consent"
    assert granted["consent_id"] == given.id

    clock.now += timedelta(hours=1)
    await consent.withdraw_consent(given.id, withdrawn_by="agent.asha")
    with pytest.raises(RevealWithoutConsent):
        await consent.reveal(identity, "sup.meena", "supervisor", "department",
                             department="Cyber Cell")


async def test_emergency_override_needs_a_written_reason(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    with pytest.raises(OverrideReasonTooShort):
        await consent.reveal(identity, "sup.meena", "supervisor", "police",
                             override_reason="urgent " + " " * MIN_OVERRIDE_REASON)
    reason = "She screamed and the line dropped; 112 needs her number, she gave 98765 43210"
    number = await consent.reveal(identity, "sup.meena", "supervisor", "police",
                                  override_reason=reason)
    assert number.e164 == CALLER_E164
    short, granted = await reveals(migrated_store)
    assert short["refused"] == "reveal_override_reason_too_short"
    assert granted["granted"] is True and granted["basis"] == "override"
    assert "line dropped" in str(granted["override_reason"])


async def test_no_number_in_the_audit_log(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    await consent.record_consent(identity, "police", recorded_by="agent.asha")
    await consent.reveal(identity, "sup.meena", "supervisor", "police")
    await consent.reveal(identity, "sup.meena", "supervisor", "police",
                         override_reason=f"she asked us to call {CALLER} back now please")
    async with migrated_store.session() as session:
        rows = (await session.scalars(select(AuditEntry))).all()
    text = " ".join(f"{r.actor} {r.subject} {r.details}" for r in rows)
    assert not re.search(r"\d{5}", text)


async def test_withheld_and_unknown_identities_have_nothing_to_reveal(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    withheld = await caller(migrated_store, vault, "<unknown>")
    for identity in (withheld, 999):
        with pytest.raises(NothingToReveal):
            await consent.reveal(identity, "sup.meena", "supervisor", "police",
                                 override_reason="x" * MIN_OVERRIDE_REASON)
    assert len(await reveals(migrated_store)) == 2


async def test_harasser_number_follows_the_complainants_consent(
    migrated_store: Store, vault: Vault, consent: ConsentService, clock: Clock
) -> None:
    her = await caller(migrated_store, vault)
    async with migrated_store.transaction() as session:
        call = CallRecord(node="pbx1", linkedid="1795327929.5", caller_identity_id=her,
                          category="phone-harassment")
        session.add(call)
    cases = CaseService(migrated_store, vault, AuditLog(migrated_store), clock=clock)
    view = await cases.create_from_wrapup(call, WrapUpForm(harasser_numbers=[HARASSER]),
                                          "agent.asha")
    (harasser,) = view.harassers
    with pytest.raises(RevealWithoutConsent):
        await consent.reveal(harasser.identity_id, "sup.meena", "supervisor", "police")
    await consent.record_consent(her, "police", recorded_by="agent.asha",
                                 case_id=view.summary.id)
    number = await consent.reveal(harasser.identity_id, "sup.meena", "supervisor", "police")
    assert number.e164 == "+919999912345"


async def test_consent_is_validated(
    migrated_store: Store, vault: Vault, consent: ConsentService
) -> None:
    identity = await caller(migrated_store, vault)
    with pytest.raises(ConsentInvalid):
        await consent.record_consent(identity, "neighbours", recorded_by="agent.asha")
    with pytest.raises(ConsentInvalid):
        await consent.record_consent(identity, "department", recorded_by="agent.asha")
    with pytest.raises(ConsentInvalid):
        await consent.record_consent(identity, "police", department="x",
                                     recorded_by="agent.asha")
    assert await consent.consents_for(identity) == []


async def test_recording_playback_is_audited(
    migrated_store: Store, consent: ConsentService
) -> None:
    await consent.record_playback(42, actor="sup.meena", role="supervisor")
    (entry,) = await AuditLog(migrated_store).entries(action="recording.playback")
    assert (entry.subject, entry.actor) == ("call:42", "sup.meena")


def test_refusals_share_one_root() -> None:
    for refusal in (RevealNotAllowed, RevealWithoutConsent, OverrideReasonTooShort,
                    NothingToReveal):
        assert issubclass(refusal, RevealRefused) and refusal.code.startswith("reveal_")
