"""The append-only, hash-chained audit log of who saw or took what.

Every identity reveal (granted or refused), every export and every recording playback
is a row here. Each row carries the SHA-256 of a canonical encoding of itself plus the
previous row's hash, so editing a row, or deleting one in the middle, breaks the chain
at that row. Deleting the *last* rows leaves a valid, shorter chain; that is why the
head (seq + hash) is also kept in ``audit_anchor``, updated in the same transaction as
every append, and optionally signed with an HMAC key the database does not hold (from
``CALLCENTER_AUDIT_ANCHOR_KEY``), so that an administrator who rewrites rows cannot
recompute the anchor too.

Appends are serialised: the first statement of an append is an ``UPDATE`` of the
anchor's single row, which takes a row lock on PostgreSQL and the write lock on
SQLite, so two appends can never both see the same head and fork the chain.

Details are JSON and never hold a phone number: strings are scrubbed with
:func:`scrub_text`, and integers big enough to be a number are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.logs import redact_text
from callcenter.store import Store

from .errors import CaseError
from .models import AuditAnchor, AuditEntry
from .reference import is_valid_reference

__all__ = [
    "ENV_ANCHOR_KEY",
    "GENESIS_HASH",
    "AuditAction",
    "AuditError",
    "AuditLog",
    "AuditProblem",
    "AuditRecord",
    "AuditVerdict",
    "anchor_key_from_env",
    "canonical_details",
    "scrub_text",
]

ENV_ANCHOR_KEY: Final = "CALLCENTER_AUDIT_ANCHOR_KEY"
GENESIS_HASH: Final = "0" * 64
ANCHOR_ID: Final = 1
_HASH_VERSION: Final = "callcenter/audit/v1"
_MAC_CONTEXT: Final = b"callcenter/audit-anchor/v1\x00"
_MIN_ANCHOR_KEY_BYTES: Final = 16
# An integer with this many digits could be a phone number; ids and counts never are.
_MAX_DETAIL_INT: Final = 10**8
_MAX_DEPTH: Final = 8

# Text that looks like a number but is not one, kept through scrubbing: a complaint
# reference (checked with its Luhn digit below) and a vault token code.
_REFERENCE_LIKE = re.compile(r"(?<![\d+])\d{4}[ \-.]?\d{4}[ \-.]?\d{3}(?!\d)")
_TOKEN_CODE = re.compile(r"\b[THW]-[0-9A-HJKMNP-TV-Z]{8}\b")


class AuditAction(StrEnum):
    REVEAL = "identity.reveal"
    EXPORT = "cases.export"
    PLAYBACK = "recording.playback"
    CONSENT_RECORDED = "consent.record"
    CONSENT_WITHDRAWN = "consent.withdraw"
    CALLER_BLOCKED = "caller.block"
    CALLER_UNBLOCKED = "caller.unblock"
    KEYS_ROTATED = "keys.rotate"


class AuditError(CaseError):
    """The audit log cannot take a row (schema missing, details holding a number...)."""

    code = "audit_error"


# --------------------------------------------------------------------------- scrubbing


def scrub_text(text: str) -> str:
    """``text`` with every phone-number-like part replaced by ``[number]``.

    Complaint references and token codes stay: they are what a supervisor needs to
    read in the log, and neither leads to a person without the database or the vault.
    """
    kept: list[tuple[int, int]] = []
    for match in _REFERENCE_LIKE.finditer(text):
        if is_valid_reference(re.sub(r"[ \-.]", "", match.group())):
            kept.append(match.span())
    kept.extend(m.span() for m in _TOKEN_CODE.finditer(text))
    if not kept:
        return redact_text(text)
    pieces: list[str] = []
    cursor = 0
    for start, end in sorted(kept):
        if start < cursor:
            continue
        pieces.append(redact_text(text[cursor:start]))
        pieces.append(text[start:end])
        cursor = end
    pieces.append(redact_text(text[cursor:]))
    return "".join(pieces)


def _clean(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise AuditError("audit details are nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= _MAX_DETAIL_INT:
            raise AuditError("an audit detail is an integer large enough to be a phone number")
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError("audit detail keys must be strings")
            out[scrub_text(key)] = _clean(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_clean(item, depth + 1) for item in value]
    # Floats, bytes, SecretNumber...: nothing the log needs, and a float can hide digits.
    raise AuditError(f"an audit detail cannot be a {type(value).__name__}")


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """The details as the one JSON text that is stored and hashed."""
    cleaned = _clean(dict(details or {}))
    return json.dumps(cleaned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- hashing


def _aware(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _timestamp(value: datetime) -> str:
    return _aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(
    seq: int, at: datetime, actor: str, action: str, subject: str, details: str, prev_hash: str
) -> str:
    """SHA-256 over a JSON array of the row's fields and the previous hash.

    A JSON array is unambiguous (no field can run into the next) and the same on every
    platform; ``at`` is fixed to microseconds in UTC, which both databases keep exactly.
    """
    encoded = json.dumps(
        [_HASH_VERSION, seq, _timestamp(at), actor, action, subject, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def _anchor_mac(key: bytes, seq: int, head: str) -> str:
    message = _MAC_CONTEXT + f"{seq}\x00{head}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def anchor_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The anchor's HMAC key from ``CALLCENTER_AUDIT_ANCHOR_KEY`` (base64), or None."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_ANCHOR_KEY, "").strip()
    if not text:
        return None
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuditError(f"{ENV_ANCHOR_KEY} is not valid base64") from None
    if len(key) < _MIN_ANCHOR_KEY_BYTES:
        raise AuditError(f"{ENV_ANCHOR_KEY} must decode to at least {_MIN_ANCHOR_KEY_BYTES} bytes")
    return key


# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    hash: str

    @classmethod
    def from_row(cls, row: AuditEntry) -> AuditRecord:
        return cls(
            row.seq, _aware(row.at), row.actor, row.action, row.subject,
            json.loads(row.details), row.hash,
        )


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """Where the chain is broken: ``seq`` is the first row that is wrong or missing."""

    seq: int
    code: str  # altered | broken_link | missing | truncated | unanchored | anchor_*
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.message}"


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    checked: int
    head_seq: int
    problems: tuple[AuditProblem, ...]
    #: True: the anchor's HMAC was checked and holds; None: no key to check it with.
    anchor_signed: bool | None

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """Appends to and verifies the audit chain. Built once by the composition root."""

    def __init__(
        self,
        store: Store,
        *,
        anchor_key: bytes | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._key = anchor_key
        self._clock = clock or (lambda: datetime.now(UTC))

    async def append(
        self,
        session: AsyncSession,
        *,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Add a row inside the caller's transaction: it commits with what it records.

        Call it last in a transaction: from here to the commit, every other append
        waits for this one.
        """
        text = canonical_details(details)
        actor, subject = scrub_text(actor)[:64], scrub_text(subject)[:128]
        when = _aware(at or self._clock()).astimezone(UTC)
        head = (
            await session.execute(
                update(AuditAnchor)
                .where(AuditAnchor.id == ANCHOR_ID)
                .values(seq=AuditAnchor.seq + 1)
                .returning(AuditAnchor.seq, AuditAnchor.hash)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if head is None:
            raise AuditError("the audit anchor row is missing: is the schema migrated?")
        seq, prev_hash = int(head[0]), str(head[1])
        digest = row_hash(seq, when, actor, str(action), subject, text, prev_hash)
        session.add(
            AuditEntry(
                seq=seq, at=when, actor=actor, action=str(action), subject=subject,
                details=text, prev_hash=prev_hash, hash=digest,
            )
        )
        await session.flush()
        await session.execute(
            update(AuditAnchor)
            .where(AuditAnchor.id == ANCHOR_ID)
            .values(
                hash=digest,
                mac=_anchor_mac(self._key, seq, digest) if self._key is not None else None,
                updated_at=when,
            )
            .execution_options(synchronize_session=False)
        )
        return AuditRecord(seq, when, actor, str(action), subject, json.loads(text), digest)

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """:meth:`append` in a transaction of its own."""
        async with self._store.transaction() as session:
            return await self.append(
                session, actor=actor, action=action, subject=subject, details=details, at=at
            )

    async def entries(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The newest rows first, optionally for one subject or action."""
        query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        async with self._store.session() as session:
            return [AuditRecord.from_row(row) for row in await session.scalars(query)]

    async def verify(self, *, batch_size: int = 1000) -> AuditVerdict:
        """Walk the whole chain and compare its end with the anchor.

        The anchor is read first: every row up to its seq had committed by then, so a
        row missing below it was deleted, while rows appended during the walk are
        checked against the anchor read again at the end.
        """
        problems: list[AuditProblem] = []
        async with self._store.session() as session:
            start = await session.get(AuditAnchor, ANCHOR_ID)
            if start is None:
                raise AuditError("the audit anchor row is missing: is the schema migrated?")
            start_seq, start_hash, start_mac = start.seq, start.hash, start.mac
            await session.commit()  # end the read so the later reads see new commits

            expected, prev, checked = 1, GENESIS_HASH, 0
            hash_at_start: str | None = GENESIS_HASH if start_seq == 0 else None
            while True:
                rows = (
                    await session.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.seq >= expected)
                        .order_by(AuditEntry.seq)
                        .limit(batch_size)
                    )
                ).all()
                if not rows:
                    break
                for row in rows:
                    checked += 1
                    if row.seq != expected:
                        last = row.seq - 1
                        span = f"row {expected}" if last == expected else (
                            f"rows {expected}..{last}"
                        )
                        problems.append(
                            AuditProblem(expected, "missing", f"{span} deleted from the log")
                        )
                    elif row.prev_hash != prev:
                        problems.append(
                            AuditProblem(
                                row.seq, "broken_link",
                                f"row {row.seq} does not follow row {row.seq - 1}: "
                                "one of the two was rewritten",
                            )
                        )
                    recomputed = row_hash(
                        row.seq, row.at, row.actor, row.action, row.subject, row.details,
                        row.prev_hash,
                    )
                    if not hmac.compare_digest(recomputed, row.hash):
                        problems.append(
                            AuditProblem(
                                row.seq, "altered",
                                f"row {row.seq} was changed after it was written",
                            )
                        )
                    if row.seq == start_seq:
                        hash_at_start = row.hash
                    prev, expected = row.hash, row.seq + 1
                session.expunge_all()
                await session.commit()
            last_seq = expected - 1

            end = await session.get(AuditAnchor, ANCHOR_ID, populate_existing=True)
            end_seq = end.seq if end is not None else start_seq

        if last_seq < start_seq:
            span = f"row {start_seq}" if last_seq + 1 == start_seq else (
                f"rows {last_seq + 1}..{start_seq}"
            )
            problems.append(
                AuditProblem(last_seq + 1, "truncated", f"{span} at the end deleted from the log")
            )
        elif hash_at_start is not None and not hmac.compare_digest(hash_at_start, start_hash):
            problems.append(
                AuditProblem(
                    start_seq, "anchor_mismatch",
                    f"row {start_seq} is not the row the anchor recorded as the head",
                )
            )
        if last_seq > max(start_seq, end_seq):
            problems.append(
                AuditProblem(
                    max(start_seq, end_seq) + 1, "unanchored",
                    "rows after the anchored head were written outside the service",
                )
            )

        signed: bool | None = None
        if self._key is not None and start_seq > 0:
            expected_mac = _anchor_mac(self._key, start_seq, start_hash)
            if start_mac is None:
                signed = False
                problems.append(
                    AuditProblem(start_seq, "anchor_unsigned", "the anchor carries no signature")
                )
            elif not hmac.compare_digest(start_mac, expected_mac):
                signed = False
                problems.append(
                    AuditProblem(
                        start_seq, "anchor_forged",
                        "the anchor's signature does not match: the head was rewritten",
                    )
                )
            else:
                signed = True
        problems.sort(key=lambda p: p.seq)
        return AuditVerdict(checked, last_seq, tuple(problems), signed)
