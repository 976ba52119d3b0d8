"""The hash-chained audit log: appends never fork, and tampering is found and located."""

from __future__ import annotations

import argparse
import asyncio
import base64
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from callcenter.cases import cli as cases_cli
from callcenter.cases.audit import (
    ENV_ANCHOR_KEY,
    AuditError,
    AuditLog,
    anchor_key_from_env,
    row_hash,
    scrub_text,
)
from callcenter.cases.models import AuditAnchor, AuditEntry
from callcenter.store import Store

KEY = b"k" * 32


async def _fill(audit: AuditLog, rows: int) -> None:
    for n in range(rows):
        await audit.record(
            actor="sup.meena", action="identity.reveal", subject=f"identity:{n}",
            details={"granted": n % 2 == 0, "purpose": "police"},
        )


async def test_appends_chain_and_verify(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store, anchor_key=KEY)
    await _fill(audit, 5)
    verdict = await audit.verify()
    assert verdict.ok, verdict.problems
    assert (verdict.checked, verdict.head_seq, verdict.anchor_signed) == (5, 5, True)
    async with migrated_store.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))


async def test_concurrent_appends_never_fork_the_chain(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store)
    await asyncio.gather(
        *(
            audit.record(actor=f"agent{n}", action="recording.playback", subject=f"call:{n}")
            for n in range(20)
        )
    )
    verdict = await audit.verify()
    assert verdict.ok, verdict.problems
    assert verdict.head_seq == 20


async def test_an_edited_row_is_found_by_its_seq(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store)
    await _fill(audit, 5)
    async with migrated_store.transaction() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 3).values(actor="someone.else")
        )
    verdict = await audit.verify()
    assert not verdict.ok
    assert [(p.seq, p.code) for p in verdict.problems] == [(3, "altered")]


async def test_a_rewritten_row_with_a_fresh_hash_breaks_the_next_link(
    migrated_store: Store,
) -> None:
    audit = AuditLog(migrated_store)
    await _fill(audit, 5)
    async with migrated_store.transaction() as session:
        row = await session.get(AuditEntry, 3)
        assert row is not None
        row.details = '{"granted":false}'
        row.hash = row_hash(
            row.seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash
        )
    verdict = await audit.verify()
    assert [(p.seq, p.code) for p in verdict.problems] == [(4, "broken_link")]


async def test_a_deleted_middle_row_is_named(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store)
    await _fill(audit, 5)
    async with migrated_store.transaction() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    verdict = await audit.verify()
    assert [(p.seq, p.code) for p in verdict.problems] == [(2, "missing")]


async def test_deleted_last_rows_are_found_through_the_anchor(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store)
    await _fill(audit, 5)
    async with migrated_store.transaction() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    verdict = await audit.verify()
    assert [(p.seq, p.code) for p in verdict.problems] == [(4, "truncated")]


async def test_a_rewound_anchor_is_caught_by_its_signature(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store, anchor_key=KEY)
    await _fill(audit, 5)
    async with migrated_store.transaction() as session:
        last = await session.get(AuditEntry, 4)
        assert last is not None
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
        # A DB admin moves the anchor back too; without the key she cannot sign it.
        await session.execute(update(AuditAnchor).values(seq=4, hash=last.hash))
    assert (await AuditLog(migrated_store).verify()).ok  # unsigned check cannot tell
    verdict = await audit.verify()
    assert [(p.seq, p.code) for p in verdict.problems] == [(4, "anchor_forged")]
    assert verdict.anchor_signed is False


async def test_details_never_hold_a_phone_number(migrated_store: Store) -> None:
    audit = AuditLog(migrated_store)
    entry = await audit.record(
        actor="sup.meena", action="identity.reveal", subject="identity:7",
        details={
            "override_reason": "she said call her brother on 98765 43210 now",
            "reference": "2026 0000 011",
            "token": "T-4Q2M8X1Z",
        },
    )
    text = entry.details["override_reason"]
    assert "98765" not in text and "[number]" in text
    assert entry.details["reference"] == "2026 0000 011"
    assert entry.details["token"] == "T-4Q2M8X1Z"
    with pytest.raises(AuditError):
        await audit.record(
            actor="x", action="identity.reveal", subject="s", details={"n": 9876543210}
        )
    with pytest.raises(AuditError):
        await audit.record(actor="x", action="identity.reveal", subject="s", details={"f": 1.5})
    assert (await audit.verify()).head_seq == 1  # refused details wrote nothing


def test_scrub_text_keeps_references_and_token_codes() -> None:
    assert scrub_text("ref 20260000011, token H-00000000") == "ref 20260000011, token H-00000000"
    assert "43210" not in scrub_text("+91-98765-43210 called about 2026 0000 011")
    assert "2026 0000 011" in scrub_text("+91-98765-43210 called about 2026 0000 011")


def test_anchor_key_from_env() -> None:
    assert anchor_key_from_env({}) is None
    key = anchor_key_from_env({ENV_ANCHOR_KEY: base64.b64encode(KEY).decode()})
    assert key == KEY
    with pytest.raises(AuditError):
        anchor_key_from_env({ENV_ANCHOR_KEY: base64.b64encode(b"short").decode()})


def _verify_cli(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cases_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", "--database", url, "verify"])
    code = args.handler(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_audit_verify_exits_1_naming_the_seq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_ANCHOR_KEY, raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.sqlite3'}"

    async def prepare(tamper: bool) -> None:
        store = Store.from_url(url)
        try:
            if not tamper:
                await store.migrate()
                await _fill(AuditLog(store), 4)
            else:
                async with store.transaction() as session:
                    await session.execute(
                        update(AuditEntry).where(AuditEntry.seq == 2).values(subject="other")
                    )
        finally:
            await store.close()

    asyncio.run(prepare(tamper=False))
    code, out, _err = _verify_cli(url, capsys)
    assert code == 0 and "4 rows" in out
    asyncio.run(prepare(tamper=True))
    code, _out, err = _verify_cli(url, capsys)
    assert code == 1 and "seq 2" in err
