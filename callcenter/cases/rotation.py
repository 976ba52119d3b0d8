"""Vault key rotation: every sealed number and every token moved to the active key.

The operator adds a new key to the keyring, makes it active and restarts the service
(old keys stay in the keyring, so everything still opens), then runs
``callcenter keys rotate``. For each identity the number is opened, sealed again under
the active key, and its token recomputed; the row keeps its id, so her calls, cases,
consents and blocks stay linked to it.

While the service ran with the new key and before the rotation reached her row, a
repeat caller got a *second* identity under the new token. When her old row's new
token meets that one, the two are merged: the older row (smaller id) survives, the
other's links move to it, and the merge is listed in the audit log. Then
``callcenter keys in-use`` shows the old key unused and it can be dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.pbx.models import CallRecord
from callcenter.store import Store

from .audit import AuditAction, AuditLog
from .errors import VaultError
from .models import CallerBlock, CallerIdentity, Case, CaseHarasser, Consent
from .recordings import Recording
from .vault import Keyring, Purpose, Vault

__all__ = ["KeyUse", "RotationReport", "keys_in_use", "retirable_keys", "rotate_keys"]


@dataclass(slots=True)
class RotationReport:
    active_kid: str
    examined: int = 0
    resealed: int = 0
    retokened: int = 0
    merged: int = 0
    withheld: int = 0
    #: Identity ids that could not be opened, with the vault's error code.
    failed: dict[int, str] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (merged away, into)

    @property
    def complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class KeyUse:
    sealed: int = 0
    tokens: int = 0
    #: Recordings stay encrypted under the key they were stored with (rotation does not
    #: re-encrypt audio), so a key with recordings must stay until they are purged.
    recordings: int = 0

    @property
    def in_use(self) -> bool:
        return bool(self.sealed or self.tokens or self.recordings)


async def rotate_keys(
    store: Store,
    vault: Vault,
    audit: AuditLog,
    *,
    actor: str = "keys-rotate",
    batch_size: int = 200,
) -> RotationReport:
    """Reseal and retoken every identity under the active key; safe to run again.

    Works in batches of ``batch_size`` rows, each in one transaction, so a long
    rotation does not hold locks on the whole table while calls come in.
    """
    report = RotationReport(vault.active_kid)
    last_id = 0
    while True:
        async with store.session() as session:
            ids = list(
                await session.scalars(
                    select(CallerIdentity.id)
                    .where(CallerIdentity.id > last_id)
                    .order_by(CallerIdentity.id)
                    .limit(batch_size)
                )
            )
        if not ids:
            break
        async with store.transaction() as session:
            for identity_id in ids:
                await _rotate_one(session, vault, identity_id, report)
        last_id = ids[-1]
    await audit.record(
        actor=actor,
        action=AuditAction.KEYS_ROTATED,
        subject=f"vault:{report.active_kid}",
        details={
            "examined": report.examined, "resealed": report.resealed,
            "retokened": report.retokened, "merged": report.merged,
            "withheld": report.withheld, "failed": sorted(report.failed.items()),
            "merges": report.merges,
        },
    )
    return report


async def _rotate_one(
    session: AsyncSession, vault: Vault, identity_id: int, report: RotationReport
) -> None:
    row = await session.get(CallerIdentity, identity_id)
    if row is None:
        return  # merged into an older row earlier in this run
    report.examined += 1
    if row.sealed is None:
        report.withheld += 1  # a random token that links to no one: nothing to redo
        return
    purpose = Purpose(row.purpose)
    try:
        number = vault.open(row.sealed, purpose)
    except VaultError as exc:
        report.failed[row.id] = exc.code
        return
    active = vault.active_kid
    if row.sealed_kid != active:
        sealed = vault.seal(number, purpose)
        row.sealed, row.sealed_kid = sealed.encode(), sealed.kid
        report.resealed += 1
    token = vault.token_for(number, purpose)
    if row.token_digest == token.digest:
        return
    twin = await session.scalar(
        select(CallerIdentity).where(
            CallerIdentity.token_digest == token.digest, CallerIdentity.id != row.id
        )
    )
    if twin is not None:
        survivor, gone = (row, twin) if row.id < twin.id else (twin, row)
        await _merge(session, survivor, gone)
        report.merged += 1
        report.merges.append((gone.id, survivor.id))
        if gone is row:
            return  # the twin already carries the active token
    row.token_digest, row.token_kid, row.token_code = token.digest, token.kid, token.code
    # The short code is what call records show and supervisors search by.
    await session.execute(
        update(CallRecord)
        .where(CallRecord.caller_identity_id == row.id)
        .values(caller_token=token.code)
        .execution_options(synchronize_session=False)
    )
    report.retokened += 1


async def _merge(session: AsyncSession, survivor: CallerIdentity, gone: CallerIdentity) -> None:
    """Move every link of ``gone`` to ``survivor`` and delete ``gone``."""
    moves = (
        (CallRecord, CallRecord.caller_identity_id),
        (Case, Case.caller_identity_id),
        (Consent, Consent.identity_id),
        (CallerBlock, CallerBlock.identity_id),
    )
    for table, column in moves:
        await session.execute(
            update(table)
            .where(column == gone.id)
            .values({column.key: survivor.id})
            .execution_options(synchronize_session=False)
        )
    if survivor.token_code != gone.token_code:
        await session.execute(
            update(CallRecord)
            .where(CallRecord.caller_identity_id == survivor.id)
            .values(caller_token=survivor.token_code)
            .execution_options(synchronize_session=False)
        )
    # A case naming both rows (the same harasser typed twice) keeps one link.
    both = select(CaseHarasser.case_id).where(CaseHarasser.identity_id == survivor.id)
    await session.execute(
        delete(CaseHarasser)
        .where(CaseHarasser.identity_id == gone.id, CaseHarasser.case_id.in_(both))
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(CaseHarasser)
        .where(CaseHarasser.identity_id == gone.id)
        .values(identity_id=survivor.id)
        .execution_options(synchronize_session=False)
    )
    survivor.first_seen_at = min(_aware(survivor.first_seen_at), _aware(gone.first_seen_at))
    survivor.last_seen_at = max(_aware(survivor.last_seen_at), _aware(gone.last_seen_at))
    survivor.times_seen += gone.times_seen
    await session.delete(gone)
    # Now, before the survivor's token changes: the unique digest must be free first.
    await session.flush()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def keys_in_use(store: Store) -> dict[str, KeyUse]:
    """Rows per key id: sealed numbers and tokens. A kid absent here is unused."""
    use: dict[str, KeyUse] = {}
    async with store.session() as session:
        sealed = await session.execute(
            select(CallerIdentity.sealed_kid, func.count())
            .where(CallerIdentity.sealed_kid.is_not(None))
            .group_by(CallerIdentity.sealed_kid)
        )
        for kid, count in sealed:
            if kid:
                use[kid] = KeyUse(sealed=int(count))
        tokens = await session.execute(
            select(CallerIdentity.token_kid, func.count())
            .where(CallerIdentity.token_kid != "")
            .group_by(CallerIdentity.token_kid)
        )
        for kid, count in tokens:
            use[kid] = KeyUse(sealed=use.get(kid, KeyUse()).sealed, tokens=int(count))
        recordings = await session.execute(
            select(Recording.kid, func.count()).group_by(Recording.kid)
        )
        for kid, count in recordings:
            known = use.get(kid, KeyUse())
            use[kid] = KeyUse(sealed=known.sealed, tokens=known.tokens, recordings=int(count))
    return use


def retirable_keys(keyring: Keyring, use: Mapping[str, KeyUse]) -> list[str]:
    """Key ids of ``keyring`` that no row uses and that are not active: safe to drop."""
    return [
        kid
        for kid in keyring.kids
        if kid != keyring.active.kid and not use.get(kid, KeyUse()).in_use
    ]
