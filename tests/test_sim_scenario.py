"""Scenarios are plain data and seeded: the same file gives the same calls."""

from __future__ import annotations

from pathlib import Path

from callcenter.sim import SimPBX
from callcenter.sim.clock import VirtualClock
from callcenter.sim.scenario import Scenario, ScenarioRunner

SCENARIO = """
seed = 42
callers = 40
arrival_window = 30.0
agents = 6

[agent_profile]
answer_delay = [1.0, 3.0]
no_answer_rate = 0.2
talk_time = [10.0, 60.0]

[[caller_profiles]]
weight = 1.0
patience = [5.0, 60.0]

[[caller_profiles]]
weight = 0.5
priority = 10
patience = [30.0, 120.0]

[[queues]]
name = "counselors"
strategy = "leastrecent"
retry = 2
ringinuse = false
"""


async def run(path: Path) -> list[tuple[str, str | None, int | None]]:
    scenario = Scenario.load(path)
    sim = SimPBX(scenario.config(), clock=VirtualClock())
    runner = ScenarioRunner(sim, scenario)
    runner.start()
    await runner.wait()
    await sim.core.shutdown()
    sim.clock.stop()  # type: ignore[attr-defined]
    return [
        (c.outcome.result, c.outcome.connected_to, c.outcome.hangup_cause) for c in runner.callers
    ]


async def test_same_seed_same_calls(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    first = await run(path)
    second = await run(path)
    assert first == second
    results = {result for result, _, _ in first}
    assert "answered" in results and "abandoned" in results
    path.write_text(SCENARIO.replace("seed = 42", "seed = 43"))
    assert await run(path) != first
