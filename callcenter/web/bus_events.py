"""What the web layer carries between instances on the bus.

Behind a load balancer, the agent whose phone rings may have her console open on another
instance than the one following the PBX. These events carry the views as plain dicts
(``dataclasses.asdict`` / ``model_dump(mode="json")``): they are already what a browser
is sent, and no instance has to rebuild a dataclass it may not know the newest shape of.
None of them ever holds a caller's number: the views they carry do not have one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from callcenter.bus import BusEvent


class AgentChanged(BusEvent):
    """An agent's view (state, call card) changed."""

    topic: ClassVar[str] = "web.agent_changed"

    username: str
    view: dict[str, Any]


class ScreenPopped(BusEvent):
    """A screen-pop for the console of ``username`` only."""

    topic: ClassVar[str] = "web.screen_popped"

    username: str
    pop: dict[str, Any]


class QueuesUpdated(BusEvent):
    """The queue statistics of one PBX node, from the instance that follows it."""

    topic: ClassVar[str] = "web.queues_updated"

    node: str
    snapshot: dict[str, Any]
