"""Console screen-pop latency and backend CPU per 1,000 AMI events, at 500 calls and 200 agents.

    .venv/bin/python benchmarks/bench_console.py [--agents 200] [--calls 500]
        [--warmup 60] [--window 60] [--rounds 1] [--no-wrapup]

Issue 5's acceptance numbers. Three processes on this machine:

* **pbx** (benchmarks/console_load.py): the simulated Asterisk 22 running the shipped
  dialplan, queues.conf and manager filters, at real time (speed 1.0). Every agent's
  softphone answers after 1-4 s and she talks 10-30 s, then hangs up. Synthetic
  callers go through the IVR to the Hindi and English general queues; whenever one
  ends another dials within a second, so ``--calls`` calls stay up (in the IVR,
  queued or talking) once the first ones have ramped in.
* **consoles** (benchmarks/console_load.py): every agent signs in through the HTTP API
  (aiohttp client, cookie + CSRF token, each from her own loopback address so the
  per-address sign-in limit sees 200 desks, not one), opens /ws/console, goes
  available with POST /api/me/login-queues, and sends her wrap-up form 2-8 s after
  each call ends (unless --no-wrapup).
* **backend** (this process): the product as its composition root builds it (the way
  `callcenter demo` does): CallCenter (AMI client, PBX model, IVR over AsyncAGI, agents
  service, queue statistics, cases) and serve_web on an ephemeral port, on SQLite in a
  temporary directory, with the in-process bus (no Redis).

Latency, per call connected in the window: from the simulator emitting AgentConnect
(time.monotonic() in the pbx process, taken in the core synchronously as the event is
emitted, before it is encoded or written) to the "connected" screen-pop for that
call (matched by Linkedid) arriving on the console of the agent AgentConnect names
(time.monotonic() in the consoles process, as the WebSocket message is handed to the
reader, before JSON decoding). CLOCK_MONOTONIC is one clock for the whole machine, so
the two instants compare across processes. Inside the number: the simulator's AMI
encoding and socket write, the backend's parsing, model, agents service (which looks
up her earlier calls and cases in SQLite before the "connected" pop), bus, WebSocket
fan-out and framing, and aiohttp's client reading it; plus whatever scheduling delay
three busy processes on 2 shared cores add, which the load processes' own event-loop
lag (reported) bounds from their side. A call whose pop never arrived, or arrived on
another agent's console, is counted separately, not as a latency.

CPU: the backend process's CPU time (time.process_time(): user + system of all its
threads, the SQLite worker thread included) over the window, divided by the AMI events
its client received in the same window (AMIClient.stats.events_received), times 1,000.
Everything the backend does in the window is inside: AMI, IVR, model, statistics, DB
writes, the web app serving the 200 consoles (1 s state pushes, wrap-up forms).
Not inside: the simulator, the consoles, and start-up (migrations, accounts, sign-in).

Accounts are created with cheap argon2 parameters and the backend's AccountService uses
the same (so sign-in does not rehash): 200 sign-ins are set-up, not what is measured.
The reported value of each measure is the median over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOAD = Path(__file__).resolve().parent / "console_load.py"
#: Late pops for calls connected just before the window closed still count.
GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class RoundResult:
    latencies: list[float]
    no_pop: int
    wrong_agent: int
    events: int
    cpu_s: float
    calls_up: tuple[int, int, int]  # min, median, max over the window
    signed_in: int
    wrapups: int
    wrapup_errors: int
    sockets_closed: int
    pbx_lag_p99: float
    console_lag_p99: float

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s / self.events * 1000 if self.events else math.nan


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with ``fraction`` of them at or below."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class LoadProcess:
    """A console_load.py child speaking JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> LoadProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(LOAD), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # the final report is one long line
        )
        return cls(process)

    async def expect(self, event: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(120.0):
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"load process exited (rc={await self.process.wait()}) "
                               f"before saying {event!r}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"expected {event!r} from the load process, got {message}")
        return message

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def ask(self, event: str, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return await self.expect(event)

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            self.send(cmd="quit")
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 20.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(data_dir: Path, pbx: dict[str, Any]) -> Any:
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

    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{data_dir / 'bench.sqlite3'}"),
        pbx=[PbxNode(name="main", host="127.0.0.1", port=pbx["port"],
                     username=pbx["username"], auth="md5")],
        ivr=IvrSettings(menu_file=ROOT / "config" / "ivr.toml", heartbeat_interval=2.0),
        recordings=RecordingSettings(directory=data_dir / "recordings"),
        secrets=Secrets(ami={secret_env_name("main"): SecretStr(pbx["secret"])}),
    )


async def one_round(args: argparse.Namespace) -> RoundResult:
    from argon2 import PasswordHasher
    from console_load import PASSWORD, agent_names  # type: ignore[import-not-found]

    from callcenter.agents.accounts import AccountService
    from callcenter.app import CallCenter, serve_web
    from callcenter.demo import demo_vault

    pbx = await LoadProcess.start("pbx", "--agents", str(args.agents), "--seed", str(args.seed))
    consoles: LoadProcess | None = None
    runner = None
    center = None
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        try:
            hello = await pbx.expect("pbx")
            center = CallCenter(bench_settings(Path(tmp), hello), vault=demo_vault())
            # Sign-in cost is set-up here: cheap hashes, which the service keeps.
            center.accounts = AccountService(
                center.store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            )
            await center.start()
            for name in agent_names(args.agents):
                await center.accounts.add(name, display_name=f"Agent {name[5:]}", role="agent",
                                          endpoint=f"PJSIP/{name}", password=PASSWORD,
                                          skills=("hi", "en"))
            runtime = center.nodes["main"]
            await asyncio.wait_for(runtime.node.synced.wait(), 30.0)
            port = free_port()
            runner = await serve_web(center, host="127.0.0.1", port=port, cookie_secure=False)
            consoles = await LoadProcess.start(
                "consoles", "--base", f"http://127.0.0.1:{port}", "--agents", str(args.agents),
                "--seed", str(args.seed), *(["--no-wrapup"] if args.no_wrapup else []),
            )
            ready = await consoles.expect("ready")
            if ready["failures"]:
                print(f"sign-in failures (first 5): {ready['failures']}", file=sys.stderr)

            pbx.send(cmd="callers", target=args.calls, ramp=args.ramp)
            await asyncio.sleep(args.warmup)

            client = runtime.client
            for load in (pbx, consoles):
                load.send(cmd="window", open=True)
            opened, cpu0, events0 = time.monotonic(), time.process_time(), \
                client.stats.events_received
            await asyncio.sleep(args.window)
            closed, cpu1, events1 = time.monotonic(), time.process_time(), \
                client.stats.events_received
            for load in (pbx, consoles):
                load.send(cmd="window", open=False)
            await asyncio.sleep(GRACE_S)
            pbx_report = await pbx.ask("report", cmd="report")
            console_report = await consoles.ask("report", cmd="report")
        finally:
            if consoles is not None:
                await consoles.stop()
            if runner is not None:
                await runner.cleanup()
            await pbx.stop()
            if center is not None:
                await center.stop()

    pops: dict[str, tuple[str, float]] = {}
    for linkedid, username, arrived in console_report["pops"]:
        pops.setdefault(linkedid, (username, arrived))
    latencies: list[float] = []
    no_pop = wrong_agent = 0
    for linkedid, interface, emitted in pbx_report["connects"]:
        if not opened <= emitted <= closed:
            continue
        pop = pops.get(linkedid)
        if pop is None:
            no_pop += 1
        elif interface.rpartition("/")[2] != pop[0]:
            wrong_agent += 1
        else:
            latencies.append(pop[1] - emitted)
    up = [n for at, n in pbx_report["samples"] if opened <= at <= closed] or [0]
    return RoundResult(
        latencies=sorted(latencies), no_pop=no_pop, wrong_agent=wrong_agent,
        events=events1 - events0, cpu_s=cpu1 - cpu0,
        calls_up=(min(up), int(statistics.median(up)), max(up)),
        signed_in=ready["signed_in"], wrapups=console_report["wrapups"],
        wrapup_errors=console_report["wrapup_errors"],
        sockets_closed=console_report["closed_by_server"],
        pbx_lag_p99=pbx_report["lag"]["p99"], console_lag_p99=console_report["lag"]["p99"],
    )


def report(args: argparse.Namespace, rounds: list[RoundResult]) -> Table:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value * 1000:,.1f}"

    table = Table(title=(
        f"Console screen-pops under load: {args.agents} agents, ~{args.calls} calls up, "
        f"{args.window:.0f} s window (median of {len(rounds)} round"
        f"{'s' if len(rounds) > 1 else ''})"
    ))
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("calls up in the window (min / median / max)",
                  " / ".join(str(int(med([r.calls_up[i] for r in rounds]))) for i in range(3)))
    table.add_row("agents signed in with a console open",
                  str(int(med([r.signed_in for r in rounds]))))
    table.add_row("calls connected in the window and measured",
                  str(int(med([len(r.latencies) for r in rounds]))))
    table.add_row("AgentConnect -> pop, median (ms)",
                  ms(med([percentile(r.latencies, 0.5) for r in rounds])))
    table.add_row("AgentConnect -> pop, p99 (ms)",
                  ms(med([percentile(r.latencies, 0.99) for r in rounds])))
    table.add_row("AgentConnect -> pop, max (ms)",
                  ms(med([r.latencies[-1] if r.latencies else math.nan for r in rounds])))
    table.add_row("connected calls without a pop / on the wrong console",
                  f"{int(med([r.no_pop for r in rounds]))} / "
                  f"{int(med([r.wrong_agent for r in rounds]))}")
    table.add_row("AMI events received by the backend",
                  f"{int(med([r.events for r in rounds])):,}")
    table.add_row("backend CPU seconds", f"{med([r.cpu_s for r in rounds]):.2f}")
    table.add_row("backend CPU s per 1,000 AMI events",
                  f"{med([r.cpu_per_1000 for r in rounds]):.3f}")
    table.add_row("wrap-up forms sent / refused (whole run)",
                  f"{int(med([r.wrapups for r in rounds]))} / "
                  f"{int(med([r.wrapup_errors for r in rounds]))}")
    table.add_row("console sockets closed by the server",
                  str(int(med([r.sockets_closed for r in rounds]))))
    table.add_row("load side loop lag p99, pbx / consoles (ms)",
                  f"{ms(med([r.pbx_lag_p99 for r in rounds]))} / "
                  f"{ms(med([r.console_lag_p99 for r in rounds]))}")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500, help="calls kept up at once")
    parser.add_argument("--ramp", type=float, default=20.0,
                        help="seconds over which the first callers arrive")
    # Every agent takes her first call in the same ramp; two talk + wrap-up cycles
    # (10-30 s + 30 s each) spread them out before anything is measured.
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds from the first caller to the window opening")
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1090)
    parser.add_argument("--no-wrapup", action="store_true",
                        help="agents never send the wrap-up form (the wrap-up time ends it)")
    args = parser.parse_args()

    from callcenter.logs import configure_logging

    configure_logging("ERROR", json=False)
    rounds = [asyncio.run(one_round(args)) for _ in range(args.rounds)]
    Console().print(report(args, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
