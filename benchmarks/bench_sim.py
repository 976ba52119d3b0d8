"""PBX simulator throughput: simulated calls and AMI events per real second.

    .venv/bin/python benchmarks/bench_sim.py [--callers 500] [--agents 200] [--rounds 3]

Runs the seeded load scenario (callers arriving over 90 simulated seconds,
agents with random answer delays, refusals and talk times) on a VirtualClock,
so the numbers measure the simulator's own work, not waiting. Two modes: the
core alone (no AMI session), and with one AMI client reading every event over
loopback TCP (encoding, writing, parsing). The median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from callcenter.sim import SimPBX  # noqa: E402
from callcenter.sim.clock import VirtualClock  # noqa: E402
from callcenter.sim.scenario import AgentProfile, CallerProfile, Scenario, ScenarioRunner  # noqa: E402


def scenario(callers: int, agents: int) -> Scenario:
    return Scenario(
        seed=1090,
        callers=callers,
        arrival_window=90.0,
        agents=agents,
        agent_profile=AgentProfile(
            answer_delay=(1.0, 6.0), no_answer_rate=0.1, busy_rate=0.05, talk_time=(20.0, 200.0)
        ),
        caller_profiles=[
            CallerProfile(weight=0.7, patience=(20.0, 240.0)),
            CallerProfile(weight=0.3, priority=10),
        ],
    )


async def one_round(callers: int, agents: int, with_ami: bool) -> tuple[float, int, int]:
    sc = scenario(callers, agents)
    sim = SimPBX(sc.config(), clock=VirtualClock())
    client = None
    if with_ami:
        from callcenter.sim.testclient import SimClient

        await sim.start(port=0)
        client = await SimClient(sim).connect()
        await client.login()
    runner = ScenarioRunner(sim, sc)
    started = time.perf_counter()
    runner.start()
    await runner.wait()
    elapsed = time.perf_counter() - started
    if client is not None:
        await client.close()
    await sim.stop()
    sim.clock.stop()  # type: ignore[attr-defined]
    return elapsed, len(runner.callers), sim.core.events_emitted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callers", type=int, default=500)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    table = Table(
        title=f"simulator: {args.callers} callers, {args.agents} agents (median of {args.rounds})"
    )
    for column in ("mode", "seconds", "calls/s", "events/s", "events/call"):
        table.add_column(column, justify="right")
    for with_ami in (False, True):
        results = [
            asyncio.run(one_round(args.callers, args.agents, with_ami)) for _ in range(args.rounds)
        ]
        elapsed = statistics.median(r[0] for r in results)
        calls, events = results[0][1], results[0][2]
        table.add_row(
            "core + AMI client" if with_ami else "core only",
            f"{elapsed:.2f}",
            f"{calls / elapsed:,.0f}",
            f"{events / elapsed:,.0f}",
            f"{events / calls:.0f}",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
