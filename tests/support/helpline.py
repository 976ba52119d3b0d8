"""End-to-end harness: the simulated PBX running the shipped Asterisk files, and the
backend's AMI client, PBX node and IVR talking to it over real TCP.

The simulator runs on a speed-factor clock (the backend does real I/O: database
threads, sockets), so sim-seconds pass ``speed`` times faster than real ones.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcenter.ami import AMIClient
from callcenter.ami.client import Backoff
from callcenter.cases.identities import IdentityStore
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.ivr.menu import IvrMenu, load_menu
from callcenter.ivr.service import HeartbeatSettings, IvrService
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.node import PbxNode
from callcenter.sim.actors import Caller, CallerScript
from callcenter.sim.clock import Clock
from callcenter.sim.helpline import CARRIER, SimAgent, helpline_config
from callcenter.sim.server import SimPBX
from callcenter.store import Store

ROOT = Path(__file__).resolve().parents[2]
SPEED = 10.0


async def until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Wait (real seconds) until ``predicate()`` holds; state lives in other tasks."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def indian_mobile(rng: random.Random) -> str:
    """A random valid-looking Indian mobile number, 10 digits starting 7-9."""
    return str(rng.choice("789")) + "".join(str(rng.randrange(10)) for _ in range(9))


@dataclass
class Backend:
    client: AMIClient
    node: PbxNode
    ivr: IvrService

    async def stop(self, *, say_goodbye: bool = True) -> None:
        await self.ivr.stop(say_goodbye=say_goodbye)
        await self.node.drain()
        await self.client.close()

    async def kill(self) -> None:
        """Die without a word: no goodbye, sessions just stop (a crashed process)."""
        await self.ivr.stop(say_goodbye=False)
        await self.client.close()


@dataclass
class Helpline:
    sim: SimPBX
    store: Store
    vault: Vault
    menu: IvrMenu
    backend: Backend | None = None
    #: Every event the simulated PBX emitted: (name, headers as pairs).
    events: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    callers: list[Caller] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(1090))

    async def start_backend(
        self, *, heartbeat_interval: float = 0.2, is_blocked: Any = None
    ) -> Backend:
        user = self.sim.config.users[0]
        client = AMIClient(
            "127.0.0.1", self.sim.port, user.username, user.secret, "md5",
            ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.1),
        )
        recorder = CallRecorder(self.store)
        node = PbxNode("pbx1", client, recorder=recorder)
        ivr = IvrService(
            node="pbx1", ami=client, ops=node.ops, menu=self.menu, vault=self.vault,
            identities=IdentityStore(self.store), recorder=recorder,
            heartbeat=HeartbeatSettings(interval_s=heartbeat_interval),
            is_blocked=is_blocked,
        )
        await ivr.start()
        await client.connect()
        self.backend = Backend(client, node, ivr)
        await until(lambda: node.resyncs >= 1)
        return self.backend

    async def wait_heartbeat(self) -> None:
        await until(lambda: self.sim.core.db_get("wpl", "heartbeat") is not None)

    def call(self, answers: Sequence[str] = (), *, number: str | None = None, **script) -> Caller:
        """A woman calls 1090 from ``number`` and answers the IVR's prompts with ``answers``."""
        caller = Caller(
            self.sim.core,
            CallerScript(
                exten="1090", endpoint=CARRIER, caller_num=number or indian_mobile(self.rng),
                caller_name="", prompt_answers=list(answers), **script,
            ),
        )
        caller.start()
        self.callers.append(caller)
        return caller

    async def add_member(self, queue: str, endpoint: str, *, paused: bool = False) -> None:
        assert self.backend is not None
        await self.backend.node.ops.add_member(
            queue, f"PJSIP/{endpoint}", member_name=endpoint, paused=paused,
            reason="setup" if paused else None,
        )

    def sim_seconds(self, seconds: float) -> float:
        return seconds / self.sim.clock.speed

    def named(self, name: str) -> list[dict[str, str]]:
        return [dict(pairs) for n, pairs in self.events if n == name]

    def numbers(self) -> set[str]:
        return {c.script.caller_num for c in self.callers if c.script.caller_num}


@asynccontextmanager
async def helpline(
    store: Store, agents: Sequence[SimAgent] = (), *, speed: float = SPEED
) -> AsyncIterator[Helpline]:
    sim = SimPBX(helpline_config(agents), clock=Clock(speed))
    await sim.start(port=0)
    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    line = Helpline(sim, store, vault, load_menu(ROOT / "config" / "ivr.toml"))
    sim.core.listeners.append(lambda name, pairs: line.events.append((name, list(pairs))))
    try:
        yield line
    finally:
        if line.backend is not None:
            await line.backend.stop()
        await sim.stop()


def backend_settings(line: Helpline, redis_url: str | None = None, prefix: str = "callcenter:"):
    """Service settings for a CallCenter that serves ``line``'s simulated PBX."""
    import tempfile

    from pydantic import SecretStr

    from callcenter.config import (
        DatabaseSettings,
        IvrSettings,
        PbxNode,
        RecordingSettings,
        RedisSettings,
        Secrets,
        Settings,
        secret_env_name,
    )

    user = line.sim.config.users[0]
    return Settings(
        database=DatabaseSettings(url=line.store.url),
        redis=RedisSettings(url=redis_url, prefix=prefix),
        pbx=[PbxNode(name="main", host="127.0.0.1", port=line.sim.port,
                     username=user.username, auth="md5")],
        ivr=IvrSettings(menu_file=ROOT / "config" / "ivr.toml", heartbeat_interval=0.2),
        recordings=RecordingSettings(directory=Path(tempfile.mkdtemp(prefix="recordings-"))),
        secrets=Secrets(ami={secret_env_name("main"): SecretStr(user.secret)}),
    )
