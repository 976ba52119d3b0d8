"""200 callers in the IVR at once are all served: routed by the IVR, none left to
the watchdog, none stuck in AsyncAGI."""

from __future__ import annotations

import pytest

from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import helpline, until

CALLERS = 200


@pytest.mark.timeout(300)
async def test_two_hundred_simultaneous_callers_are_all_routed(migrated_store: Store) -> None:
    # A slower clock than the other end-to-end tests: 200 sessions share one
    # process with the simulator, and the 30 s watchdog must not be what routes them.
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")], speed=2.0) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        for queue in ("wpl-general-hi", "wpl-general-en", "wpl-emergency", "wpl-counselling"):
            await line.add_member(queue, "agent1", paused=True)
        scripts = [["", "1", "2", "1"], ["1"], ["", "2", "4", "2"]]
        callers = [line.call(scripts[i % 3]) for i in range(CALLERS)]
        await until(lambda: all(c.outcome.joined for c in callers), within=240)
        # The hand-back's own reply can trail her QueueCallerJoin by a moment.
        await until(lambda: backend.ivr.stats.sessions_routed == CALLERS, within=30)
        assert backend.ivr.stats.sessions_failed == 0
        # None reached a queue through the watchdog or the backend-down path.
        assert not any("wpl-fallback" in c.outcome.joined for c in callers)
        assert len(backend.ivr.stats.first_command_latency) == CALLERS
        for caller in callers:
            caller.hang_up()
        await until(lambda: all(c.done.is_set() for c in callers), within=60)
