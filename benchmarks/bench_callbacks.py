"""Callback tasks dispatched per second: one scheduler instance, then two, on PostgreSQL.

    .venv/bin/python benchmarks/bench_callbacks.py [--tasks 2000] [--concurrency 16]

Each instance is its own process (as in production: the work is Python CPU per task,
so two instances in one process would share one core), started and warmed up before the
clock starts; the rate is tasks over the time until the last one is committed.

Each task is a real callback (``CallbackService.run``): claimed with ``FOR UPDATE SKIP
LOCKED``, the callback row and her sealed number loaded and opened, ``dialling`` committed
before the call (fenced), the call placed, the outcome committed with the hook writing the
callback row, all on one PostgreSQL. The call itself is an instant stand-in (the PBX's own
speed is ``bench_sim``'s subject), so the number is what the backend can dispatch.

PostgreSQL: ``CALLCENTER_BENCH_PG`` (a server URL whose role may create databases), else
the test suite's discovery (``CALLCENTER_TEST_POSTGRES_URL`` or a throwaway server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.cases.identities import IdentityStore  # noqa: E402
from callcenter.cases.vault import Keyring, Vault, generate_key  # noqa: E402
from callcenter.followups.callbacks import CallbackService, CallbackSettings  # noqa: E402
from callcenter.followups.dialler import DialResult, OutboundCall  # noqa: E402
from callcenter.followups.scheduler import Scheduler, TaskContext  # noqa: E402
from callcenter.pbx.models import CallRecord  # noqa: E402
from callcenter.store import Store  # noqa: E402
from tests.support.services import TestServices, create_database, drop_database  # noqa: E402


class InstantDialler:
    def __init__(self) -> None:
        self.placed = 0

    async def place(self, ctx: TaskContext, call: OutboundCall) -> DialResult:
        await ctx.before_call()
        self.placed += 1
        return DialResult.REACHED


async def seed(url: str, vault: Vault, tasks: int) -> None:
    store = Store.from_url(url)
    await store.migrate()
    service = CallbackService(store, vault, CallbackSettings(first_delay=timedelta(0)))
    service.bind(Scheduler(store, "seed", {}))
    identities = IdentityStore(store)
    for n in range(tasks):
        number = f"+91 9{n:09d}"
        identity = await identities.remember(vault.admit_caller_id(number))
        async with store.transaction() as session:
            record = CallRecord(
                node="bench", linkedid=f"1795327929.{n}", caller_identity_id=identity,
                caller_token=vault.token_for(number).code, category="stalking",
                outcome="abandoned_queue", callback_ok=True, started_at=datetime.now(UTC),
            )
            session.add(record)
        await service.consider(record)
    await store.close()


async def work(url: str, name: str, concurrency: int) -> None:
    """One instance (a child process): ready, wait for go, run until nothing is due."""
    vault = Vault(Keyring.from_masters({"k1": os.environ["BENCH_VAULT_KEY"]}, "k1"))
    store = Store.from_url(url)
    dialler = InstantDialler()
    service = CallbackService(store, vault, CallbackSettings(), dialler=dialler)
    scheduler = Scheduler(store, name, service.handlers(), hooks=[service.on_task_outcome],
                          concurrency=concurrency, poll_interval=0.05)
    service.bind(scheduler)
    await scheduler.claim(0)  # connect and warm up before the clock starts
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    while await scheduler.run_due():
        pass
    await store.close()
    print(f"placed {dialler.placed}", flush=True)


async def run(url: str, tasks: int, instances: int, concurrency: int) -> float:
    children: list[Any] = []
    for n in range(instances):
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", url, f"bench-{n}", str(concurrency),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        children.append(child)
    for child in children:
        assert (await child.stdout.readline()).strip() == b"ready"
    started = time.perf_counter()
    for child in children:
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    placed = 0
    for child in children:
        line = (await child.stdout.readline()).decode().split()
        placed += int(line[1])
        await child.wait()
    elapsed = time.perf_counter() - started
    assert placed == tasks, f"every callback dispatched exactly once ({placed}/{tasks})"
    return tasks / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    services = TestServices()
    try:
        server = os.environ.get("CALLCENTER_BENCH_PG") or services.postgres_url()
        os.environ["BENCH_VAULT_KEY"] = generate_key()
        vault = Vault(Keyring.from_masters({"k1": os.environ["BENCH_VAULT_KEY"]}, "k1"))
        results: dict[int, float] = {}
        for instances in (1, 2):
            url = await create_database(server, prefix="bench")
            try:
                await seed(url, vault, args.tasks)
                results[instances] = await run(url, args.tasks, instances, args.concurrency)
            finally:
                await drop_database(url)
        print(f"callback tasks dispatched per second ({args.tasks} tasks, "
              f"concurrency {args.concurrency} per instance, PostgreSQL)")
        for instances, rate in results.items():
            print(f"  {instances} instance{'s' if instances > 1 else ' '}: {rate:8.1f} /s")
    finally:
        services.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(work(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(main())
