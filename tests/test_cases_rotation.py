"""Key rotation: every number stays readable, every link survives, old keys can retire."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import CallerIdentity, Case
from callcenter.cases.recordings import Recording, new_recording_id
from callcenter.cases.rotation import keys_in_use, retirable_keys, rotate_keys
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Purpose, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

OLD, NEW = generate_key(), generate_key()


def spellings(subscriber: str) -> list[str]:
    """Ways carriers and agents write the same Indian mobile number."""
    return [
        f"+91{subscriber}", f"+91 {subscriber[:5]} {subscriber[5:]}", f"0{subscriber}",
        subscriber, f"91{subscriber}", f"0091-{subscriber[:5]}-{subscriber[5:]}",
        f"({subscriber[:3]}) {subscriber[3:6]}-{subscriber[6:]}",
    ]


subscribers = st.from_regex(r"9[0-9]{9}", fullmatch=True)


@settings(max_examples=50, deadline=None)
@given(subscribers, st.sampled_from(list(Purpose)))
def test_token_is_stable_across_formattings_and_differs_across_keys(
    subscriber: str, purpose: Purpose
) -> None:
    one = Vault(Keyring.from_masters({"k1": OLD}, "k1"))
    two = Vault(Keyring.from_masters({"k2": NEW}, "k2"))
    tokens = {one.token_for(s, purpose).digest for s in spellings(subscriber)}
    assert len(tokens) == 1
    assert two.token_for(subscriber, purpose).digest not in tokens
    other = Purpose.HARASSER if purpose is Purpose.CALLER else Purpose.CALLER
    assert one.token_for(subscriber, other).digest not in tokens


async def test_rotation_keeps_numbers_readable_and_links_intact(migrated_store: Store) -> None:
    old = Vault(Keyring.from_masters({"k1": OLD}, "k1"))
    rng = random.Random(1090)
    numbers = sorted({f"9{rng.randrange(10**9):09d}" for _ in range(25)})
    identities = IdentityStore(migrated_store)
    audit = AuditLog(migrated_store)
    ids = {n: await identities.remember(old.admit_caller_id(n)) for n in numbers}
    withheld = await identities.remember(old.admit_caller_id("<unknown>"))
    cases = CaseService(migrated_store, old, audit)
    async with migrated_store.transaction() as session:
        call = CallRecord(node="pbx1", linkedid="1.1", caller_identity_id=ids[numbers[0]],
                          caller_token="T-OLD", category="stalking")
        session.add(call)
    case = await cases.create_from_wrapup(
        call, WrapUpForm(harasser_numbers=[numbers[1]]), "agent.asha"
    )

    both = Vault(Keyring.from_masters({"k1": OLD, "k2": NEW}, "k2"))
    report = await rotate_keys(migrated_store, both, audit, batch_size=7)
    assert report.complete and report.merged == 0 and report.withheld == 1
    assert report.resealed == report.retokened == len(numbers) + 1  # + the harasser

    new_only = Vault(Keyring.from_masters({"k2": NEW}, "k2"))
    async with migrated_store.session() as session:
        rows = {r.id: r for r in await session.scalars(select(CallerIdentity))}
        stored_call = await session.get(CallRecord, call.id)
        stored_case = await session.get(Case, case.summary.id)
    for number, identity_id in ids.items():
        row = rows[identity_id]  # same id as before the rotation
        assert (row.sealed_kid, row.token_kid) == ("k2", "k2")
        assert row.sealed is not None
        assert new_only.open(row.sealed, Purpose.CALLER) == new_only.normalise(number)
        # the IVR, now on the new key alone, finds her old row
        assert new_only.token_for(number).digest == row.token_digest
    assert rows[withheld].sealed is None
    assert stored_call is not None and stored_case is not None
    assert stored_call.caller_identity_id == ids[numbers[0]]
    assert stored_call.caller_token == rows[ids[numbers[0]]].token_code
    assert stored_case.caller_identity_id == ids[numbers[0]]
    (harasser,) = (await cases.get_by_reference(case.summary.reference)).harassers
    assert rows[harasser.identity_id].purpose == "harasser"
    assert harasser.token == rows[harasser.identity_id].token_code

    use = await keys_in_use(migrated_store)
    assert "k1" not in use and use["k2"].sealed == len(numbers) + 1
    assert retirable_keys(both.keyring, use) == ["k1"]
    again = await rotate_keys(migrated_store, both, audit)  # idempotent
    assert again.resealed == again.retokened == 0
    assert [e.action for e in await audit.entries(action="keys.rotate")] == ["keys.rotate"] * 2


async def test_a_twin_made_during_rotation_is_merged(migrated_store: Store) -> None:
    identities = IdentityStore(migrated_store)
    old = Vault(Keyring.from_masters({"k1": OLD}, "k1"))
    both = Vault(Keyring.from_masters({"k1": OLD, "k2": NEW}, "k2"))
    first = await identities.remember(
        old.admit_caller_id("9876543210"), at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    use = await keys_in_use(migrated_store)
    assert retirable_keys(both.keyring, use) == []  # k1 still holds her
    # the service restarted on k2 alone (k1 forgotten) before the rotation: her next call
    # could not know her k1 token and made a second row
    new_only = Vault(Keyring.from_masters({"k2": NEW}, "k2"))
    twin = await identities.remember(
        new_only.admit_caller_id("+91 98765 43210"), at=datetime(2026, 2, 1, tzinfo=UTC)
    )
    assert twin != first
    async with migrated_store.transaction() as session:
        session.add(CallRecord(node="pbx1", linkedid="2.1", caller_identity_id=twin,
                               caller_token="T-NEW"))
    report = await rotate_keys(migrated_store, both, AuditLog(migrated_store))
    assert report.merges == [(twin, first)]
    async with migrated_store.session() as session:
        rows = (await session.scalars(select(CallerIdentity))).all()
        call = await session.scalar(select(CallRecord))
    (row,) = rows
    assert row.id == first and row.times_seen == 2
    assert call is not None and call.caller_identity_id == first
    assert both.token_for("9876543210").digest == row.token_digest


async def test_during_a_rotation_her_next_call_finds_her_old_row(migrated_store: Store) -> None:
    identities = IdentityStore(migrated_store)
    old = Vault(Keyring.from_masters({"k1": OLD}, "k1"))
    both = Vault(Keyring.from_masters({"k1": OLD, "k2": NEW}, "k2"))
    first = await identities.remember(old.admit_caller_id("9876543210"))
    other = await identities.remember(old.admit_caller_id("9123456789"))
    # k2 is active, the rotation has not reached her row: the k1 alias still finds her
    again = await identities.remember(both.admit_caller_id("+91 98765 43210"))
    assert again == first != other
    async with migrated_store.session() as session:
        rows = {r.id: r for r in await session.scalars(select(CallerIdentity))}
    assert len(rows) == 2 and rows[first].times_seen == 2
    report = await rotate_keys(migrated_store, both, AuditLog(migrated_store))
    assert report.merged == 0
    assert await identities.remember(both.admit_caller_id("9876543210")) == first


async def test_a_key_with_recordings_is_not_retirable(migrated_store: Store) -> None:
    old = Vault(Keyring.from_masters({"k1": OLD}, "k1"))
    both = Vault(Keyring.from_masters({"k1": OLD, "k2": NEW}, "k2"))
    await IdentityStore(migrated_store).remember(old.admit_caller_id("9876543210"))
    async with migrated_store.transaction() as session:
        session.add(Recording(
            id=new_recording_id(), node="pbx1", linkedid="3.1", format="wav", size_bytes=44,
            content_sha256="0" * 64, kid="k1", received_at=datetime(2026, 1, 1, tzinfo=UTC),
        ))
    await rotate_keys(migrated_store, both, AuditLog(migrated_store))
    use = await keys_in_use(migrated_store)
    # her number moved to k2; the audio is still sealed under k1, which must stay
    assert (use["k1"].sealed, use["k1"].tokens, use["k1"].recordings) == (0, 0, 1)
    assert retirable_keys(both.keyring, use) == []
