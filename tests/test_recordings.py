"""Call recordings: encrypted at rest, stored once, played back only to whom it belongs and
always audited, deleted after retention, and erased with a case's personal data."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import (
    AuditEntry,
    CallerIdentity,
    Case,
    CaseHarasser,
    CaseNote,
    Consent,
)
from callcenter.cases.recordings import (
    CaseErasure,
    IngestTokens,
    Recording,
    RecordingCorrupt,
    RecordingRejected,
    RecordingStore,
    RecordingTooLarge,
)
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Base, Store, load_models

NODE = "up-east"
LINKEDID = "1732261000.10"
CALLER = "+91 98765 43210"
CALLER_DIGITS = "9876543210"
HARASSER = "+91 99999 12345"
TOKEN = "pbx-up-east-ingest-token-0123456789abcdef"
# Audio that contains her number's digits: a stored file must not.
AUDIO = b"RIFF" + CALLER_DIGITS.encode() * 50 + bytes(range(256)) * 40


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def chunks_of(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_masters({"k1": generate_key()}, "k1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recordings(
    migrated_store: Store, keyring: Keyring, clock: Clock, tmp_path: Path
) -> RecordingStore:
    return RecordingStore(
        migrated_store, tmp_path / "recordings", keyring, AuditLog(migrated_store),
        ingest_tokens=IngestTokens({NODE: TOKEN}), retention=timedelta(days=90),
        chunk_size=1024, clock=clock,
    )


async def ingest(store: RecordingStore, data: bytes = AUDIO, linkedid: str = LINKEDID):
    return await store.ingest(NODE, linkedid, "wav", chunks_of(data), content_sha256=sha(data))


async def play(store: RecordingStore, recording_id: str) -> bytes:
    info = await store.get(recording_id)
    assert info is not None
    return b"".join([chunk async for chunk in store.plaintext(info)])


async def count(store: Store, model: type[Base]) -> int:
    async with store.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --------------------------------------------------------------------------- at rest


async def test_ingest_encrypts_at_rest_under_an_opaque_name(
    recordings: RecordingStore,
) -> None:
    result = await ingest(recordings)
    assert result.created
    files = sorted(recordings.directory.iterdir())
    assert [f.name for f in files] == [f"{result.recording.id}.rec"]
    # No digit at all in the name: nothing of a number (or anything else) can be in it.
    assert re.fullmatch(r"[a-z]{26}\.rec", files[0].name)
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    stored = files[0].read_bytes()
    assert CALLER_DIGITS.encode() not in stored
    assert AUDIO[:64] not in stored and AUDIO[-64:] not in stored
    assert len(stored) > len(AUDIO)  # chunk tags and header
    assert await play(recordings, result.recording.id) == AUDIO
    assert result.recording.size_bytes == len(AUDIO)
    assert result.recording.kid == "k1"


async def test_chunk_boundaries_and_empty_files_round_trip(recordings: RecordingStore) -> None:
    for size in (0, 1, 1023, 1024, 1025, 2048, 4097):
        data = os.urandom(size)
        result = await ingest(recordings, data, linkedid=f"1732261000.{size}")
        assert await play(recordings, result.recording.id) == data, size


async def test_same_file_twice_is_one_recording(
    recordings: RecordingStore, migrated_store: Store
) -> None:
    first = await ingest(recordings)
    again = await ingest(recordings)
    assert (first.created, again.created) == (True, False)
    assert again.recording.id == first.recording.id
    assert await count(migrated_store, Recording) == 1
    assert len(list(recordings.directory.iterdir())) == 1
    # Another recording of the same call (a different file) is a second one.
    other = await ingest(recordings, AUDIO + b"more")
    assert other.created and other.recording.id != first.recording.id


async def test_cut_off_upload_is_refused_and_leaves_nothing(
    recordings: RecordingStore, migrated_store: Store
) -> None:
    with pytest.raises(RecordingRejected, match="checksum"):
        await recordings.ingest(
            NODE, LINKEDID, "wav", chunks_of(AUDIO[:-10]), content_sha256=sha(AUDIO)
        )
    assert await count(migrated_store, Recording) == 0
    assert list(recordings.directory.iterdir()) == []


async def test_oversized_upload_is_refused(recordings: RecordingStore) -> None:
    recordings.max_bytes = 2000
    with pytest.raises(RecordingTooLarge):
        await ingest(recordings)
    assert list(recordings.directory.iterdir()) == []


@pytest.mark.parametrize(
    ("node", "linkedid", "fmt", "digest"),
    [
        ("up east", LINKEDID, "wav", sha(AUDIO)),
        (NODE, "../../etc/passwd", "wav", sha(AUDIO)),
        (NODE, LINKEDID, "mp3", sha(AUDIO)),
        (NODE, LINKEDID, "wav", "abc"),
    ],
)
async def test_malformed_uploads_are_refused(
    recordings: RecordingStore, node: str, linkedid: str, fmt: str, digest: str
) -> None:
    with pytest.raises(RecordingRejected):
        await recordings.ingest(node, linkedid, fmt, chunks_of(AUDIO), content_sha256=digest)


async def test_altered_or_truncated_file_does_not_play(recordings: RecordingStore) -> None:
    result = await ingest(recordings)
    path = recordings.path_of(result.recording.id)
    original = path.read_bytes()

    altered = bytearray(original)
    altered[len(original) // 2] ^= 1
    path.write_bytes(bytes(altered))
    with pytest.raises(RecordingCorrupt):
        await play(recordings, result.recording.id)

    # Cut exactly at a chunk boundary: every remaining chunk is intact, but the new last
    # one was not sealed as the last.
    header = 8 + 16 + 1 + len("k1") + 4  # magic, salt, kid, chunk size
    assert len(AUDIO) > 3 * 1024
    path.write_bytes(original[: header + 2 * (1024 + 16)])
    with pytest.raises(RecordingCorrupt):
        await play(recordings, result.recording.id)


async def test_a_file_copied_under_another_id_does_not_play(recordings: RecordingStore) -> None:
    one = await ingest(recordings)
    two = await ingest(recordings, AUDIO[::-1])
    recordings.path_of(two.recording.id).write_bytes(
        recordings.path_of(one.recording.id).read_bytes()
    )
    with pytest.raises(RecordingCorrupt):
        await play(recordings, two.recording.id)


def test_ingest_tokens_compare_per_node() -> None:
    tokens = IngestTokens.from_env(
        {"CALLCENTER_RECORDING_INGEST_TOKENS": f"{NODE}:{TOKEN},up-west:{TOKEN[::-1]}"}
    )
    assert tokens.check(NODE, TOKEN)
    assert not tokens.check("up-west", TOKEN)  # another node's token
    assert not tokens.check("nowhere", TOKEN)
    assert not tokens.check(NODE, TOKEN[:-1])
    assert TOKEN not in repr(tokens)
    with pytest.raises(Exception, match="shorter"):
        IngestTokens({NODE: "short"})


# --------------------------------------------------------------------------- retention


async def test_purge_deletes_after_retention_and_sweeps_orphans(
    recordings: RecordingStore, migrated_store: Store, clock: Clock
) -> None:
    result = await ingest(recordings)
    path = recordings.path_of(result.recording.id)
    kept = await recordings.purge(clock.now + timedelta(days=89))
    assert kept.expired == 0 and path.exists()

    stray = recordings.directory / ("z" * 26 + ".rec")
    stray.write_bytes(b"left by a crash")
    os.utime(stray, (0, 0))
    foreign = recordings.directory / "README.txt"
    foreign.write_text("not ours")
    os.utime(foreign, (0, 0))

    report = await recordings.purge(clock.now + timedelta(days=91))
    assert (report.expired, report.orphan_files) == (1, 1)
    assert not path.exists() and not stray.exists()
    assert foreign.exists(), "purge deletes only files it could have written"
    assert await count(migrated_store, Recording) == 0


# --------------------------------------------------------------------------- erasure


async def _call(store: Store, vault: Vault, linkedid: str, number: str) -> int:
    identity = await IdentityStore(store).remember(vault.admit_caller_id(number))
    async with store.transaction() as session:
        record = CallRecord(
            node=NODE, linkedid=linkedid, caller_identity_id=identity, caller_token="T-7KQ2M9AB",
            started_at=datetime(2026, 3, 2, 9, 50, tzinfo=UTC), agent_interface="PJSIP/agent1001",
            outcome="answered", category="stalking", talk_seconds=300,
        )
        session.add(record)
        await session.flush()
        return record.id


async def test_erase_case_removes_personal_data_and_keeps_statistics(
    recordings: RecordingStore, migrated_store: Store, keyring: Keyring, clock: Clock
) -> None:
    vault = Vault(keyring)
    cases = CaseService(migrated_store, vault, AuditLog(migrated_store), clock=clock)
    call_id = await _call(migrated_store, vault, LINKEDID, CALLER)
    case = (await cases.create_from_wrapup(
        call_id,
        WrapUpForm(category="stalking", description="He follows her to college every day",
                   district="Lucknow", risk="high", harasser_numbers=[HARASSER],
                   actions=["counselling"], note="She will call back on Monday"),
        "asha",
    )).summary
    caller_id = case.caller_identity_id
    assert caller_id is not None
    async with migrated_store.transaction() as session:
        session.add(Consent(identity_id=caller_id, case_id=case.id, scope="police",
                            given_at=clock.now, recorded_by="asha"))
    # Another woman's case names the same harasser: his identity must stay for her.
    other_call = await _call(migrated_store, vault, "1732261999.20", "+91 91234 56789")
    other = (await cases.create_from_wrapup(
        other_call, WrapUpForm(category="phone-harassment", harasser_numbers=[HARASSER]), "bela"
    )).summary
    recording = await ingest(recordings)
    other_recording = await ingest(recordings, b"other call", linkedid="1732261999.20")

    report = await recordings.erase_case(case.reference, erased_by="deepa")
    assert (report.recordings, report.notes, report.harassers_unlinked) == (1, 1, 1)
    assert report.identities_deleted == 1  # hers; the harasser is still in the other case

    async with migrated_store.session() as session:
        row = await session.get(Case, case.id)
        assert row is not None
        assert (row.description, row.district, row.caller_identity_id) == ("", None, None)
        # Anonymous statistics stay.
        assert (row.category, row.risk, row.status, row.reference) == (
            "stalking", "high", "open", case.reference)
        assert row.created_at is not None and row.opened_at is not None
        call = await session.get(CallRecord, call_id)
        assert call is not None
        assert (call.caller_identity_id, call.caller_token) == (None, None)
        assert (call.outcome, call.talk_seconds) == ("answered", 300)
        assert await session.get(CallerIdentity, caller_id) is None
        assert not (await session.scalars(
            select(CaseNote).where(CaseNote.case_id == case.id))).all()
        assert not (await session.scalars(
            select(CaseHarasser).where(CaseHarasser.case_id == case.id))).all()
        assert not (await session.scalars(
            select(Consent).where(Consent.case_id == case.id))).all()
        # The other case is untouched, harasser included.
        assert len((await session.scalars(
            select(CaseHarasser).where(CaseHarasser.case_id == other.id))).all()) == 1
        assert await session.get(CaseErasure, case.id) is not None
        erased = (await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "case.erase"))).one()
        assert erased.actor == "deepa"
    assert await recordings.get(recording.recording.id) is None
    assert not recordings.path_of(recording.recording.id).exists()
    assert await play(recordings, other_recording.recording.id) == b"other call"

    again = await recordings.erase_case(case.reference, erased_by="deepa")
    assert (again.recordings, again.identities_deleted) == (0, 0)


# --------------------------------------------------------------------------- schema


async def test_migration_matches_the_recording_tables(migrated_store: Store) -> None:
    def diff(connection: Connection) -> list[object]:
        ours = {"recording", "case_erasure"}

        def include(obj: object, name: str | None, type_: str, *_: object) -> bool:
            table = getattr(obj, "table", obj)
            return type_ != "table" and getattr(table, "name", None) in ours or name in ours

        context = MigrationContext.configure(connection, opts={"include_object": include})
        return compare_metadata(context, load_models())

    async with migrated_store.engine.connect() as connection:
        assert await connection.run_sync(diff) == []

