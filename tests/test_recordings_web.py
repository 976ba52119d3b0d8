"""Recordings over HTTP and from the PBX: the ingest endpoint and its token, playback RBAC
with every attempt audited, the shipped hook script, and the dialplan that names files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from callcenter.bus import InProcessBus
from callcenter.cases.audit import AuditLog
from callcenter.cases.models import AuditEntry
from callcenter.cases.recordings import IngestTokens, RecordingStore
from callcenter.cases.vault import Keyring, generate_key
from callcenter.pbx import asterisk_conf
from callcenter.store import Store
from callcenter.web.app import make_app
from callcenter.web.deps import StoreCallLookup, WebDeps
from tests.support.web import (
    MemoryAgentDirectory,
    WebWorld,
    add_call,
    add_staff,
    cheap_accounts,
    sign_in,
    web_options,
)

ROOT = Path(__file__).resolve().parent.parent
DIALPLANS = ROOT / "dialplans"
HOOK = DIALPLANS / "wpl-recording-hook.sh"
NODE = "up-east"
LINKEDID = "1732261000.10"
TOKEN = "pbx-up-east-ingest-token-0123456789abcdef"
# Larger than the web app's 64 KiB body limit: uploads are streamed, not read whole.
AUDIO = b"RIFF" + os.urandom(200_000)


@pytest.fixture
async def world(migrated_store: Store, tmp_path: Path) -> AsyncIterator[WebWorld]:
    accounts = cheap_accounts(migrated_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    await add_call(migrated_store, NODE, LINKEDID, "PJSIP/agent1001")
    keyring = Keyring.from_masters({"k1": generate_key()}, "k1")
    recordings = RecordingStore(
        migrated_store, tmp_path / "recordings", keyring, AuditLog(migrated_store),
        ingest_tokens=IngestTokens({NODE: TOKEN}), retention=timedelta(days=90),
    )
    bus = InProcessBus()
    await bus.__aenter__()
    deps = WebDeps(
        accounts=accounts, agents=directory, calls=StoreCallLookup(migrated_store), bus=bus,
        store=migrated_store, options=web_options(), registry=CollectorRegistry(),
        recordings=recordings,
    )
    app = make_app(deps)  # adds the recordings routes: deps.recordings is set
    client = TestClient(TestServer(app, host="127.0.0.1"),
                        cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        yield WebWorld(client=client, deps=deps, directory=directory)
    finally:
        await client.close()
        await bus.__aexit__(None, None, None)


def _headers(data: bytes, token: str = TOKEN) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "X-Recording-Format": "wav",
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        "Content-Type": "application/octet-stream",
    }


async def _upload(world: WebWorld, data: bytes = AUDIO, token: str = TOKEN,
                  node: str = NODE) -> tuple[int, dict[str, object]]:
    response = await world.client.put(
        f"/api/recordings/ingest/{node}/{LINKEDID}", data=data, headers=_headers(data, token)
    )
    return response.status, await response.json()


async def _playbacks(store: Store) -> list[dict[str, object]]:
    async with store.session() as session:
        rows = (await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "recording.playback")
            .order_by(AuditEntry.seq))).all()
    return [{"actor": r.actor, "subject": r.subject, **json.loads(r.details)} for r in rows]


async def test_ingest_needs_the_nodes_token_and_is_idempotent(world: WebWorld) -> None:
    status, body = await _upload(world, token="x" * 40)
    assert (status, body["error"]["code"]) == (401, "ingest_unauthorized")  # type: ignore[index]
    status, _ = await _upload(world, node="up-west")  # right token, another node
    assert status == 401

    status, first = await _upload(world)
    assert status == 201 and first["created"] is True
    status, again = await _upload(world)
    assert status == 200 and again == {"id": first["id"], "created": False}

    data = AUDIO + b"x"
    response = await world.client.put(
        f"/api/recordings/ingest/{NODE}/{LINKEDID}", data=data[:-5], headers=_headers(data)
    )
    assert response.status == 422


async def test_playback_only_for_her_agent_and_supervisors_all_audited(
    world: WebWorld, migrated_store: Store
) -> None:
    status, body = await _upload(world)
    assert status == 201
    url = f"/api/recordings/{body['id']}"
    client = world.client

    await sign_in(client, "asha")  # answered the call
    response = await client.get(url)
    assert response.status == 200
    assert response.headers["Content-Type"] == "audio/wav"
    assert "no-store" in response.headers["Cache-Control"]
    assert await response.read() == AUDIO
    listed = await (await client.get(f"/api/calls/{NODE}/{LINKEDID}/recordings")).json()
    assert [r["id"] for r in listed["recordings"]] == [body["id"]]

    await sign_in(client, "bela")  # another agent
    response = await client.get(url)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    listed = await (await client.get(f"/api/calls/{NODE}/{LINKEDID}/recordings")).json()
    assert listed["recordings"] == []

    await sign_in(client, "deepa")  # supervisor
    response = await client.get(url)
    assert response.status == 200 and await response.read() == AUDIO

    assert (await client.get("/api/recordings/" + "q" * 26)).status == 404

    audited = await _playbacks(migrated_store)
    assert [(a["actor"], a["granted"], a["role"]) for a in audited] == [
        ("asha", True, "agent"), ("bela", False, "agent"), ("deepa", True, "supervisor"),
    ]
    assert all(str(a["subject"]).startswith("call:") for a in audited)


async def test_playback_needs_a_session(world: WebWorld) -> None:
    status, body = await _upload(world)
    assert (await world.client.get(f"/api/recordings/{body['id']}")).status == 401


# --------------------------------------------------------------------------- the PBX side


def test_hook_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(HOOK)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", str(HOOK)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


@pytest.mark.skipif(not all(shutil.which(t) for t in ("curl", "flock", "sha256sum")),
                    reason="the hook needs curl, flock and sha256sum")
async def test_hook_spools_uploads_and_deletes_only_what_arrived(
    world: WebWorld, tmp_path: Path, migrated_store: Store
) -> None:
    monitor, spool = tmp_path / "monitor", tmp_path / "spool"
    monitor.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    conf = tmp_path / "hook.conf"
    server = world.client.server
    conf.write_text(
        f"WPL_NODE={NODE}\n"
        f"WPL_INGEST_URL=http://{server.host}:{server.port}/api/recordings/ingest\n"
        f"WPL_TOKEN_FILE={token_file}\nWPL_MONITOR_DIR={monitor}\nWPL_SPOOL_DIR={spool}\n"
    )
    env = {**os.environ, "WPL_RECORDING_HOOK_CONF": str(conf)}
    name = f"wpl-{LINKEDID}"
    (monitor / f"{name}.wav").write_bytes(AUDIO)

    async def run(*args: str) -> int:
        process = await asyncio.create_subprocess_exec(
            "bash", str(HOOK), *args, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        assert TOKEN not in err.decode()
        return process.returncode or 0

    # A refused upload (wrong token) stays in the spool for the next flush.
    token_file.write_text("w" * 40)
    assert await run("--flush") == 0  # nothing spooled yet
    (spool).mkdir()
    os.replace(monitor / f"{name}.wav", spool / f"{LINKEDID}+{name}.wav")
    assert await run("--flush") == 1
    assert (spool / f"{LINKEDID}+{name}.wav").exists()

    token_file.write_text(TOKEN + "\n")
    os.replace(spool / f"{LINKEDID}+{name}.wav", monitor / f"{name}.wav")
    # As MixMonitor runs it: spool, then a detached flush; then the timer's flush.
    assert await run(name, LINKEDID) == 0
    assert not (monitor / f"{name}.wav").exists()
    for _ in range(100):
        if not any(spool.glob("*+*")):
            break
        await asyncio.sleep(0.05)
        await run("--flush")
    assert not any(spool.glob("*+*")), "the uploaded file must leave the PBX"

    recordings = world.deps.recordings
    (info,) = await recordings.for_call(NODE, LINKEDID)
    assert info.size_bytes == len(AUDIO)
    assert b"".join([c async for c in recordings.plaintext(info)]) == AUDIO


# --------------------------------------------------------------------------- dialplan


def _plan() -> asterisk_conf.Dialplan:
    return asterisk_conf.parse_dialplan(asterisk_conf.load(DIALPLANS / "extensions_1090.conf"))


@pytest.mark.parametrize(
    ("context", "exten"),
    [("wpl-inbound", "1090"), ("wpl-fallback", "s"), ("wpl-callback", "s")],
)
def test_every_queue_entry_names_the_recording_by_call_id_first(context: str, exten: str) -> None:
    extension = _plan().extension(context, exten)
    assert extension is not None
    names = [i for i, s in enumerate(extension.steps)
             if s.app == "Set" and s.args.startswith("MONITOR_FILENAME=")]
    hooks = [i for i, s in enumerate(extension.steps)
             if s.app == "Set" and s.args.startswith("MONITOR_EXEC=")]
    branches = [i for i, s in enumerate(extension.steps)
                if s.app in ("Goto", "GotoIf", "Queue")]
    assert names and hooks, f"{context}: no MONITOR_FILENAME/MONITOR_EXEC"
    # Before the first branch or Queue, so every path to a queue has them.
    assert max(names[0], hooks[0]) < branches[0], context
    filename = extension.steps[names[0]].args.split("=", 1)[1]
    assert filename == "wpl-${UNIQUEID}", "an id, never anything derived from her"
    hook = extension.steps[hooks[0]].args.split("=", 1)[1]
    # Escaped ^{...}: app_queue evaluates them when the recording starts (the simulator
    # never runs MONITOR_EXEC), so the hook learns the call's Linkedid.
    assert hook == (
        "/usr/local/sbin/wpl-recording-hook ^{MONITOR_FILENAME} ^{CHANNEL(linkedid)}"
    )
    assert "CALLERID" not in filename + hook


def test_every_queue_records_with_mixmonitor() -> None:
    conf = asterisk_conf.load(DIALPLANS / "queues_1090.conf")
    assert conf.resolved_get("general", "monitor-type") == "MixMonitor"
    queues = [s.name for s in conf.sections if not s.is_template and s.name != "general"]
    assert queues
    for queue in queues:
        assert conf.resolved_get(queue, "monitor-format") == "wav", queue


def test_readme_documents_the_hook_path() -> None:
    readme = (DIALPLANS / "README.md").read_text()
    assert "## Recordings" in readme
    assert re.search(r"/usr/local/sbin/wpl-recording-hook", readme)
