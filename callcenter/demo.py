"""``callcenter demo``: the whole product on one machine, with nothing to install.

Starts the simulated PBX (running the shipped dialplan, queues and manager
filters) with simulated agent softphones and a steady stream of synthetic
callers, the backend on SQLite with the in-process bus, and the web console at
http://127.0.0.1:8080. Demo users are printed at start. The simulator is a
demo and test tool: production code never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from callcenter.app import CallCenter, serve_web
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.config import (
    AgentsSettings,
    DatabaseSettings,
    IvrSettings,
    PbxNode,
    RecordingSettings,
    Secrets,
    Settings,
    WebSettings,
    secret_env_name,
)
from callcenter.sim.actors import Caller, CallerScript
from callcenter.sim.clock import Clock
from callcenter.sim.helpline import CARRIER, SimAgent, helpline_config
from callcenter.sim.server import SimPBX

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    display_name: str
    role: str
    endpoint: str
    skills: tuple[str, ...]
    password: str
    #: Signed in and made available by the demo itself (a simulated colleague).
    simulated: bool = True


#: What synthetic callers do at the IVR's prompts, with weights.
CALLER_SCRIPTS: list[tuple[int, list[str], str]] = [
    (4, ["", "1", "2", "1"], "Hindi, internet harassment, callback yes"),
    (3, ["", "1", "1", "2"], "Hindi, phone harassment"),
    (2, ["", "2", "3", "1"], "English, stalking"),
    (2, ["", "2", "4", "2"], "English, emotional distress"),
    (1, ["1"], "immediate danger"),
    (1, [], "silent"),
    (1, ["", "1", "5", "1"], "Hindi, domestic"),
]


def demo_users() -> list[DemoUser]:
    users = [
        DemoUser("priya", "Priya (you)", "agent", "agent1", ("hi", "en"),
                 "priya-demo-1090", simulated=False),
        DemoUser("meena", "Meena", "agent", "agent2", ("hi",), "meena-demo-1090"),
        DemoUser("anjali", "Anjali", "agent", "agent3", ("hi", "en"), "anjali-demo-1090"),
        DemoUser("farah", "Farah", "counsellor", "agent4", ("hi", "en", "counselling"),
                 "farah-demo-1090"),
        DemoUser("kavita", "Kavita", "agent", "agent5", ("hi", "emergency"), "kavita-demo-1090"),
        DemoUser("sunita", "Sunita (supervisor)", "supervisor", "agent9", ("hi",),
                 "sunita-demo-1090", simulated=False),
    ]
    return users


class CallerStream:
    """Synthetic women calling 1090 at a steady, seeded rate."""

    def __init__(self, sim: SimPBX, *, every_s: float = 12.0, seed: int = 1090) -> None:
        self._sim = sim
        self._every = every_s
        self._rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None
        self.placed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-callers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _script(self) -> CallerScript:
        weights = [w for w, _, _ in CALLER_SCRIPTS]
        _, answers, _ = self._rng.choices(CALLER_SCRIPTS, weights)[0]
        number = self._rng.choice("6789") + "".join(
            str(self._rng.randrange(10)) for _ in range(9)
        )
        return CallerScript(
            exten="1090", endpoint=CARRIER, caller_num=number, caller_name="",
            prompt_answers=list(answers), reaction=self._rng.uniform(1.0, 2.5),
            patience=self._rng.choice([None, None, 40.0, 90.0]),
            talk_time=self._rng.uniform(20.0, 90.0),
        )

    async def _run(self) -> None:
        while True:
            Caller(self._sim.core, self._script(), self._rng).start()
            self.placed += 1
            await self._sim.clock.sleep(self._rng.expovariate(1.0 / self._every))


def write_demo_roster(data_dir: Path) -> Path:
    """Everyone on duty all day, so the wallboard shows who has not signed in yet."""
    path = data_dir / "roster.toml"
    shifts = "".join(
        f'[[shift]]\nwho = "{u.username}"\nrole = "{u.role}"\ndays = "daily"\n'
        'start = "00:00"\nend = "24:00"\n'
        for u in demo_users() if u.role in ("agent", "counsellor")
    )
    path.write_text('timezone = "Asia/Kolkata"\n' + shifts)
    return path


def demo_settings(sim: SimPBX, data_dir: Path, host: str, port: int) -> Settings:
    user = sim.config.users[0]
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{data_dir / 'demo.sqlite3'}"),
        web=WebSettings(host=host, port=port),
        pbx=[PbxNode(name="main", host="127.0.0.1", port=sim.port,
                     username=user.username, auth="md5")],
        ivr=IvrSettings(menu_file=ROOT / "config" / "ivr.toml", heartbeat_interval=2.0),
        recordings=RecordingSettings(directory=data_dir / "recordings"),
        agents=AgentsSettings(roster_file=write_demo_roster(data_dir)),
        secrets=Secrets(
            ami={secret_env_name("main"): SecretStr(user.secret)},
            session=SecretStr(secrets.token_urlsafe(32)),
        ),
    )


async def start_demo_pbx(users: list[DemoUser], speed: float = 1.0) -> SimPBX:
    agents = [
        SimAgent(u.endpoint, u.display_name, answer_after=3.0 if u.simulated else 4.0)
        for u in users
    ]
    sim = SimPBX(helpline_config(agents, secret=secrets.token_urlsafe(16)), clock=Clock(speed))
    await sim.start(port=0)
    return sim


def demo_vault() -> Vault:
    # An ephemeral key: demo data is synthetic and thrown away with the process.
    return Vault(Keyring.from_masters({"demo": generate_key()}, "demo"))


async def run_demo(
    *, host: str = "127.0.0.1", port: int = 8080, speed: float = 1.0,
    data_dir: Path | None = None, every_s: float = 12.0,
    ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    data_dir = data_dir or ROOT / "var" / "demo"
    data_dir.mkdir(parents=True, exist_ok=True)
    users = demo_users()
    sim = await start_demo_pbx(users, speed)
    center = CallCenter(demo_settings(sim, data_dir, host, port), vault=demo_vault())
    stream = CallerStream(sim, every_s=every_s)
    runner = None
    try:
        await center.start()
        await add_demo_users(center, users)
        runtime = center.nodes["main"]
        await runtime.node.synced.wait()
        assert runtime.agents is not None
        for user in users:
            if user.simulated:
                await runtime.agents.login(user.username)
        # Plain HTTP on localhost: the cookie cannot be Secure here.
        runner = await serve_web(center, host=host, port=port, cookie_secure=False)
        stream.start()
        print_banner(host, port, users)
        if ready is not None:
            ready.set()
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await stream.stop()
        if runner is not None:
            await runner.cleanup()
        await center.stop()
        await sim.stop()
    return {"callers": stream.placed}


async def add_demo_users(center: CallCenter, users: list[DemoUser]) -> None:
    for user in users:
        if await center.accounts.find(user.username) is None:
            await center.accounts.add(
                user.username, display_name=user.display_name, role=user.role,
                endpoint=f"PJSIP/{user.endpoint}", password=user.password, skills=user.skills,
            )


def print_banner(host: str, port: int, users: list[DemoUser]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"1090 helpline demo: http://{host}:{port}/login")
    for column in ("user", "password", "role", "softphone"):
        table.add_column(column)
    for user in users:
        note = "" if user.simulated else "  <- sign in as this one"
        table.add_row(user.username, user.password, user.role, f"PJSIP/{user.endpoint}{note}")
    Console().print(table)
    Console().print("Synthetic callers arrive every few seconds. Ctrl-C stops the demo.")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole helpline on this machine with a simulated PBX"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time speed-up")
    parser.add_argument("--every", type=float, default=12.0,
                        help="mean seconds between synthetic callers (simulated time)")
    parser.set_defaults(handler=_main)


def _main(args: Any) -> int:
    from callcenter.logs import configure_logging

    configure_logging("WARNING", json=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(host=args.host, port=args.port, speed=args.speed,
                             every_s=args.every))
    return 0
