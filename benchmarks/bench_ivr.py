"""IVR responsiveness: time from AsyncAGIStart leaving the PBX to the first AGI command
arriving back, with 200 callers entering the IVR at once.

    .venv/bin/python benchmarks/bench_ivr.py [--callers 200] [--rounds 3]

Measured on the PBX side of the socket (the simulator stamps AsyncAGIStart as it
emits it and the AGI action as it reads it), so the client's parsing, queueing
and the backend's own work are all inside the number. The backend is the real
one (AMI client, PBX node, IVR service, SQLite store); the simulator runs the
shipped dialplan and queues in the same process, on a speed-factor clock.
Median and 99th percentile per round; the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from callcenter.sim import server as sim_server  # noqa: E402
from callcenter.sim.helpline import SimAgent  # noqa: E402
from callcenter.store import Store  # noqa: E402
from tests.support.helpline import helpline, until  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def one_round(callers: int) -> tuple[float, float, float]:
    started: dict[str, float] = {}
    first_command: dict[str, float] = {}
    original = sim_server.ACTIONS["agi"]

    async def stamped_agi(session, frame):  # type: ignore[no-untyped-def]
        channel = frame.get("Channel") or ""
        first_command.setdefault(channel, time.monotonic())
        await original(session, frame)

    sim_server.ACTIONS["agi"] = stamped_agi
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.from_url(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
            await store.migrate()
            async with helpline(store, [SimAgent("agent1", "Agent One")], speed=2.0) as line:
                line.sim.core.listeners.append(
                    lambda name, pairs: started.setdefault(dict(pairs)["Channel"], time.monotonic())
                    if name == "AsyncAGIStart" else None
                )
                backend = await line.start_backend()
                await line.wait_heartbeat()
                for queue in ("wpl-general-hi", "wpl-emergency", "wpl-counselling"):
                    await line.add_member(queue, "agent1", paused=True)
                wall = time.monotonic()
                batch = [line.call(["1"]) for _ in range(callers)]
                await until(lambda: len(first_command) >= callers, within=120)
                elapsed = time.monotonic() - wall
                await until(lambda: all(c.outcome.joined for c in batch), within=120)
                for caller in batch:
                    caller.hang_up()
                await until(lambda: backend.node.model.calls == {}, within=60)
            await store.close()
    finally:
        sim_server.ACTIONS["agi"] = original
    latencies = [first_command[c] - started[c] for c in started if c in first_command]
    return statistics.median(latencies), percentile(latencies, 0.99), elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [await one_round(args.callers) for _ in range(args.rounds)]
    rounds.sort()
    median, p99, elapsed = rounds[len(rounds) // 2]
    table = Table(title=f"IVR: AsyncAGIStart -> first AGI command, {args.callers} callers at once")
    table.add_column("measure")
    table.add_column("milliseconds", justify="right")
    table.add_row("median", f"{median * 1000:.1f}")
    table.add_row("99th percentile", f"{p99 * 1000:.1f}")
    table.add_row("all rounds (median / p99)", ", ".join(
        f"{m * 1000:.0f}/{p * 1000:.0f}" for m, p, _ in rounds))
    Console().print(table)


if __name__ == "__main__":
    asyncio.run(main())
