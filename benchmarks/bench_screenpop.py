"""Screen-pop latency and backend CPU under load: issue 5's benchmark.

    .venv/bin/python benchmarks/bench_screenpop.py [--agents 200] [--concurrent 500]
                                                    [--seconds 60]

Two processes on this machine:

* the *load* process runs the simulated PBX (shipped dialplan, queues, manager
  filters), simulated softphones for every agent, synthetic callers arriving so
  that about ``--concurrent`` calls are up at once (in the IVR, queued or
  talking), and every agent's console: an HTTP sign-in, "go available", and her
  /ws/console WebSocket, which also submits wrap-up when her view says so;
* the *backend* process runs the product: CallCenter (AMI client, PBX model,
  IVR, agents service, queue statistics) and the web app, on SQLite.

Latency: from the simulator emitting AgentConnect to the "connected" screen-pop
for that call arriving on the rung agent's WebSocket. Both instants are taken
with time.monotonic() in the load process, so no clock is compared across
processes; the number includes AMI encoding, the backend's parsing, model,
agents service, web fan-out, WebSocket framing and the client's decoding.
CPU: the backend process's own CPU seconds (time.process_time) over the
measured window, divided by the AMI events its client received in that window:
the simulator and the consoles are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSWORD = "bench-agent-1090"
SCRIPTS = [["", "1", "2", "1"], ["", "1", "1", "2"], ["", "2", "2", "1"], ["", "2", "1", "2"]]


def agent_names(count: int) -> list[str]:
    return [f"a{i:03d}" for i in range(count)]


# -- load process -----------------------------------------------------------------------


def load_main(conn: Any, agents: int, concurrent: int, seconds: float) -> None:
    asyncio.run(_load(conn, agents, concurrent, seconds))


async def _load(conn: Any, agents: int, concurrent: int, seconds: float) -> None:
    import aiohttp

    from callcenter.sim.actors import Caller, CallerScript
    from callcenter.sim.clock import Clock
    from callcenter.sim.helpline import CARRIER, SimAgent, helpline_config
    from callcenter.sim.server import SimPBX

    names = agent_names(agents)
    config = helpline_config(
        [SimAgent(n, n, answer_after=2.0) for n in names], secret=secrets.token_urlsafe(12)
    )
    sim = SimPBX(config, clock=Clock(1.0))
    await sim.start(port=0)
    emitted: dict[str, float] = {}
    sim.core.listeners.append(
        lambda name, pairs: emitted.setdefault(dict(pairs)["Linkedid"], time.monotonic())
        if name == "AgentConnect" else None
    )
    conn.send(("pbx", sim.port, config.users[0].username, config.users[0].secret))
    # Wait for the backend without blocking this loop: the simulator must keep serving.
    base = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    latencies: list[float] = []
    window = {"open": False}
    sessions: list[aiohttp.ClientSession] = []

    async def console(name: str) -> None:
        web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(web)
        async with web.post(f"{base}/api/session",
                            json={"username": name, "password": PASSWORD}) as response:
            csrf = (await response.json())["csrf_token"]
        ws = await web.ws_connect(f"{base}/ws/console", origin=base, heartbeat=None)
        async with web.post(f"{base}/api/me/login-queues", headers={"X-CSRF-Token": csrf}):
            pass
        wrapping = False
        async for message in ws:
            data = json.loads(message.data)
            if data.get("type") == "pop" and data["pop"]["phase"] == "connected":
                linkedid = data["pop"]["card"]["linkedid"]
                sent = emitted.get(linkedid)
                if sent is not None and window["open"]:
                    latencies.append(time.monotonic() - sent)
            elif data.get("type") == "agent":
                state = (data.get("agent") or {}).get("state")
                if state == "wrap_up" and not wrapping:
                    wrapping = True
                    async with web.post(f"{base}/api/me/wrapup",
                                        headers={"X-CSRF-Token": csrf},
                                        json={"category": "harassment_online", "notes": ""}):
                        pass
                elif state != "wrap_up":
                    wrapping = False

    consoles = [asyncio.create_task(console(n)) for n in names]
    await asyncio.sleep(5)
    rng = random.Random(1090)
    # Each call: ~20 s of IVR, a queue wait, 15-30 s of talk: arrivals keep
    # about `concurrent` calls up once the warm-up is over.
    mean_duration = 60.0
    rate = concurrent / mean_duration
    live: list[Caller] = []

    async def arrivals(until: float) -> None:
        while time.monotonic() < until:
            number = rng.choice("789") + "".join(str(rng.randrange(10)) for _ in range(9))
            caller = Caller(sim.core, CallerScript(
                exten="1090", endpoint=CARRIER, caller_num=number, caller_name="",
                prompt_answers=rng.choice(SCRIPTS), talk_time=rng.uniform(15, 30),
            ), rng)
            caller.start()
            live.append(caller)
            await asyncio.sleep(rng.expovariate(rate))

    warmup = 60.0
    end = time.monotonic() + warmup + seconds
    feeding = asyncio.create_task(arrivals(end))
    await asyncio.sleep(warmup)
    up = sum(1 for c in live if not c.done.is_set())
    window["open"] = True
    conn.send(("window", "open", up))
    await asyncio.sleep(seconds)
    window["open"] = False
    up_end = sum(1 for c in live if not c.done.is_set())
    conn.send(("window", "closed", up_end))
    feeding.cancel()
    conn.send(("latencies", latencies))
    for task in consoles:
        task.cancel()
    for web in sessions:
        await web.close()
    await sim.stop()


# -- backend process ----------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(data_dir: Path, port: int, username: str, secret: str) -> Any:
    from pydantic import SecretStr

    from callcenter.config import (
        DatabaseSettings,
        IvrSettings,
        PbxNode,
        RecordingSettings,
        Secrets,
        Settings,
        secret_env_name,
    )

    root = Path(__file__).resolve().parent.parent
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{data_dir / 'bench.sqlite3'}"),
        pbx=[PbxNode(name="main", host="127.0.0.1", port=port, username=username, auth="md5")],
        ivr=IvrSettings(menu_file=root / "config" / "ivr.toml", heartbeat_interval=2.0),
        recordings=RecordingSettings(directory=data_dir / "recordings"),
        secrets=Secrets(ami={secret_env_name("main"): SecretStr(secret)}),
    )


async def backend(agents: int, concurrent: int, seconds: float) -> dict[str, Any]:
    from callcenter.agents.accounts import AccountService
    from callcenter.app import CallCenter, serve_web
    from callcenter.demo import demo_vault
    from callcenter.store import Store

    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(
        target=load_main, args=(child, agents, concurrent, seconds), daemon=True
    )
    process.start()
    _, port, username, secret = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp), port, username, secret)
        store = Store.from_url(settings.database.url)
        await store.migrate()
        accounts = AccountService(store)
        for name in agent_names(agents):
            await accounts.add(name, display_name=name, role="agent", endpoint=f"PJSIP/{name}",
                               password=PASSWORD, skills=("hi", "en"))
        await store.close()
        center = CallCenter(settings, vault=demo_vault())
        await center.start()
        web_port = free_port()
        runner = await serve_web(center, host="127.0.0.1", port=web_port, cookie_secure=False)
        parent.send(f"http://127.0.0.1:{web_port}")
        client = center.nodes["main"].client
        loop = asyncio.get_running_loop()
        message = await loop.run_in_executor(None, parent.recv)
        cpu0, events0 = time.process_time(), client.stats.events_received
        up_start = message[2]
        message = await loop.run_in_executor(None, parent.recv)
        cpu1, events1 = time.process_time(), client.stats.events_received
        up_end = message[2]
        _, latencies = await loop.run_in_executor(None, parent.recv)
        await runner.cleanup()
        await center.stop()
    process.join(timeout=30)
    events = events1 - events0
    return {
        "latencies": latencies,
        "events": events,
        "cpu": cpu1 - cpu0,
        "concurrent": (up_start, up_end),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(backend(args.agents, args.concurrent, args.seconds))

    from rich.console import Console
    from rich.table import Table

    latencies = sorted(result["latencies"])
    table = Table(title=f"Screen-pop latency and backend CPU: {args.agents} agents, "
                        f"~{args.concurrent} concurrent calls, {args.seconds:.0f} s window")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("calls up at window start / end", "{} / {}".format(*result["concurrent"]))
    table.add_row("screen-pops measured", str(len(latencies)))
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(0.99 * (len(latencies) - 1) + 0.5))]
        table.add_row("AgentConnect -> pop, median (ms)",
                      f"{statistics.median(latencies) * 1000:.1f}")
        table.add_row("AgentConnect -> pop, p99 (ms)", f"{p99 * 1000:.1f}")
        table.add_row("AgentConnect -> pop, max (ms)", f"{latencies[-1] * 1000:.1f}")
    table.add_row("AMI events received by the backend", str(result["events"]))
    table.add_row("backend CPU seconds", f"{result['cpu']:.2f}")
    if result["events"]:
        table.add_row("backend CPU s per 1,000 AMI events",
                      f"{result['cpu'] / result['events'] * 1000:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
