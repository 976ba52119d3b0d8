"""Two backend instances behind a load balancer, on one Redis and one PBX.

An agent's console is served by the instance that does NOT own the PBX: her
commands still reach the PBX (through the owner) and her screen-pops still reach
her console; when the owner dies the other takes over and her console, on the
survivor, keeps receiving screen-pops.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from callcenter.app import CallCenter, serve_web
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import backend_settings, helpline, until

PASSWORD = "asha-password-1090"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def pops(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(message.data)
            if data.get("type") == "pop":
                into.append(data["pop"])


@pytest.mark.timeout(120)
async def test_console_on_the_non_owner_commands_and_receives_pops_across_a_takeover(
    migrated_store: Store, redis_url: str, redis_prefix: str
) -> None:
    agents = [SimAgent("agent1", "Asha", answer_after=2)]
    async with helpline(migrated_store, agents) as line:
        settings = backend_settings(line, redis_url, redis_prefix)
        vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        owner = CallCenter(settings, vault=vault, instance_id="owner")
        other = CallCenter(settings, vault=vault, instance_id="other")
        await owner.start()
        await until(lambda: owner.nodes["main"].owning, within=10)
        await other.start()
        await owner.accounts.add("asha", display_name="Asha", role="agent",
                                 endpoint="PJSIP/agent1", password=PASSWORD, skills=("hi",))
        ports = free_port(), free_port()
        runners = [
            await serve_web(owner, host="127.0.0.1", port=ports[0], cookie_secure=False),
            await serve_web(other, host="127.0.0.1", port=ports[1], cookie_secure=False),
        ]
        base = f"http://127.0.0.1:{ports[1]}"  # her console is on the NON-owner
        received: list[dict[str, Any]] = []
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                signed = await http.post(f"{base}/api/session",
                                         json={"username": "asha", "password": PASSWORD})
                assert signed.status == 200
                csrf = (await signed.json())["csrf_token"]
                ws = await http.ws_connect(f"{base}/ws/console", origin=base)
                reader = asyncio.create_task(pops(ws, received))
                go = await http.post(f"{base}/api/me/login-queues",
                                     headers={"X-CSRF-Token": csrf})
                assert go.status == 200, await go.text()
                # The owner put her in her queues on the PBX.
                status = await owner.nodes["main"].node.ops.queue_status("wpl-general-hi")
                assert any(f.get("Location") == "PJSIP/agent1" for f in status)
                await until(lambda: line.sim.core.db_get("wpl", "heartbeat") is not None)

                first = line.call(["", "1", "2", "1"], talk_time=2)
                await until(lambda: any(p["phase"] == "ringing" for p in received), within=30)
                assert received[0]["card"]["caller"].startswith("T-")
                await until(lambda: first.done.is_set(), within=30)
                card = received[-1]["card"]  # the console sends the call it last popped
                wrap = await http.post(f"{base}/api/me/wrapup", headers={"X-CSRF-Token": csrf},
                                       json={"category": "harassment_online", "notes": "",
                                             "node": card["node"],
                                             "linkedid": card["linkedid"]})
                assert wrap.status == 200, await wrap.text()
                # The non-owner opened her case on the owner's record of the call.
                record = await other.recorder.get(card["node"], card["linkedid"])
                assert record is not None
                case = await other.cases._case_of_call(record.id)
                assert case is not None and case.summary.category == "cyber-harassment"

                # The owner dies without a word; the console's instance takes over.
                runtime = owner.nodes["main"]
                assert runtime.keeper is not None and runtime.keeper._task is not None
                runtime.keeper._task.cancel()
                await runtime.ivr.stop(say_goodbye=False)
                await runtime.client.close()
                await until(lambda: other.nodes["main"].owning, within=15)
                await until(lambda: other.nodes["main"].node.resyncs >= 1, within=10)
                clock = line.sim.clock
                await until(lambda: int(line.sim.core.db_get("wpl", "heartbeat") or 0)
                            >= clock.now() - 5, within=10)
                before = len(received)
                second = line.call(["", "1", "2", "1"], talk_time=2)
                await until(lambda: any(p["phase"] == "ringing" for p in received[before:]),
                            within=40)
                await until(lambda: second.done.is_set(), within=30)
                assert {first.outcome.connected_to, second.outcome.connected_to} == {
                    "PJSIP/agent1"
                }
                reader.cancel()
                await ws.close()
        finally:
            for runner in runners:
                await runner.cleanup()
            await other.stop()
            await owner.stop()
