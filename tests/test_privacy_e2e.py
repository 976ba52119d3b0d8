"""Issue 6's promise, end to end: 50+ simulated calls with cases, and no caller's or
harasser's number anywhere the product writes or sends.

The whole product runs (simulated PBX with the shipped files, CallCenter with a
Redis bus, the web API); callers go through the IVR, agents answer, cases are
opened with harassers named, recordings are ingested. Then non-digits are
stripped from every column of every table, every log line, every API response,
every message on the Redis bus channel, every Redis value and every file name
under the recording store, and none of the numbers may appear.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy import MetaData, select

from callcenter.app import CallCenter, serve_web
from callcenter.cases.service import WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import backend_settings, helpline, until

CALLS = 52
SCRIPTS = [["", "1", "2", "1"], ["1"], ["", "2", "4", "2"], ["", "1", "3", "1"], []]
AGENTS = [SimAgent(f"agent{i}", f"Agent {i}", answer_after=1.0) for i in range(1, 5)]
PASSWORD = "agent-password-1090"


def digits(value: object) -> str:
    return re.sub(r"\D", "", str(value))


def leaks(value: object, numbers: set[str]) -> list[str]:
    found = digits(value)
    return [n for n in numbers if n in found]


def mobile(rng: random.Random) -> str:
    return rng.choice("789") + "".join(str(rng.randrange(10)) for _ in range(9))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.timeout(300)
async def test_no_number_in_rows_logs_api_bus_redis_or_recording_names(
    migrated_store: Store, redis_url: str, redis_prefix: str,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(1090)
    callers = {mobile(rng) for _ in range(CALLS)}
    harassers = {mobile(rng) for _ in range(20)}
    numbers = callers | harassers
    bus_messages: list[str] = []
    api_bodies: list[str] = []

    async with helpline(migrated_store, AGENTS) as line:
        settings = backend_settings(line, redis_url, redis_prefix)
        center = CallCenter(settings, vault=Vault(Keyring.from_masters({"k1": generate_key()},
                                                                        "k1")))
        raw = Redis.from_url(redis_url)
        pubsub = raw.pubsub()
        await pubsub.subscribe(f"{redis_prefix}bus")

        async def capture() -> None:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    bus_messages.append(message["data"].decode("utf-8", "replace"))

        capturing = asyncio.create_task(capture())
        port = free_port()
        runner = None
        try:
            await center.start()
            await until(lambda: center.nodes["main"].owning, within=10)
            runtime = center.nodes["main"]
            await runtime.node.synced.wait()
            for agent in AGENTS:
                await center.accounts.add(
                    agent.endpoint, display_name=agent.name, role="agent",
                    endpoint=f"PJSIP/{agent.endpoint}", password=PASSWORD,
                    skills=("hi", "en", "counselling", "emergency"),
                )
            await center.accounts.add("sunita", display_name="Sunita", role="supervisor",
                                      endpoint="PJSIP/agent9", password=PASSWORD)
            runner = await serve_web(center, host="127.0.0.1", port=port, cookie_secure=False)
            base = f"http://127.0.0.1:{port}"
            sessions: dict[str, tuple[aiohttp.ClientSession, str]] = {}

            async def call_api(web: aiohttp.ClientSession, method: str, path: str,
                               **kwargs: Any) -> tuple[int, str]:
                async with web.request(method, f"{base}{path}", **kwargs) as response:
                    text = await response.text()
                    api_bodies.append(text)
                    return response.status, text

            for agent in AGENTS:
                web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                status, body = await call_api(
                    web, "POST", "/api/session",
                    json={"username": agent.endpoint, "password": PASSWORD},
                )
                assert status == 200, body
                csrf = json.loads(body)["csrf_token"]
                sessions[agent.endpoint] = (web, csrf)
                status, body = await call_api(
                    web, "POST", "/api/me/login-queues", headers={"X-CSRF-Token": csrf}
                )
                assert status == 200, body

            async def agents_finish_wrapups() -> None:
                # Like agents at their consoles: the form goes in when wrap-up starts.
                while True:
                    for web, csrf in sessions.values():
                        status, body = await call_api(web, "GET", "/api/me")
                        me = (json.loads(body).get("agent") or {}) if status == 200 else {}
                        if me.get("state") == "wrap_up":
                            await call_api(
                                web, "POST", "/api/me/wrapup", headers={"X-CSRF-Token": csrf},
                                json={"category": "harassment_online",
                                      "notes": "Advised on blocking and reporting."},
                            )
                        elif me.get("state") == "paused" and me.get("reason") == "recovery":
                            # After a danger or distress call: she resumes when ready.
                            await call_api(web, "POST", "/api/me/unpause",
                                           headers={"X-CSRF-Token": csrf})
                    await asyncio.sleep(0.2)

            wrapping = asyncio.create_task(agents_finish_wrapups())
            try:
                await until(lambda: line.sim.core.db_get("wpl", "heartbeat") is not None)
                placed = []
                for index, number in enumerate(sorted(callers)):
                    placed.append(line.call(SCRIPTS[index % len(SCRIPTS)], number=number,
                                            talk_time=3))
                    await asyncio.sleep(0.05)
                await until(lambda: all(c.done.is_set() for c in placed), within=220)
                await until(lambda: runtime.node.model.calls == {}, within=30)
                await runtime.node.drain()
                await asyncio.sleep(1.0)  # the last wrap-ups
            finally:
                wrapping.cancel()

            # Harassers named on the cases the wrap-ups opened; a recording per call.
            async with migrated_store.session() as session:
                records = (await session.scalars(select(CallRecord))).all()
            answered = [r for r in records if r.outcome == "answered"]
            assert len(records) >= CALLS and len(answered) >= CALLS * 3 // 4
            harasser_list = sorted(harassers)
            references: list[str] = []
            for index, record in enumerate(answered):
                agent = (record.agent_interface or "PJSIP/agent1").split("/")[-1]
                case = await center.cases.create_from_wrapup(
                    record, WrapUpForm(category="cyber-harassment"), agent
                )
                harasser = harasser_list[index % len(harasser_list)]
                await center.cases.name_harasser(case.summary.reference, harasser, agent)
                references.append(case.summary.reference)
                # An agent types the number into a note: it must not be kept as typed.
                await center.cases.add_note(
                    case.summary.reference, f"Harasser {harasser} called her again", agent
                )
                audio = b"RIFF" + bytes(rng.randrange(256) for _ in range(2000))
                await center.recordings.ingest(
                    record.node, record.linkedid, "wav", chunks_of(audio),
                    content_sha256=hashlib.sha256(audio).hexdigest(),
                )
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
                # The API, as a supervisor and as an agent.
                status, body = await call_api(
                    web, "POST", "/api/session",
                    json={"username": "sunita", "password": PASSWORD},
                )
                assert status == 200
                for path in ("/api/queues", "/api/agents", "/api/abandoned", "/api/me"):
                    await call_api(web, "GET", path)
                for record in records:
                    await call_api(web, "GET", f"/api/calls/{record.node}/{record.linkedid}")
                # The case API: search, the supervisors' CSV export, every case file.
                status, _ = await call_api(web, "GET", "/api/cases?limit=200")
                assert status == 200
                status, _ = await call_api(web, "GET", "/api/cases/export.csv")
                assert status == 200
                for reference in references:
                    status, _ = await call_api(web, "GET", f"/api/cases/{reference}")
                    assert status == 200
            for web, _csrf in sessions.values():
                await call_api(web, "GET", "/api/me/calls")
                await web.close()
            await asyncio.sleep(0.5)  # let the last bus messages arrive

            # Redis values under this instance's prefix.
            redis_values: list[str] = []
            async for key in raw.scan_iter(match=f"{redis_prefix}*"):
                kind = (await raw.type(key)).decode()
                if kind == "string":
                    redis_values.append(str(await raw.get(key)))
                elif kind == "hash":
                    redis_values.append(str(await raw.hgetall(key)))
                elif kind == "list":
                    redis_values.append(str(await raw.lrange(key, 0, -1)))
                elif kind == "set":
                    redis_values.append(str(await raw.smembers(key)))
                elif kind == "zset":
                    redis_values.append(str(await raw.zrange(key, 0, -1, withscores=True)))
                redis_values.append(key.decode())
        finally:
            capturing.cancel()
            await pubsub.aclose()
            await raw.aclose()
            if runner is not None:
                await runner.cleanup()
            await center.stop()

    # 1. Every column of every table (text, JSON and numeric).
    metadata = MetaData()
    rows = 0
    async with migrated_store.engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in (await connection.execute(select(table))).all():
                rows += 1
                for value in row:
                    assert not leaks(value, numbers), table.name
    assert rows > CALLS * 2
    # 2. Every log line.
    for record in caplog.records:
        assert not leaks(record.getMessage(), numbers), record.name
    # 3. Every API response.
    assert len(api_bodies) > CALLS
    for body in api_bodies:
        assert not leaks(body, numbers)
    # 4. Every message on the bus channel, and every Redis key and value.
    assert bus_messages, "the scenario must have used the Redis bus"
    for message in bus_messages:
        assert not leaks(message, numbers)
    for value in redis_values:
        assert not leaks(value, numbers)
    # 5. Every file name under the recording store.
    names = [p.name for p in Path(settings.recordings.directory).rglob("*")]  # noqa: ASYNC240
    assert len(names) >= len(answered)
    for name in names:
        assert not leaks(name, numbers)
