"""Scenarios: plain data (TOML or JSON) describing callers, agents and queues, seeded.

A scenario either lists callers explicitly or gives a load profile (how many
callers, how fast they arrive, their behaviour mix); agents are PJSIP
endpoints with a softphone profile and the queues they are members of. The
same seed gives the same calls, digits, patience and talk times.
"""

from __future__ import annotations

import json
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actors import AgentPhone, Caller, CallerScript
from .config import Endpoint, MemberConfig, QueueConfig, SimConfig

#: Queue-only dialplan for load runs without a backend: the caller's queue,
#: priority and queue timeout come in as channel variables from the trunk.
LOAD_DIALPLAN = r"""
[load-inbound]
exten => _X.,1,Answer()
 same => n,Queue(${LOAD_QUEUE},t,,,${LOAD_TIMEOUT})
 same => n,Hangup()
"""


@dataclass
class AgentProfile:
    answer_delay: tuple[float, float] = (1.0, 4.0)
    no_answer_rate: float = 0.0
    busy_rate: float = 0.0
    talk_time: tuple[float, float] = (30.0, 240.0)


@dataclass
class CallerProfile:
    weight: float = 1.0
    patience: tuple[float, float] | None = (30.0, 300.0)
    talk_time: tuple[float, float] | None = None
    priority: int = 0
    queue: str = "counselors"
    queue_timeout: int = 600


@dataclass
class Scenario:
    seed: int = 1
    #: callers placed in total (the load profile).
    callers: int = 10
    #: seconds over which they arrive (uniformly at random).
    arrival_window: float = 60.0
    agents: int = 5
    queues: list[QueueConfig] = field(
        default_factory=lambda: [
            QueueConfig("counselors", strategy="rrmemory", retry=2, ringinuse=False)
        ]
    )
    agent_profile: AgentProfile = field(default_factory=AgentProfile)
    caller_profiles: list[CallerProfile] = field(default_factory=lambda: [CallerProfile()])
    #: explicit callers, in addition to the load profile.
    scripts: list[CallerScript] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        queues = [
            QueueConfig(**{k: v for k, v in q.items() if k != "members"})
            for q in data.get("queues", [])
        ] or None
        agent = AgentProfile(
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in data.get("agent_profile", {}).items()
            }
        )
        profiles = [
            CallerProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})
            for p in data.get("caller_profiles", [])
        ] or None
        scripts = [
            CallerScript(**{k: [tuple(x) for x in v] if k == "dtmf" else v for k, v in s.items()})
            for s in data.get("scripts", [])
        ]
        scenario = cls(
            seed=int(data.get("seed", 1)),
            callers=int(data.get("callers", 10)),
            arrival_window=float(data.get("arrival_window", 60.0)),
            agents=int(data.get("agents", 5)),
            agent_profile=agent,
            scripts=scripts,
        )
        if queues is not None:
            scenario.queues = queues
        if profiles is not None:
            scenario.caller_profiles = profiles
        return scenario

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        return cls.from_dict(data)

    def config(self, base: SimConfig | None = None) -> SimConfig:
        """A SimConfig with this scenario's agents and queues (every agent in every queue)."""
        config = base or SimConfig()
        config.dialplan = (config.dialplan or "") + LOAD_DIALPLAN
        endpoints = {e.name: e for e in config.endpoints}
        endpoints.setdefault("trunk", Endpoint("trunk", "", "", "load-inbound"))
        names = [f"agent{i:04d}" for i in range(1, self.agents + 1)]
        for i, name in enumerate(names, 1):
            endpoints.setdefault(name, Endpoint(name, f"Agent {i}", f"{2000 + i}", "load-agents"))
        config.endpoints = list(endpoints.values())
        queues = []
        for q in self.queues:
            members = list(q.members) or [MemberConfig(f"PJSIP/{n}", n) for n in names]
            queues.append(QueueConfig(**{**q.__dict__, "members": members}))
        config.queues = queues
        return config


class ScenarioRunner:
    """Places the scenario's callers on a running simulator and collects outcomes."""

    def __init__(self, sim: Any, scenario: Scenario) -> None:
        self.sim = sim
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.callers: list[Caller] = []

    def install_agents(self) -> None:
        core = self.sim.core
        profile = self.scenario.agent_profile
        for name in sorted(core.endpoints):
            if not name.startswith("agent"):
                continue
            core.phones[name] = AgentPhone(
                random.Random(self.rng.random()),
                answer_delay=profile.answer_delay,
                no_answer_rate=profile.no_answer_rate,
                busy_rate=profile.busy_rate,
                talk_time=profile.talk_time,
            )

    def scripts(self) -> list[tuple[float, CallerScript]]:
        """(arrival time, script) for every caller, drawn from the seed."""
        out: list[tuple[float, CallerScript]] = [(0.0, s) for s in self.scenario.scripts]
        profiles = self.scenario.caller_profiles
        weights = [p.weight for p in profiles]
        for i in range(self.scenario.callers):
            profile = self.rng.choices(profiles, weights)[0]
            at = self.rng.uniform(0, self.scenario.arrival_window)
            patience = self.rng.uniform(*profile.patience) if profile.patience else None
            talk = self.rng.uniform(*profile.talk_time) if profile.talk_time else None
            out.append(
                (
                    at,
                    CallerScript(
                        exten="1090",
                        endpoint="trunk",
                        caller_num=f"9{i:09d}",
                        caller_name="",
                        patience=patience,
                        talk_time=talk,
                        variables={
                            "LOAD_QUEUE": profile.queue,
                            "LOAD_TIMEOUT": str(profile.queue_timeout),
                            "QUEUE_PRIO": str(profile.priority),
                        },
                    ),
                )
            )
        out.sort(key=lambda item: item[0])
        return out

    def start(self) -> None:
        """Schedule every caller's arrival on the simulator's clock."""
        self.install_agents()
        clock = self.sim.clock
        for at, script in self.scripts():
            caller = Caller(self.sim.core, script, random.Random(self.rng.random()))
            self.callers.append(caller)
            clock.call_later(at, caller.start)

    async def wait(self) -> None:
        for caller in self.callers:
            await caller.done.wait()
