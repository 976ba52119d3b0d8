"""The load side of bench_console.py: the simulated PBX, and the agents' consoles.

Each runs as its own process, started by bench_console.py, so none of its CPU is
charged to the backend it measures:

    python benchmarks/console_load.py pbx --agents 200 --seed 1090
    python benchmarks/console_load.py consoles --base http://127.0.0.1:PORT --agents 200

They talk to the parent in JSON lines: commands on stdin, reports on stdout (logs go
to stderr). Every instant they report is ``time.monotonic()``, which on Linux is
CLOCK_MONOTONIC, one clock for every process on the machine, so the parent can
subtract an instant taken here from one taken in the other load process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Every synthetic agent's password (accounts live in a throwaway database).
PASSWORD = "bench-console-1090"

#: IVR answers (danger menu, language, main menu, callback consent) that lead to the
#: general queues in Hindi and English, which every benchmark agent serves.
CALLER_SCRIPTS: list[list[str]] = [
    ["", "1", "1", "2"],  # Hindi, phone harassment
    ["", "1", "2", "1"],  # Hindi, internet harassment, callback yes
    ["", "1", "3", "2"],  # Hindi, stalking
    ["", "1", "5", "1"],  # Hindi, domestic
    ["", "2", "1", "2"],  # English, phone harassment
    ["", "2", "2", "1"],  # English, internet harassment
]


def agent_names(count: int) -> list[str]:
    return [f"agent{i:03d}" for i in range(count)]


def source_address(index: int) -> str:
    """A loopback address of her own for agent ``index``.

    The backend limits sign-in attempts per client address (30 per 5 minutes), as it
    should; 200 agents at 200 desks do not share one address, so neither do these.
    Linux answers on all of 127.0.0.0/8.
    """
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_commands(handle: Callable[[dict[str, Any]], Awaitable[bool]]) -> None:
    """Run ``handle`` on each command line until it returns False or the parent goes."""
    reader = await commands()
    while line := await reader.readline():
        if not await handle(json.loads(line)):
            return


class LoopLag:
    """How late this process's event loop wakes up: is the load side itself saturated?"""

    def __init__(self, period: float = 0.05) -> None:
        self._period = period
        self.samples: list[float] = []
        self.recording = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._period)
            if self.recording:
                self.samples.append(time.monotonic() - before - self._period)

    def summary(self) -> dict[str, float]:
        lags = sorted(self.samples) or [0.0]
        return {"p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))], "max": lags[-1]}


# -- the simulated PBX ----------------------------------------------------------------


class CallerFeeder:
    """Keeps ``target`` synthetic callers on the line: each one gone is replaced.

    The first ``target`` arrive spread over ``ramp`` seconds, so the IVR is not hit
    by all of them in the same instant; after that every caller who hangs up (or
    whose agent hangs up) is followed by a new one within a second.
    """

    def __init__(self, core: Any, rng: random.Random) -> None:
        self._core = core
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()
        self.running = False
        self.up = 0
        self.placed = 0

    async def run(self, target: int, ramp: float) -> None:
        self.running = True
        for _ in range(target):
            if not self.running:
                return
            self._place()
            await asyncio.sleep(ramp / target)

    def stop(self) -> None:
        self.running = False

    def _place(self) -> None:
        from callcenter.sim.actors import Caller, CallerScript
        from callcenter.sim.helpline import CARRIER

        rng = self._rng
        # A synthetic number: it only ever exists in this process and the AMI frames.
        number = rng.choice("6789") + "".join(str(rng.randrange(10)) for _ in range(9))
        caller = Caller(self._core, CallerScript(
            exten="1090", endpoint=CARRIER, caller_num=number, caller_name="",
            prompt_answers=list(rng.choice(CALLER_SCRIPTS)), reaction=rng.uniform(0.8, 2.0),
            # She waits as long as it takes; her agent ends the call.
            patience=None, talk_time=None, max_duration=1800.0,
        ), rng)
        caller.start()
        self.up += 1
        self.placed += 1
        task = asyncio.create_task(self._follow(caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, caller: Any) -> None:
        await caller.done.wait()
        self.up -= 1
        if self.running:
            self._core.clock.call_later(self._rng.uniform(0.0, 1.0), self._place)


async def run_pbx(args: argparse.Namespace) -> None:
    from callcenter.sim.actors import AgentPhone
    from callcenter.sim.clock import Clock
    from callcenter.sim.helpline import SimAgent, helpline_config
    from callcenter.sim.server import SimPBX

    rng = random.Random(args.seed)
    names = agent_names(args.agents)
    config = helpline_config([SimAgent(n, n) for n in names], secret=secrets.token_urlsafe(16))
    # Her softphone answers after a short random delay and she talks for a while, then
    # hangs up (the caller's leg goes with it: the dialplan's Queue() has no `c`).
    for endpoint in config.endpoints:
        if endpoint.name in names:
            endpoint.phone = AgentPhone(  # type: ignore[assignment]
                random.Random(rng.random()), answer_delay=(args.answer_min, args.answer_max),
                talk_time=(args.talk_min, args.talk_max),
            )
    sim = SimPBX(config, clock=Clock(1.0))
    # Stamped in the core, synchronously as it emits the event: before encoding and
    # before any byte is written to the backend's socket.
    connects: list[tuple[str, str, float]] = []

    def on_event(name: str, pairs: list[tuple[str, str]]) -> None:
        if name == "AgentConnect":
            headers = dict(pairs)
            connects.append((headers.get("Linkedid", ""), headers.get("Interface", ""),
                             time.monotonic()))

    sim.core.listeners.append(on_event)
    await sim.start(port=0)
    user = config.users[0]
    say({"event": "pbx", "port": sim.port, "username": user.username, "secret": user.secret})
    feeder = CallerFeeder(sim.core, rng)
    lag = LoopLag()
    lag.start()
    samples: list[tuple[float, int]] = []
    feeding: asyncio.Task[None] | None = None

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            samples.append((time.monotonic(), feeder.up))

    sampler = asyncio.create_task(sample())

    async def handle(command: dict[str, Any]) -> bool:
        nonlocal feeding
        match command["cmd"]:
            case "callers":
                feeding = asyncio.create_task(feeder.run(command["target"], command["ramp"]))
            case "window":
                lag.recording = command["open"]
            case "report":
                say({"event": "report", "connects": connects, "samples": samples,
                     "placed": feeder.placed, "events": sim.core.events_emitted,
                     "lag": lag.summary()})
            case "quit":
                return False
        return True

    try:
        await serve_commands(handle)
    finally:
        feeder.stop()
        sampler.cancel()
        if feeding is not None:
            feeding.cancel()
        await sim.stop()


# -- the agents' consoles ---------------------------------------------------------------


class Console:
    """One agent at her desk: signed in over HTTP, console socket open, available.

    Records when each "connected" screen-pop arrives, and sends her wrap-up form a
    few seconds after the call ends, as she would.
    """

    def __init__(self, base: str, username: str, index: int, rng: random.Random,
                 pops: list[tuple[str, str, float]], *, wrapup: bool) -> None:
        self.base = base
        self.username = username
        self.index = index
        self.rng = rng
        self.pops = pops
        self.wrapup = wrapup
        self.csrf = ""
        self.web: Any = None
        self.ws: Any = None
        self.wrapups = 0
        self.wrapup_errors = 0
        self.closed_by_server = 0
        self._pending: set[asyncio.Task[None]] = set()

    async def sign_in(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(local_addr=(source_address(self.index), 0))
        self.web = aiohttp.ClientSession(connector=connector,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self.web.post(f"{self.base}/api/session", json={
            "username": self.username, "password": PASSWORD,
        }) as response:
            response.raise_for_status()
            self.csrf = (await response.json())["csrf_token"]
        await self._open_socket()
        async with self.web.post(f"{self.base}/api/me/login-queues",
                                 headers={"X-CSRF-Token": self.csrf}) as response:
            response.raise_for_status()

    async def _open_socket(self) -> None:
        self.ws = await self.web.ws_connect(f"{self.base}/ws/console", origin=self.base,
                                            heartbeat=None, autoping=True)

    async def read(self) -> None:
        import aiohttp

        while True:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                # The instant comes first: decoding is part of what a browser does too,
                # but nothing else this process does should be.
                arrived = time.monotonic()
                data = json.loads(message.data)
                if data.get("type") != "pop":
                    continue
                pop = data["pop"]
                card = pop["card"]
                if pop["phase"] == "connected":
                    self.pops.append((card["linkedid"], pop["username"], arrived))
                elif pop["phase"] == "ended" and self.wrapup:
                    task = asyncio.create_task(self._send_wrapup(card["node"], card["linkedid"]))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
            # The server closed her socket (too slow, 1013): a browser reconnects.
            self.closed_by_server += 1
            await self._open_socket()

    async def _send_wrapup(self, node: str, linkedid: str) -> None:
        await asyncio.sleep(self.rng.uniform(2.0, 8.0))
        try:
            async with self.web.post(
                f"{self.base}/api/me/wrapup", headers={"X-CSRF-Token": self.csrf},
                json={"category": self.rng.choice(["harassment_phone", "harassment_online",
                                                   "stalking", "information"]),
                      "notes": "", "node": node, "linkedid": linkedid},
            ) as response:
                if response.status >= 400:
                    self.wrapup_errors += 1
                else:
                    self.wrapups += 1
        except Exception:
            self.wrapup_errors += 1

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.web is not None:
            await self.web.close()


async def run_consoles(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    pops: list[tuple[str, str, float]] = []
    desks = [Console(args.base, name, i, random.Random(rng.random()), pops,
                     wrapup=not args.no_wrapup)
             for i, name in enumerate(agent_names(args.agents))]
    # Sign-ins a few at a time, as a shift starting: the backend is not the thing
    # under test here, and a thundering herd of 200 would only measure the herd.
    gate = asyncio.Semaphore(10)
    failures: list[str] = []

    async def sign_in(desk: Console) -> None:
        async with gate:
            try:
                await desk.sign_in()
            except Exception as exc:
                failures.append(f"{desk.username}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(sign_in(d) for d in desks))
    readers = [asyncio.create_task(d.read()) for d in desks if d.ws is not None]
    lag = LoopLag()
    lag.start()
    say({"event": "ready", "signed_in": len(readers), "failures": failures[:5]})

    async def handle(command: dict[str, Any]) -> bool:
        match command["cmd"]:
            case "window":
                lag.recording = command["open"]
            case "report":
                say({"event": "report", "pops": pops, "lag": lag.summary(),
                     "wrapups": sum(d.wrapups for d in desks),
                     "wrapup_errors": sum(d.wrapup_errors for d in desks),
                     "closed_by_server": sum(d.closed_by_server for d in desks)})
            case "quit":
                return False
        return True

    try:
        await serve_commands(handle)
    finally:
        for reader in readers:
            reader.cancel()
        for desk in desks:
            with contextlib.suppress(Exception):
                await desk.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    pbx = roles.add_parser("pbx")
    pbx.add_argument("--agents", type=int, default=200)
    pbx.add_argument("--seed", type=int, default=1090)
    pbx.add_argument("--answer-min", type=float, default=1.0)
    pbx.add_argument("--answer-max", type=float, default=4.0)
    pbx.add_argument("--talk-min", type=float, default=10.0)
    pbx.add_argument("--talk-max", type=float, default=30.0)
    consoles = roles.add_parser("consoles")
    consoles.add_argument("--base", required=True)
    consoles.add_argument("--agents", type=int, default=200)
    consoles.add_argument("--seed", type=int, default=1090)
    consoles.add_argument("--no-wrapup", action="store_true")
    args = parser.parse_args()

    from callcenter.logs import configure_logging

    configure_logging("ERROR", json=False)
    asyncio.run(run_pbx(args) if args.role == "pbx" else run_consoles(args))


if __name__ == "__main__":
    main()
