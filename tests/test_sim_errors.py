"""Bad actions get Asterisk's own error replies from the simulator, through the real client.

The messages are app_queue.c's and manager.c's (Asterisk 22), word for word.
"""

from __future__ import annotations

import pytest

from callcenter.ami import AMIActionError, AMIClient
from callcenter.ami.client import Backoff
from callcenter.sim import SimPBX


@pytest.mark.parametrize(
    ("action", "headers", "message"),
    [
        ("QueueAdd", {"Queue": "nosuchqueue", "Interface": "PJSIP/agent3"},
         "Unable to add interface to queue: No such queue"),
        ("QueueRemove", {"Queue": "nosuchqueue", "Interface": "PJSIP/agent1"},
         "Unable to remove interface from queue: No such queue"),
        ("QueueAdd", {"Interface": "PJSIP/agent3"}, "'Queue' not specified."),
        ("QueueAdd", {"Queue": "counselors"}, "'Interface' not specified."),
        ("QueueRemove", {"Queue": "counselors"}, "Need 'Queue' and 'Interface' parameters."),
        ("QueuePause", {"Interface": "PJSIP/agent1"}, "Need 'Interface' and 'Paused' parameters."),
        ("QueuePause", {"Interface": "PJSIP/nosuch", "Paused": "true"}, "Interface not found"),
        ("Hangup", {}, "No channel specified"),
        ("Hangup", {"Channel": "PJSIP/nosuch-00000000"}, "No such channel"),
        ("Setvar", {"Channel": "PJSIP/nosuch-00000000", "Variable": "X", "Value": "1"},
         "No such channel"),
        ("Redirect", {"Channel": "PJSIP/nosuch-00000000", "Context": "lab-inbound",
                      "Exten": "600", "Priority": "1"}, "Channel does not exist: "),
        ("FooBarBaz", {}, "Invalid/unknown command"),
    ],
)
async def test_bad_actions_get_asterisks_error_replies(
    action: str, headers: dict[str, str], message: str
) -> None:
    async with SimPBX() as sim:
        client = AMIClient("127.0.0.1", sim.port, "lab", "labsecret", "md5",
                           ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05))
        async with client:
            with pytest.raises(AMIActionError) as refused:
                await client.send_action(action, headers)
            assert refused.value.message.startswith(message)
            # The session is still usable afterwards.
            assert (await client.send_action("Ping")).name == "Success"
