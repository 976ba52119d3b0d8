"""Call recordings: made by the PBX, stored encrypted, played back under RBAC, then forgotten.

How a recording gets here
-------------------------
app_queue records every answered queue call itself (``monitor-format`` in
``dialplans/queues_1090.conf``), from the moment the agent answers, so nothing depends on
the backend being up. The dialplan names the file ``wpl-${UNIQUEID}`` (an id, never
anything from her number) and hands it to ``dialplans/wpl-recording-hook.sh`` through
``MONITOR_EXEC`` when the recording ends. The hook moves it into a spool on the PBX and
uploads it over HTTPS to ``PUT /api/recordings/ingest/{node}/{linkedid}`` with the
PBX's own ingest token, retrying from the spool until the backend says it has it; only
then does it delete its copy. See ``recordings/README.md``.

At rest
-------
Each recording is one file in the store's directory, named ``<id>.rec`` where the id
is 26 random lowercase letters: no digit at all, so no file name or URL can carry any
part of a number. The file is AES-256-GCM in 64 KiB chunks (the STREAM construction:
a per-chunk nonce holding the chunk's index and a last-chunk flag), so it is written
and played back without ever holding a whole call in memory, and a truncated,
reordered or swapped file fails to decrypt instead of playing something else.

Keys: no new secret. The file key is HKDF-SHA256 of the vault's AES key of the active
key id (``callcenter.cases.vault``), with a random per-file salt and an info label of
its own (``callcenter/recordings/v1/...`` plus the recording id), so it never equals a
key the vault uses and a file cannot be passed off as another recording. The key id
is in the file's header and in its row; a vault key must stay in the keyring until
every recording made under it has passed retention (``callcenter keys in-use`` does
also counts recordings, like :meth:`RecordingStore.kids_in_use`).

Rows: ``recording`` names the call by (node, linkedid), the key of ``call_record``, so
a recording that arrives before the backend saw the call (it was down) links itself
once the record exists. The same file uploaded twice is one recording: (node,
linkedid, SHA-256 of the audio) is unique.

Who listens
-----------
Supervisors and admins; an agent or counsellor only to a call she answered herself
(her endpoint is the call's ``agent_interface``). Every attempt, allowed or refused, is
a row in the audit log, written before a byte is sent.

Forgetting
----------
:meth:`RecordingStore.purge` deletes recordings older than the retention period
(file, then row) and files no row knows. :meth:`RecordingStore.erase_case` removes a
case's personal data and keeps what statistics need; the cases service has no erasure
of its own, so it is done here, in SQL over the cases tables, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import string
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    String,
    UniqueConstraint,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.pbx.models import CallRecord
from callcenter.store import Base, Store

from .audit import AuditAction, AuditLog
from .errors import CaseError
from .models import (
    CallerBlock,
    CallerIdentity,
    Case,
    CaseAction,
    CaseCall,
    CaseHarasser,
    CaseNote,
    CaseStatusChange,
    Consent,
)
from .reference import parse_reference
from .vault import Keyring

__all__ = [
    "DEFAULT_RETENTION",
    "ENV_INGEST_TOKENS",
    "ERASE_ACTION",
    "FORMATS",
    "CaseErasure",
    "CaseNotFound",
    "ErasureReport",
    "IngestResult",
    "IngestTokens",
    "PlaybackRefused",
    "PurgeReport",
    "Recording",
    "RecordingError",
    "RecordingInfo",
    "RecordingNotFound",
    "RecordingRejected",
    "RecordingStore",
    "RecordingTooLarge",
    "new_recording_id",
    "register",
]

log = logging.getLogger(__name__)

#: How long a recording is kept when the service config says nothing.
DEFAULT_RETENTION: Final = timedelta(days=90)
#: ``node:token,node:token`` (or a JSON object): each PBX's ingest token.
ENV_INGEST_TOKENS: Final = "CALLCENTER_RECORDING_INGEST_TOKENS"
ERASE_ACTION: Final = "case.erase"

#: Formats app_queue's ``monitor-format`` can name, and what a browser is told they are.
FORMATS: Final[Mapping[str, str]] = {
    "wav": "audio/wav",
    "wav49": "audio/wav",  # GSM in a WAV container
    "WAV": "audio/wav",  # Asterisk's file extension for wav49
    "gsm": "audio/x-gsm",
}
SUPERVISING_ROLES: Final = frozenset({"supervisor", "admin"})

DEFAULT_CHUNK: Final = 64 * 1024
DEFAULT_MAX_BYTES: Final = 1024 * 1024 * 1024  # a very long call at 8 kHz is ~60 MB/h
#: A file without a row this old is debris of a crash between write and commit.
ORPHAN_AGE: Final = timedelta(hours=6)
MIN_TOKEN_CHARS: Final = 32

_ID_ALPHABET: Final = string.ascii_lowercase
_ID_LENGTH: Final = 26  # 26 * log2(26) = 122 bits, like a UUID4
_ID = re.compile(r"[a-z]{26}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What Asterisk puts in a Linkedid / Uniqueid: "1732261000.10", or "<systemname>-1732261000.10".
_LINKEDID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_MAGIC: Final = b"WPLREC\x00\x01"
_SALT_BYTES: Final = 16
_TAG: Final = 16
_HKDF_INFO: Final = b"callcenter/recordings/v1/aes-256-gcm-stream\x00"
_SUFFIX: Final = ".rec"
_PARTIAL: Final = ".part"


# --------------------------------------------------------------------------- errors


class RecordingError(CaseError):
    code: ClassVar[str] = "recording_error"


class RecordingNotFound(RecordingError, LookupError):
    code: ClassVar[str] = "recording_not_found"


class PlaybackRefused(RecordingError, PermissionError):
    """Not hers to hear; the refusal is in the audit log."""

    code: ClassVar[str] = "recording_playback_refused"


class RecordingRejected(RecordingError, ValueError):
    """An upload that cannot be a recording (bad format, checksum mismatch...)."""

    code: ClassVar[str] = "recording_rejected"


class RecordingTooLarge(RecordingRejected):
    code: ClassVar[str] = "recording_too_large"


class RecordingCorrupt(RecordingError):
    """The stored file does not decrypt: altered, truncated, or its key is gone."""

    code: ClassVar[str] = "recording_corrupt"


class CaseNotFound(RecordingError, LookupError):
    code: ClassVar[str] = "case_not_found"


# --------------------------------------------------------------------------- tables


class Recording(Base):
    """One recording of one call, stored encrypted as ``<id>.rec``."""

    __tablename__ = "recording"
    __table_args__ = (UniqueConstraint("node", "linkedid", "content_sha256"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))
    kid: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CaseErasure(Base):
    """A case whose personal data was erased; its anonymous statistics remain."""

    __tablename__ = "case_erasure"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    erased_by: Mapped[str] = mapped_column(String(32))


# --------------------------------------------------------------------------- values


def new_recording_id() -> str:
    """26 random lowercase letters: opaque, unguessable, and without a single digit."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def is_recording_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    id: str
    node: str
    linkedid: str
    format: str
    size_bytes: int
    kid: str
    received_at: datetime
    #: The call record, when the backend knows the call.
    call_record_id: int | None = None
    agent_interface: str | None = None

    @property
    def content_type(self) -> str:
        return FORMATS.get(self.format, "application/octet-stream")

    @classmethod
    def of(cls, row: Recording, call: CallRecord | None = None) -> RecordingInfo:
        return cls(
            row.id, row.node, row.linkedid, row.format, row.size_bytes, row.kid,
            _aware(row.received_at),
            call.id if call is not None else None,
            call.agent_interface if call is not None else None,
        )


