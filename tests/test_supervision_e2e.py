"""Issue 8 end to end: a supervisor listens to, whispers to and barges into a call.

``CallCenter`` as ``app.py`` builds it, on the simulated PBX running the shipped
``[wpl-supervise]`` dialplan over real AMI/TCP: the wallboard's HTTP calls ring the
supervisor's own softphone (``agent9`` here), which runs ChanSpy on the agent's channel.
Who hears whom comes from the simulator's audio-path model of apps/app_chanspy.c.
"""

from __future__ import annotations

import pytest

from callcenter.store import Store
from tests.support.helpline import until
from tests.test_transfers_e2e import Rig, rig

TALK = {("carrier", "agent1"), ("agent1", "carrier")}
#: What the supervisor's phone (agent9) adds to the call in each mode (app_chanspy.c):
#: she always hears both sides; whisper lets only the agent hear her, barge both.
HEARS_BOTH = {("agent9", "agent1"), ("agent9", "carrier")}
MODE_PATHS = {
    "listen": HEARS_BOTH,
    "whisper": HEARS_BOTH | {("agent1", "agent9")},
    "barge": HEARS_BOTH | {("agent1", "agent9"), ("carrier", "agent9")},
}


async def _on_a_call(r: Rig) -> None:
    await r.ring_in()
    await r.answered_by("agent1")
    await until(lambda: r.paths() == TALK, within=10)


async def _audit(r: Rig) -> list[tuple[str, dict[str, object]]]:
    await r.center.nodes["main"].extras["supervision"].settled()
    rows = await r.center.audit.entries(subject="agent:asha")
    return [(row.action, row.details) for row in reversed(rows)
            if row.action.startswith("supervision.")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
async def test_each_mode_gives_the_supervisor_asterisks_audio_path_and_is_audited(
    migrated_store: Store, mode: str
) -> None:
    async with rig(migrated_store) as r:
        await _on_a_call(r)
        sunita = r.desks["sunita"]
        status, body = await sunita.call("POST", "/api/supervision",
                                         {"agent": "asha", "mode": mode})
        assert status == 202, body
        await until(lambda: r.paths() == TALK | MODE_PATHS[mode], within=15)
        status, body = await sunita.call("GET", "/api/supervision")
        assert body["session"]["mode"] == mode and body["session"]["connected"] is True

        status, body = await sunita.call("DELETE", "/api/supervision")
        assert status == 200, body
        await until(lambda: r.paths() == TALK, within=10)
        assert not r.live("agent9")
        assert [(a, d["mode"]) for a, d in await _audit(r)] == [
            ("supervision.start", mode), ("supervision.end", mode),
        ]


@pytest.mark.timeout(120)
async def test_switching_modes_mid_call_keeps_her_phone_up_and_audits_each_switch(
    migrated_store: Store,
) -> None:
    async with rig(migrated_store) as r:
        await _on_a_call(r)
        sunita, asha = r.desks["sunita"], r.desks["asha"]
        # An agent cannot listen in; a supervisor cannot switch a session she has not got.
        status, body = await asha.call("POST", "/api/supervision",
                                       {"agent": "asha", "mode": "listen"})
        assert status == 403, body
        status, body = await sunita.call("PUT", "/api/supervision/mode", {"mode": "barge"})
        assert (status, body["error"]["code"]) == (409, "no_supervision")

        status, body = await sunita.call("POST", "/api/supervision",
                                         {"agent": "asha", "mode": "listen"})
        assert status == 202, body
        await until(lambda: r.paths() == TALK | MODE_PATHS["listen"], within=15)
        phone = next(n for n in r.line.sim.core.channels if n.startswith("PJSIP/agent9-"))
        for mode in ("whisper", "barge", "listen"):
            status, body = await sunita.call("PUT", "/api/supervision/mode", {"mode": mode})
            assert status == 200, body
            await until(lambda mode=mode: r.paths() == TALK | MODE_PATHS[mode], within=15)
            assert phone in r.line.sim.core.channels  # the same call on her phone
        # The agent's call ends: ChanSpy's E option ends the session, audited.
        caller = r.her_call().caller_channel
        r.hang_up(caller)
        await until(lambda: not r.live("agent9"), within=15)
        await until(lambda: r.center.nodes["main"].extras["supervision"].sessions() == [],
                    within=10)
        audit = await _audit(r)
        assert [a for a, _ in audit] == [
            "supervision.start", "supervision.mode", "supervision.mode", "supervision.mode",
            "supervision.end",
        ]
        assert [(d["from"], d["to"]) for a, d in audit if a == "supervision.mode"] == [
            ("listen", "whisper"), ("whisper", "barge"), ("barge", "listen"),
        ]
        assert audit[-1][1]["reason"] == "hangup"
