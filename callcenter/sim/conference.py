"""ConfBridge() in the simulated dialplan, as apps/app_confbridge.c reports it over AMI.

A conference is a bridge (``BridgeType: base``, ``BridgeTechnology: softmix``,
``BridgeCreator: ConfBridge``, ``BridgeName:`` the conference) that every
member joins with her own dialplan thread. Events, as confbridge_manager.c
formats them (``Conference:`` first, then the bridge, then the channel):
``ConfbridgeStart`` when the first member creates it, ``ConfbridgeJoin``
(``Admin``, ``Muted``) before she enters the bridge, ``ConfbridgeLeave``
(``Admin``) after she left it, ``ConfbridgeEnd`` when the last one left.
Anyone may leave; the others stay in the conference until the last one goes.

Approximations: no bridge/user profiles, menus, sounds (``conf-onlyperson``,
join/leave beeps) or marked/waitmarked users; every user is an unmuted
non-admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .channels import UP, Bridge, Channel
from .dialplan import split_args

if TYPE_CHECKING:
    from .core import PBXCore


class Conferences:
    def __init__(self, core: PBXCore) -> None:
        self.core = core
        #: live conferences by name.
        self.rooms: dict[str, Bridge] = {}

    def _event(self, name: str, room: str, bridge: Bridge, extra: list[tuple[str, str]]) -> None:
        self.core.emit(name, "call,all", [("Conference", room), *bridge.headers(), *extra])

    async def app(self, chan: Channel, data: str) -> str:
        from .core import AppResult

        core = self.core
        args = split_args(data)
        room = args[0].strip() if args else ""
        if not room:
            # app_confbridge: "ConfBridge requires an argument (conference name[,options])"
            return AppResult.HANGUP
        if chan.state != UP:
            core.set_state(chan, UP)
        bridge = self.rooms.get(room)
        if bridge is None:
            bridge = core.new_bridge(
                bridge_type="base", creator="ConfBridge", name=room, technology="softmix"
            )
            self.rooms[room] = bridge
            self._event("ConfbridgeStart", room, bridge, [])
        self._event(
            "ConfbridgeJoin", room, bridge, [*chan.snapshot(), ("Admin", "No"), ("Muted", "No")]
        )
        core.bridge_enter(bridge, chan)
        try:
            await chan.wait(None)
        finally:
            core.bridge_leave(bridge, chan)
            self._event("ConfbridgeLeave", room, bridge, [*chan.snapshot(), ("Admin", "No")])
            if not bridge.channels:
                self._event("ConfbridgeEnd", room, bridge, [])
                core.bridge_destroy(bridge)
                self.rooms.pop(room, None)
        return AppResult.NEXT

    def members(self, room: str) -> list[str]:
        """Channel names in conference ``room`` now (for tests and the demo)."""
        bridge = self.rooms.get(room)
        return [c.name for c in bridge.channels] if bridge is not None else []