@dataclass(frozen=True, slots=True)
class IngestResult:
    recording: RecordingInfo
    #: False: this very file was already stored (a retry); nothing new was written.
    created: bool


@dataclass(frozen=True, slots=True)
class PurgeReport:
    expired: int
    orphan_files: int


@dataclass(frozen=True, slots=True)
class ErasureReport:
    reference: str
    recordings: int
    notes: int
    harassers_unlinked: int
    identities_deleted: int
    consents_deleted: int


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- ingest tokens


class IngestTokens:
    """Each PBX node's upload token. Compared in constant time, never logged."""

    __slots__ = ("_digests",)

    def __init__(self, tokens: Mapping[str, str]) -> None:
        digests: dict[str, bytes] = {}
        for node, token in tokens.items():
            if not _NODE.fullmatch(node):
                raise RecordingError(f"ingest token for a malformed node name {node!r}")
            if len(token) < MIN_TOKEN_CHARS:
                raise RecordingError(
                    f"the ingest token of node {node!r} is shorter than {MIN_TOKEN_CHARS} "
                    "characters; make one with: openssl rand -base64 32"
                )
            digests[node] = hashlib.sha256(token.encode()).digest()
        self._digests = digests

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestTokens:
        env = os.environ if environ is None else environ
        text = env.get(ENV_INGEST_TOKENS, "").strip()
        if not text:
            return cls({})
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                raise RecordingError(f"{ENV_INGEST_TOKENS} is not valid JSON") from None
            if not isinstance(loaded, dict):
                raise RecordingError(f"{ENV_INGEST_TOKENS} must be a JSON object")
            return cls({str(k): str(v) for k, v in loaded.items()})
        tokens: dict[str, str] = {}
        for item in text.split(","):
            node, sep, token = item.strip().partition(":")
            if not sep:
                raise RecordingError(f"{ENV_INGEST_TOKENS} entries are node:token")
            tokens[node] = token
        return cls(tokens)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self._digests))

    def check(self, node: str, presented: str) -> bool:
        """Whether ``presented`` is ``node``'s token. Same work for unknown nodes."""
        expected = self._digests.get(node)
        given = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        # Hashing both sides makes the comparison fixed-length; an unknown node compares
        # against a random value so its answer takes as long as a wrong token's.
        ok = hmac.compare_digest(given, expected if expected is not None else os.urandom(32))
        return ok and expected is not None

    def __repr__(self) -> str:
        return f"IngestTokens(nodes={self.nodes!r})"


