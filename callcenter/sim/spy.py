"""ChanSpy() and the audio-path model: who hears whom on the simulated PBX.

From apps/app_chanspy.c: ``ChanSpy([chanprefix][,options])`` answers the
spying channel, picks a channel whose name starts with ``chanprefix`` (case
insensitive; with ``u`` the argument is a full channel name or a uniqueid),
never itself, beeps unless ``q``, raises ``ChanSpyStart`` (Spyer*, Spyee*
snapshots), and spies until the spied-on channel hangs up, the spy presses
``*`` or hangs up; then ``ChanSpyStop``. With ``E`` the application ends when
the spied-on channel hangs up; with ``S`` when there is nothing left to spy on;
otherwise it looks for another channel (every second here).

Modes, and the audio each gives (``o``: the spy hears only the spied-on
channel; ``W``: private whisper, the spy hears nothing):

* spy (default, ``q``): the spy hears the agent and everyone the agent hears;
  nobody hears the spy;
* whisper (``w``): as spy, and the agent hears the spy; the caller does not;
* barge (``B``): as spy, and the agent and everyone bridged with her hear the spy.

With ``d`` the spy's DTMF switches modes: ``4`` spy, ``5`` whisper, ``6`` barge.

:func:`Spying.audio_paths` models the media: parties in one bridge hear each
other, a Local channel pair passes audio between the bridges of its halves, a
party alone in a bridge (on hold) hears only music, and spies add the paths
above. Paths are between channels that are not Local halves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .channels import UP, Channel, ChannelInterrupted
from .dialplan import split_args

if TYPE_CHECKING:
    from .core import PBXCore

SPY, WHISPER, BARGE = "spy", "whisper", "barge"
_DTMF_MODES = {"4": SPY, "5": WHISPER, "6": BARGE}


class SpyeeLeft(ChannelInterrupted):
    """The spied-on channel hung up."""


@dataclass
class Spy:
    spyer: Channel
    spyee: Channel
    mode: str
    #: ``o``: the spy hears only the spied-on channel, not its peers.
    only_spyee: bool = False
    #: ``W``: private whisper; the spy hears nothing.
    deaf: bool = False
    modes_seen: list[str] = field(default_factory=list)


def parse_options(text: str) -> set[str]:
    """ChanSpy option letters (arguments in parentheses are dropped)."""
    letters: set[str] = set()
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and ch.isalpha():
            letters.add(ch)
    return letters


class Spying:
    def __init__(self, core: PBXCore) -> None:
        self.core = core
        #: active spies by spying channel name.
        self.active: dict[str, Spy] = {}

    # -- the application ------------------------------------------------------------------

    async def app(self, chan: Channel, data: str) -> str:
        from .core import AppResult

        core = self.core
        args = split_args(data)
        prefix = args[0].strip() if args else ""
        options = parse_options(args[1]) if len(args) > 1 else set()
        mode = BARGE if "B" in options else WHISPER if options & {"w", "W"} else SPY
        if chan.state != UP:
            core.set_state(chan, UP)
        while True:
            spyee = self._find(chan, prefix, options)
            if spyee is None:
                if "S" in options:
                    return AppResult.NEXT
                await chan.wait(1.0)
                continue
            if "q" not in options:
                await chan.wait(core.sound_seconds("beep"))
                if spyee.gone:
                    continue
            mode = await self._spy(chan, spyee, mode, options)
            if "E" in options and spyee.gone:
                return AppResult.NEXT

    def _find(self, chan: Channel, prefix: str, options: set[str]) -> Channel | None:
        candidates = sorted(self.core.channels.values(), key=lambda c: c.created)
        for other in candidates:
            if other is chan or other.soft_hangup or other.gone:
                continue
            if "u" in options:
                if prefix and prefix not in (other.name, other.uniqueid):
                    continue
            elif not other.name.lower().startswith(prefix.lower()):
                continue
            if "b" in options and other.bridge is None:
                continue
            return other
        return None

    async def _spy(self, chan: Channel, spyee: Channel, mode: str, options: set[str]) -> str:
        core = self.core
        spy = Spy(chan, spyee, mode, only_spyee="o" in options, deaf="W" in options)
        spy.modes_seen.append(mode)
        self.active[chan.name] = spy
        core.emit("ChanSpyStart", "call,all", [*chan.snapshot("Spyer"), *spyee.snapshot("Spyee")])

        def spyee_hung_up(gone: Channel) -> None:
            if gone is spyee:
                chan.interrupt(SpyeeLeft())

        core.on_hangup.append(spyee_hung_up)
        try:
            while True:
                try:
                    digit = await chan.wait(None, digits=True)
                except SpyeeLeft:
                    chan.clear_interrupt()
                    break
                if digit is None:
                    continue
                if "d" in options and digit in _DTMF_MODES:
                    spy.mode = _DTMF_MODES[digit]
                    spy.deaf = False
                    spy.modes_seen.append(spy.mode)
                elif digit == "*":
                    break
        finally:
            core.on_hangup.remove(spyee_hung_up)
            self.active.pop(chan.name, None)
            core.emit(
                "ChanSpyStop", "call,all", [*chan.snapshot("Spyer"), *spyee.snapshot("Spyee")]
            )
        return spy.mode

    # -- audio paths ------------------------------------------------------------------------

    def audio_paths(self) -> set[tuple[str, str]]:
        """(listener, speaker) channel names for every audio path on the PBX now."""
        core = self.core
        parent: dict[str, str] = {}

        def find(name: str) -> str:
            while parent.setdefault(name, name) != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        def union(a: str, b: str) -> None:
            parent[find(a)] = find(b)

        live = {c.name: c for c in core.channels.values() if not c.gone}
        for bridge in core.bridges.values():
            members = [c.name for c in bridge.channels if c.name in live]
            for name in members[1:]:
                union(members[0], name)
        for chan in live.values():
            peer = chan.local_peer
            if peer is not None and peer.name in live:
                union(chan.name, peer.name)
        groups: dict[str, list[str]] = {}
        for name, chan in live.items():
            if chan.tech != "Local" and chan.bridge is not None:
                groups.setdefault(find(name), []).append(name)
        paths: set[tuple[str, str]] = set()
        for names in groups.values():
            for listener in names:
                for speaker in names:
                    if listener != speaker:
                        paths.add((listener, speaker))
        for spy in self.active.values():
            s, a = spy.spyer.name, spy.spyee.name
            peers = {speaker for listener, speaker in paths if listener == a}
            if not spy.deaf:
                paths.add((s, a))
                if not spy.only_spyee:
                    paths.update((s, p) for p in peers if p != s)
            if spy.mode in (WHISPER, BARGE):
                paths.add((a, s))
            if spy.mode == BARGE:
                paths.update((p, s) for p in peers if p != s)
        return paths
