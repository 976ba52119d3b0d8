"""A manager client that vanishes mid-call leaves the simulated PBX consistent:
the call goes on, and a new client's snapshot matches the PBX's state."""

from __future__ import annotations

from callcenter.ami import AMIClient
from callcenter.ami.client import Backoff
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import helpline, until


def client_for(line) -> AMIClient:  # type: ignore[no-untyped-def]
    user = line.sim.config.users[0]
    return AMIClient(
        "127.0.0.1", line.sim.port, user.username, user.secret, "md5",
        ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05),
    )


async def test_client_disconnecting_mid_call_leaves_the_pbx_consistent(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One", answer_after=1)]) as line:
        first = client_for(line)
        await first.connect()
        await first.send_action(
            "QueueAdd", Queue="wpl-fallback", Interface="PJSIP/agent1", MemberName="Agent One"
        )
        # No backend heartbeat: the call takes the fallback path to the agent.
        caller = line.call([])
        await until(lambda: caller.outcome.connected_to, within=20)
        await first.close()  # vanishes while the call is up
        await until(lambda: len(line.sim.sessions) == 0, within=5)

        second = client_for(line)
        await second.connect()
        channels = [
            f for f in await second.send_list_action("CoreShowChannels")
            if f.name == "CoreShowChannel"
        ]
        live = {c.name for c in line.sim.core.channels.values() if not c.gone}
        assert {f["Channel"] for f in channels} == live
        assert len(channels) == 2  # her leg and the agent's, bridged
        assert len({f["BridgeId"] for f in channels}) == 1 and channels[0]["BridgeId"]
        members = [
            f for f in await second.send_list_action("QueueStatus", Queue="wpl-fallback")
            if f.name == "QueueMember"
        ]
        assert [(m["Location"], m["InCall"]) for m in members] == [("PJSIP/agent1", "1")]

        caller.hang_up()
        await until(lambda: caller.done.is_set(), within=10)
        await until(lambda: not any(not c.gone for c in line.sim.core.channels.values()),
                    within=10)
        after = [
            f for f in await second.send_list_action("CoreShowChannels")
            if f.name == "CoreShowChannel"
        ]
        assert after == []
        await second.close()