# --------------------------------------------------------------------------- the cipher


def _file_key(seal_key: bytes, salt: bytes, recording_id: str) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt,
        info=_HKDF_INFO + recording_id.encode("ascii"),
    ).derive(seal_key)
    return AESGCM(key)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _header(salt: bytes, kid: str, chunk: int) -> bytes:
    encoded = kid.encode("ascii")
    return _MAGIC + salt + bytes([len(encoded)]) + encoded + chunk.to_bytes(4, "big")


class _Sealer:
    """Encrypts a stream into one file, one chunk behind so the last one is marked."""

    def __init__(self, out: BinaryIO, aead: AESGCM, header: bytes, chunk: int) -> None:
        self._out = out
        self._aead = aead
        self._aad = header
        self._chunk = chunk
        self._pending = bytearray()
        self._index = 0
        out.write(header)

    def feed(self, data: bytes) -> None:
        self._pending += data
        # Strictly more than a chunk: what remains at the end is always the last chunk.
        while len(self._pending) > self._chunk:
            self._emit(bytes(self._pending[: self._chunk]), last=False)
            del self._pending[: self._chunk]

    def close(self) -> None:
        self._emit(bytes(self._pending), last=True)
        self._pending.clear()
        self._out.flush()
        os.fsync(self._out.fileno())

    def _emit(self, plain: bytes, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._index, last), plain, self._aad))
        self._index += 1


