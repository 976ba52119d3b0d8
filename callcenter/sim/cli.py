"""``callcenter sim``: run the PBX simulator on a TCP port, optionally with synthetic load.

    callcenter sim [--host 127.0.0.1] [--port 5038] [--scenario FILE] [--speed X] [--load N]

Without ``--scenario`` it is the lab PBX of the recorded traces (user ``lab``,
secret ``labsecret``). ``--load N`` places N synthetic callers (the
scenario's load profile) and prints a live line: calls, waiting callers,
events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from typing import Any

from .clock import Clock
from .config import SimConfig, lab_config
from .scenario import Scenario, ScenarioRunner
from .server import SimPBX


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="run the PBX simulator (AMI like Asterisk 22)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument(
        "--scenario", metavar="FILE", help="scenario (TOML or JSON): agents, queues, callers"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--load", type=int, default=0, metavar="N", help="place N synthetic callers"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


def _status(sim: SimPBX, rate: float) -> str:
    calls = sum(
        1 for c in sim.core.channels.values() if c.pbx_task is not None and c.tech != "Local"
    )
    waiting = sum(len(q.entries) for q in sim.queues.queues.values())
    return (
        f"AMI {sim.host}:{sim.port}  calls {calls}  waiting {waiting}  "
        f"processed {sim.core.processed_calls}  events/s {rate:,.0f}  sessions {len(sim.sessions)}"
    )


async def serve(args: argparse.Namespace) -> None:
    from rich.live import Live

    scenario = Scenario.load(args.scenario) if args.scenario else None
    if scenario is None and args.load:
        scenario = Scenario()
    if scenario is not None and args.load:
        scenario.callers = args.load
    # a scenario brings its own agents and queues; without one, the lab PBX
    config: SimConfig = scenario.config(SimConfig()) if scenario else lab_config()
    sim = SimPBX(config, clock=Clock(args.speed))
    await sim.start(args.host, args.port)
    runner: ScenarioRunner | None = None
    if args.load:
        assert scenario is not None
        runner = ScenarioRunner(sim, scenario)
        runner.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    last_events, last_time = sim.core.events_emitted, time.monotonic()
    rate = 0.0
    try:
        with Live(_status(sim, rate), refresh_per_second=2, transient=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                now = time.monotonic()
                rate = (sim.core.events_emitted - last_events) / max(1e-6, now - last_time)
                last_events, last_time = sim.core.events_emitted, now
                live.update(_status(sim, rate))
    finally:
        await sim.stop()
