"""Remembering the identities the vault hands out (caller and harasser numbers)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.store import Store

from .models import CallerIdentity
from .vault import VaultEntry


class IdentityStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def remember(self, entry: VaultEntry, *, at: datetime | None = None) -> int:
        """Store (or refresh) the identity of ``entry``; returns its id.

        Idempotent on the token: two instances, or a retry after a crash, find
        the same row instead of making a second one.
        """
        seen = at or datetime.now(UTC)
        for _attempt in range(2):
            try:
                async with self._store.transaction() as session:
                    return await self._upsert(session, entry, seen)
            except IntegrityError:
                continue  # another writer inserted the same token first
        async with self._store.transaction() as session:
            return await self._upsert(session, entry, seen)

    async def _upsert(self, session: AsyncSession, entry: VaultEntry, seen: datetime) -> int:
        token = entry.token
        row = await session.scalar(
            select(CallerIdentity).where(CallerIdentity.token_digest == token.digest)
        )
        if row is None and entry.aliases:
            # A rotation is under way and has not re-tokened her row yet: it is still
            # her, and the rotation will move the row to the active key.
            row = await session.scalar(
                select(CallerIdentity)
                .where(CallerIdentity.token_digest.in_(entry.aliases))
                .order_by(CallerIdentity.id)
                .limit(1)
            )
        if row is None:
            row = CallerIdentity(
                purpose=token.purpose.value,
                token_kid=token.kid,
                token_digest=token.digest,
                token_code=token.code,
                sealed=entry.sealed.encode() if entry.sealed is not None else None,
                sealed_kid=entry.sealed.kid if entry.sealed is not None else None,
                first_seen_at=seen,
                last_seen_at=seen,
                times_seen=1,
            )
            session.add(row)
            await session.flush()
            return row.id
        row.last_seen_at = max(_aware(row.last_seen_at), seen)
        row.times_seen += 1
        return row.id


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