class _Opener:
    """Decrypts a ``.rec`` file chunk by chunk; every chunk is checked before it is given."""

    def __init__(self, path: Path, recording_id: str, keyring: Keyring) -> None:
        self._file = path.open("rb")
        try:
            magic = self._file.read(len(_MAGIC))
            if magic != _MAGIC:
                raise RecordingCorrupt("the recording file is not in the v1 format")
            salt = self._file.read(_SALT_BYTES)
            kid_len = self._file.read(1)
            if len(salt) != _SALT_BYTES or not kid_len:
                raise RecordingCorrupt("the recording file's header is cut short")
            kid = self._file.read(kid_len[0]).decode("ascii", "replace")
            chunk_bytes = self._file.read(4)
            if len(chunk_bytes) != 4:
                raise RecordingCorrupt("the recording file's header is cut short")
            self._chunk = int.from_bytes(chunk_bytes, "big")
            if not 0 < self._chunk <= 16 * 1024 * 1024:
                raise RecordingCorrupt("the recording file's header is malformed")
            try:
                vault_key = keyring.get(kid)
            except LookupError:
                raise RecordingCorrupt(
                    f"the key {kid!r} of this recording is no longer in the keyring"
                ) from None
            self._aad = _header(salt, kid, self._chunk)
            self._aead = _file_key(vault_key.seal_key, salt, recording_id)
            body = os.fstat(self._file.fileno()).st_size - len(self._aad)
            sealed = self._chunk + _TAG
            self._chunks = max(1, -(-body // sealed))
            last = body - (self._chunks - 1) * sealed
            if last < _TAG:
                raise RecordingCorrupt("the recording file is cut short")
            self._index = 0
        except BaseException:
            self._file.close()
            raise

    def next_chunk(self) -> bytes | None:
        if self._index >= self._chunks:
            return None
        last = self._index == self._chunks - 1
        sealed = self._file.read(self._chunk + _TAG)
        try:
            plain = self._aead.decrypt(_nonce(self._index, last), sealed, self._aad)
        except InvalidTag:
            raise RecordingCorrupt("the recording file was altered or cut short") from None
        self._index += 1
        return plain

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- the store


class RecordingStore:
    """Ingest, playback, retention and erasure of call recordings.

    ``directory`` holds the encrypted files (``recordings/`` by default; see its
    README). ``keyring`` is the vault's (None only for purging, which opens nothing).
    ``ingest_tokens`` authenticate the PBXs' uploads; the web layer checks them
    through :meth:`check_ingest_token`.
    """

    def __init__(
        self,
        store: Store,
        directory: str | os.PathLike[str],
        keyring: Keyring | None,
        audit: AuditLog,
        *,
        ingest_tokens: IngestTokens | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        max_bytes: int = DEFAULT_MAX_BYTES,
        chunk_size: int = DEFAULT_CHUNK,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if retention <= timedelta(0):
            raise RecordingError("the recording retention period must be positive")
        self._store = store
        self.directory = Path(directory)
        self._keyring = keyring
        self._audit = audit
        self.ingest_tokens = ingest_tokens or IngestTokens({})
        self.retention = retention
        self.max_bytes = max_bytes
        self._chunk = chunk_size
        self._clock = clock or (lambda: datetime.now(UTC))

    def _now(self) -> datetime:
        return _aware(self._clock()).astimezone(UTC)

    def path_of(self, recording_id: str) -> Path:
        if not is_recording_id(recording_id):
            raise RecordingNotFound("no such recording")
        return self.directory / f"{recording_id}{_SUFFIX}"

    def _keys(self) -> Keyring:
        if self._keyring is None:
            raise RecordingError("this recording store was built without the vault's keys")
        return self._keyring

    def check_ingest_token(self, node: str, token: str) -> bool:
        return self.ingest_tokens.check(node, token)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- ingest

    async def ingest(
        self,
        node: str,
        linkedid: str,
        fmt: str,
        chunks: AsyncIterable[bytes],
        *,
        content_sha256: str,
    ) -> IngestResult:
        """Store one finished recording from the PBX, encrypted, exactly once.

        ``content_sha256`` (hex) is what the PBX computed over the file it sends: a
        cut-off upload is refused instead of stored, and a retry of an upload that did
        arrive is recognised before a byte of it is read.
        """
        if not _NODE.fullmatch(node):
            raise RecordingRejected("the node name is malformed")
        if not _LINKEDID.fullmatch(linkedid):
            raise RecordingRejected("the call id (Linkedid) is malformed")
        if fmt not in FORMATS:
            raise RecordingRejected(
                f"unknown recording format; one of {', '.join(sorted(FORMATS))}"
            )
        digest = content_sha256.strip().lower()
        if not _SHA256.fullmatch(digest):
            raise RecordingRejected("the content checksum must be 64 hex digits of SHA-256")
        existing = await self._find(node, linkedid, digest)
        if existing is not None:
            return IngestResult(existing, created=False)

        self._ensure_directory()
        recording_id = new_recording_id()
        key = self._keys().active
        salt = os.urandom(_SALT_BYTES)
        partial = self.directory / f"{recording_id}{_PARTIAL}"
        final = self.path_of(recording_id)
        hasher = hashlib.sha256()
        size = 0
        out = await asyncio.to_thread(_create_private, partial)
        try:
            sealer = _Sealer(
                out, _file_key(key.seal_key, salt, recording_id),
                _header(salt, key.kid, self._chunk), self._chunk,
            )
            async for data in chunks:
                size += len(data)
                if size > self.max_bytes:
                    raise RecordingTooLarge(
                        f"a recording may be at most {self.max_bytes} bytes"
                    )
                hasher.update(data)
                await asyncio.to_thread(sealer.feed, data)
            if not hmac.compare_digest(hasher.hexdigest(), digest):
                raise RecordingRejected(
                    "the upload does not match its checksum (cut off or altered on the way); "
                    "send it again"
                )
            await asyncio.to_thread(sealer.close)
            out.close()
            await asyncio.to_thread(os.replace, partial, final)
        except BaseException:
            out.close()
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise

        row = Recording(
            id=recording_id, node=node, linkedid=linkedid, format=fmt, size_bytes=size,
            content_sha256=digest, kid=key.kid, received_at=self._now(),
        )
        try:
            async with self._store.transaction() as session:
                session.add(row)
        except IntegrityError:
            # The same file, uploaded twice at once: the other upload's row is the one.
            final.unlink(missing_ok=True)
            existing = await self._find(node, linkedid, digest)
            if existing is None:
                raise
            return IngestResult(existing, created=False)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        log.info("recording %s stored (node %s, %d bytes)", recording_id, node, size)
        return IngestResult(await self._info(recording_id), created=True)

    async def _find(self, node: str, linkedid: str, digest: str) -> RecordingInfo | None:
        async with self._store.session() as session:
            recording_id = await session.scalar(
                select(Recording.id).where(
                    Recording.node == node, Recording.linkedid == linkedid,
                    Recording.content_sha256 == digest,
                )
            )
        return None if recording_id is None else await self._info(recording_id)

    # -- reading

    def _with_call(self) -> Any:
        return select(Recording, CallRecord).outerjoin(
            CallRecord,
            (CallRecord.node == Recording.node) & (CallRecord.linkedid == Recording.linkedid),
        )

    async def _info(self, recording_id: str) -> RecordingInfo:
        info = await self.get(recording_id)
        if info is None:
            raise RecordingNotFound("no such recording")
        return info

    async def get(self, recording_id: str) -> RecordingInfo | None:
        if not is_recording_id(recording_id):
            return None
        async with self._store.session() as session:
            found = (
                await session.execute(self._with_call().where(Recording.id == recording_id))
            ).first()
        return None if found is None else RecordingInfo.of(found[0], found[1])

    async def for_call(self, node: str, linkedid: str) -> list[RecordingInfo]:
        query = (
            self._with_call()
            .where(Recording.node == node, Recording.linkedid == linkedid)
            .order_by(Recording.received_at, Recording.id)
        )
        async with self._store.session() as session:
            return [RecordingInfo.of(r, c) for r, c in (await session.execute(query)).all()]

    async def kids_in_use(self) -> dict[str, int]:
        """Recordings per vault key id: a key stays in the keyring while it has some."""
        async with self._store.session() as session:
            rows = await session.execute(
                select(Recording.kid, func.count()).group_by(Recording.kid)
            )
            return {kid: int(count) for kid, count in rows.all()}

    # -- playback

    @staticmethod
    def may_play(info: RecordingInfo, *, role: str, endpoint: str | None) -> bool:
        """Supervisors and admins; otherwise only the agent who answered that call."""
        if role in SUPERVISING_ROLES:
            return True
        return (
            info.agent_interface is not None
            and endpoint is not None
            and hmac.compare_digest(info.agent_interface, endpoint)
        )

    async def authorize_playback(
        self, recording_id: str, *, actor: str, role: str, endpoint: str | None
    ) -> RecordingInfo:
        """Decide and audit a playback; raises :class:`PlaybackRefused` after auditing."""
        info = await self.get(recording_id)
        if info is None:
            raise RecordingNotFound("no such recording")
        allowed = self.may_play(info, role=role, endpoint=endpoint)
        subject = (
            f"call:{info.call_record_id}" if info.call_record_id is not None
            else f"recording:{info.id}"
        )
        details: dict[str, Any] = {"granted": allowed, "role": role, "recording": info.id}
        if not allowed:
            details["refused"] = PlaybackRefused.code
        await self._audit.record(
            actor=actor, action=AuditAction.PLAYBACK, subject=subject, details=details,
        )
        if not allowed:
            raise PlaybackRefused(
                "only the agent who answered this call, or a supervisor, can listen to it"
            )
        return info

    async def plaintext(self, info: RecordingInfo) -> AsyncIterator[bytes]:
        """The decrypted audio, chunk by chunk. Raises :class:`RecordingCorrupt`."""
        path = self.path_of(info.id)
        try:
            opener = await asyncio.to_thread(_Opener, path, info.id, self._keys())
        except FileNotFoundError:
            raise RecordingCorrupt("the recording's file is missing") from None
        try:
            while True:
                chunk = await asyncio.to_thread(opener.next_chunk)
                if chunk is None:
                    return
                yield chunk
        finally:
            opener.close()

    # -- retention

    async def purge(self, now: datetime | None = None) -> PurgeReport:
        """Delete recordings older than the retention period, and files no row knows."""
        moment = _aware(now).astimezone(UTC) if now is not None else self._now()
        cutoff = moment - self.retention
        async with self._store.session() as session:
            expired = list(
                (
                    await session.scalars(
                        select(Recording.id).where(Recording.received_at < cutoff)
                    )
                ).all()
            )
        for recording_id in expired:
            # File first: a crash in between leaves a row without a file (playback says
            # so), never audio nobody is accountable for.
            self.path_of(recording_id).unlink(missing_ok=True)
            async with self._store.transaction() as session:
                await session.execute(delete(Recording).where(Recording.id == recording_id))
        orphans = await self._sweep_orphans(moment)
        if expired or orphans:
            log.info("recordings purged: %d expired, %d orphan files", len(expired), orphans)
        return PurgeReport(expired=len(expired), orphan_files=orphans)

    async def _sweep_orphans(self, moment: datetime) -> int:
        if not self.directory.is_dir():
            return 0
        old = (moment - ORPHAN_AGE).timestamp()
        candidates: dict[str, Path] = {}
        for path in self.directory.iterdir():
            name, _, suffix = path.name.partition(".")
            if not (is_recording_id(name) and f".{suffix}" in (_SUFFIX, _PARTIAL)):
                continue  # not ours: never delete what we did not write
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < old:
                    candidates[path.name] = path
        if not candidates:
            return 0
        ids = {p.name.partition(".")[0] for p in candidates.values()}
        async with self._store.session() as session:
            known = set(
                (await session.scalars(select(Recording.id).where(Recording.id.in_(ids)))).all()
            )
        removed = 0
        for path in candidates.values():
            recording_id = path.name.partition(".")[0]
            if path.name.endswith(_PARTIAL) or recording_id not in known:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- erasure

    async def erase_case(self, reference: str, *, erased_by: str) -> ErasureReport:
        """Erase a case's personal data; keep its anonymous statistics.

        Removed: the description and district, notes, the free text of actions and
        status changes, the harassers named in it, consents given for it, the link of
        the case and of its calls to her identity, every identity (hers, harassers')
        that nothing else refers to (token digest and sealed number with it), and the
        recordings of its calls. Kept: reference, category, sub-category, risk, status,
        language, every date, the kinds of actions taken, and the call records'
        timings and outcomes. Idempotent; audited as ``case.erase``.
        """
        digits = parse_reference(reference).digits
        actor = erased_by.strip()[:32]
        if not actor:
            raise RecordingError("say who erases the case (a username)")
        now = self._now()
        async with self._store.transaction() as session:
            case = await session.scalar(select(Case).where(Case.reference == digits))
            if case is None:
                raise CaseNotFound("no case with that reference")
            call_ids = list(
                (
                    await session.scalars(
                        select(CaseCall.call_record_id).where(CaseCall.case_id == case.id)
                    )
                ).all()
            )
            if case.origin_call_id is not None and case.origin_call_id not in call_ids:
                call_ids.append(case.origin_call_id)
            recording_ids = await self._recordings_of_calls(session, call_ids)
            harassers = list(
                (
                    await session.scalars(
                        select(CaseHarasser.identity_id).where(CaseHarasser.case_id == case.id)
                    )
                ).all()
            )
            caller = case.caller_identity_id

            await session.execute(delete(CaseHarasser).where(CaseHarasser.case_id == case.id))
            notes = (
                await session.execute(delete(CaseNote).where(CaseNote.case_id == case.id))
            ).rowcount or 0
            await session.execute(
                update(CaseAction).where(CaseAction.case_id == case.id).values(note=None)
            )
            await session.execute(
                update(CaseStatusChange)
                .where(CaseStatusChange.case_id == case.id)
                .values(reason=None)
            )
            # A consent given for this case would become a general one if only unlinked.
            consents = (
                await session.execute(delete(Consent).where(Consent.case_id == case.id))
            ).rowcount or 0
            case.description = ""
            case.district = None
            case.caller_identity_id = None
            case.updated_at = now
            if call_ids:
                await session.execute(
                    update(CallRecord)
                    .where(CallRecord.id.in_(call_ids))
                    .values(caller_identity_id=None, caller_token=None)
                )
            await session.flush()

            deleted_identities = 0
            for identity_id in dict.fromkeys([i for i in (caller, *harassers) if i is not None]):
                if await _identity_in_use(session, identity_id):
                    continue
                consents += (
                    await session.execute(
                        delete(Consent).where(Consent.identity_id == identity_id)
                    )
                ).rowcount or 0
                await session.execute(
                    delete(CallerIdentity).where(CallerIdentity.id == identity_id)
                )
                deleted_identities += 1

            if recording_ids:
                await session.execute(delete(Recording).where(Recording.id.in_(recording_ids)))
            if await session.get(CaseErasure, case.id) is None:
                session.add(CaseErasure(case_id=case.id, erased_at=now, erased_by=actor))
            await session.flush()
            await self._audit.append(
                session, actor=actor, action=ERASE_ACTION, subject=f"case:{digits}",
                details={
                    "recordings": len(recording_ids), "notes": notes,
                    "harassers": len(harassers), "identities_deleted": deleted_identities,
                    "consents_deleted": consents,
                },
                at=now,
            )
        # After the commit: a failed unlink leaves a file no row knows, which purge()
        # removes; the reverse order could lose the row of a file that stays.
        for recording_id in recording_ids:
            self.path_of(recording_id).unlink(missing_ok=True)
        return ErasureReport(
            reference=digits, recordings=len(recording_ids), notes=notes,
            harassers_unlinked=len(harassers), identities_deleted=deleted_identities,
            consents_deleted=consents,
        )

    @staticmethod
    async def _recordings_of_calls(session: AsyncSession, call_ids: list[int]) -> list[str]:
        if not call_ids:
            return []
        query = select(Recording.id).join(
            CallRecord,
            (CallRecord.node == Recording.node) & (CallRecord.linkedid == Recording.linkedid),
        ).where(CallRecord.id.in_(call_ids))
        return list((await session.scalars(query)).all())


async def _identity_in_use(session: AsyncSession, identity_id: int) -> bool:
    """Whether anything besides the erased case still refers to the identity."""
    references = (
        exists().where(Case.caller_identity_id == identity_id),
        exists().where(CaseHarasser.identity_id == identity_id),
        exists().where(CallRecord.caller_identity_id == identity_id),
        exists().where(CallerBlock.identity_id == identity_id),
        # A consent tied to another case is that case's; a general one (no case) is hers
        # and goes with her identity.
        exists().where(Consent.identity_id == identity_id, Consent.case_id.is_not(None)),
    )
    return bool(await session.scalar(select(or_(*references))))


def _create_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


# --------------------------------------------------------------------------- command line


def register(subparsers: Any) -> None:
    """``callcenter recordings purge``: retention, for a cron job or systemd timer."""
    recordings = subparsers.add_parser("recordings", help="call recordings")
    recordings.add_argument("--database", metavar="URL", help="database URL (default: config's)")
    commands = recordings.add_subparsers(dest="recordings_command", metavar="COMMAND",
                                         required=True)
    purge = commands.add_parser(
        "purge", help="delete recordings older than the retention period"
    )
    purge.add_argument("--directory", default="recordings", help="where the files are")
    purge.add_argument("--retention-days", type=float, default=DEFAULT_RETENTION.days,
                       help=f"keep this many days (default {DEFAULT_RETENTION.days})")
    purge.set_defaults(handler=_purge_command)


def _purge_command(args: Any) -> int:
    import sys

    from .cli import _run  # the cases CLI's runner: same database and error handling

    if args.retention_days <= 0:
        print("recordings purge: --retention-days must be positive", file=sys.stderr)
        return 1

    async def action(store: Store) -> PurgeReport:
        # Purging needs no key: it deletes files, it never opens them.
        recordings = RecordingStore(
            store, args.directory, None, AuditLog(store),
            retention=timedelta(days=args.retention_days),
        )
        return await recordings.purge()

    report = _run("recordings purge", args, action)
    print(f"{report.expired} expired recordings deleted, {report.orphan_files} orphan files")
    return 0

