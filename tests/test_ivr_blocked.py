"""Callers blocked as abusive are turned away at the IVR, except a woman in danger."""

from __future__ import annotations

from datetime import timedelta

from callcenter.cases.audit import AuditLog
from callcenter.cases.service import CaseService
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import helpline, until

NUMBER = "9812345670"


async def test_blocked_caller_hears_the_notice_unless_she_presses_danger(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        cases = CaseService(migrated_store, line.vault, AuditLog(migrated_store))
        backend = await line.start_backend(is_blocked=cases.is_blocked)
        await line.wait_heartbeat()
        await line.add_member("wpl-emergency", "agent1", paused=True)
        await line.add_member("wpl-general-hi", "agent1", paused=True)

        # Her first call: an ordinary one, which gives her an identity.
        first = line.call(["", "1", "2", "1"], number=NUMBER)
        await until(lambda: first.outcome.joined, within=30)
        first.hang_up()
        await until(lambda: first.done.is_set())
        identity_id = await backend.ivr._identities.remember(
            line.vault.admit_caller_id(NUMBER)
        )
        await cases.block_caller(identity_id, reason="abusive calls to agents, repeated",
                                 blocked_by="sunita", period=timedelta(days=7))

        # Blocked and not in danger: notice, then the call ends; no queue.
        turned_away = line.call(["", "1", "2", "1"], number=NUMBER)
        await until(lambda: turned_away.done.is_set(), within=30)
        assert turned_away.outcome.joined == []
        assert backend.ivr.stats.sessions_blocked == 1

        # Blocked but in danger: she still reaches a person, flagged.
        danger = line.call(["1"], number=NUMBER)
        await until(lambda: danger.outcome.joined, within=30)
        assert danger.outcome.joined == ["wpl-emergency"]
        flags = [
            h["Value"] for h in line.named("VarSet")
            if h["Uniqueid"] == danger.outcome.uniqueid and h["Variable"] == "WPL_FLAGS"
        ]
        assert flags and {"danger", "blocked"} <= set(flags[-1].split(","))
        danger.hang_up()

        # Another caller is not affected by her block.
        other = line.call(["", "1", "2", "1"])
        await until(lambda: other.outcome.joined, within=30)
        assert other.outcome.joined == ["wpl-general-hi"]
        other.hang_up()
