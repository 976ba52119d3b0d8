"""Channels and bridges of the simulated PBX, and the waits a channel's thread makes.

A channel whose dialplan runs has one asyncio task (Asterisk's PBX thread).
Everything that interrupts it — the far end hanging up, an AMI ``Hangup``,
``TIMEOUT(absolute)`` — wakes the one wait it is in through :meth:`Channel.wait`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clock import Timer
    from .core import PBXCore

STATE_DESC = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
}
DOWN, RING, RINGING, UP = 0, 4, 5, 6

CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}


class ChannelInterrupted(Exception):
    """The channel's current application has to stop."""


class ChannelHungUp(ChannelInterrupted):
    pass


class ChannelTimedOut(ChannelInterrupted):
    """TIMEOUT(absolute) expired: the dialplan goes on at ``T``."""


class ChannelRedirected(ChannelInterrupted):
    """AMI Redirect: the dialplan goes on at a new place."""


@dataclass
class Bridge:
    """A bridge as stasis describes it in every Bridge* event.

    ``owner`` is the channel whose PBX thread waits in the bridge (the caller in
    Queue or Dial); the other members are dialled legs or Local halves with no
    thread of their own. ``watcher``, when set, is told of a member hanging up
    instead of the owner (an attended transfer owns the bridges it moves
    channels between).
    """

    uniqueid: str
    channels: list[Channel] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    bridge_type: str = "basic"
    creator: str = "<unknown>"
    name: str = "<unknown>"
    #: a fixed technology (softmix for ConfBridge); None: a smart basic bridge.
    technology: str | None = None
    owner: Channel | None = None
    watcher: Callable[[Channel], None] | None = None
    destroyed: bool = False

    def current_technology(self) -> str:
        if self.technology is not None:
            return self.technology
        # a basic bridge is "smart": it goes multimix when a third party joins
        return "softmix" if len(self.channels) > 2 else "simple_bridge"

    def headers(self, count: int | None = None, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (prefix + "BridgeUniqueid", self.uniqueid),
            (prefix + "BridgeType", self.bridge_type),
            (prefix + "BridgeTechnology", self.current_technology()),
            (prefix + "BridgeCreator", self.creator),
            (prefix + "BridgeName", self.name),
            (prefix + "BridgeNumChannels", str(len(self.channels) if count is None else count)),
            (prefix + "BridgeVideoSourceMode", "none"),
        ]


class Channel:
    """One call leg, with the snapshot fields Asterisk puts in every channel event."""

    def __init__(
        self,
        core: PBXCore,
        name: str,
        uniqueid: str,
        *,
        tech: str,
        resource: str,
        state: int,
        caller_num: str,
        caller_name: str,
        context: str,
        exten: str,
        priority: int = 1,
        linkedid: str | None = None,
    ) -> None:
        self.core = core
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = linkedid or uniqueid
        self.tech = tech
        self.resource = resource
        self.state = state
        self.caller_num = caller_num
        self.caller_name = caller_name
        self.conn_num = ""
        self.conn_name = ""
        self.language = "en"
        self.accountcode = ""
        self.context = context
        self.exten = exten
        self.priority = priority
        self.dnid = exten
        self.variables: dict[str, str] = {}
        self.app = ""
        self.appdata = ""
        self.created = core.clock.now()
        self.answered_at: float | None = None
        self.bridge: Bridge | None = None
        self.pbx_task: asyncio.Task[None] | None = None
        self.soft_hangup = False
        self.remote_hangup = False
        self.hangup_cause = 0
        self.tech_cause: int | None = None
        self.gone = False
        self.gone_event = asyncio.Event()
        self.answered_event = asyncio.Event()
        self.timeout_handle: Timer | None = None
        self.redirect_to: tuple[str, str, int] | None = None
        # AsyncAGI: commands queued by AMI (command, CommandID) and whether
        # the channel is inside AGI(agi:async) right now.
        self.agi_queue: deque[tuple[str, str | None]] = deque()
        self.in_async_agi = False
        self.agi_wakeup: asyncio.Event = asyncio.Event()
        self.local_peer: Channel | None = None
        self.local_half = 0
        self.mixmonitor: str | None = None
        self.on_dtmf_listen: asyncio.Future[str] | None = None
        self._waiter: asyncio.Future[str | None] | None = None
        self._waiter_digits = False
        self._digits: deque[str] = deque()
        self._interrupt: ChannelInterrupted | None = None
        #: being rung by Dial/Queue/Originate (no thread of its own yet).
        self.in_dial = False
        #: SoftHangupRequest already sent (Hangup app, AMI Hangup).
        self.softhangup_sent = False
        #: the channel whose thread owns the bridge this (dialled) channel is in.
        self.bridge_owner: Channel | None = None
        self.gosub_stack: list[tuple[str, str, int]] = []
        #: caller id a Local half takes over from the party its twin reached.
        self.pending_callerid: tuple[str, str] | None = None
        #: seconds the answering phone talks before hanging up (set on answer).
        self.talk_time: float | None = None
        #: told when a prompt that reads digits starts (a synthetic caller listens).
        self.prompt_listener: Callable[[Channel, str], None] | None = None
        #: what Dial/Queue/Originate asked for (``agent1``, ``5550100@trunk``).
        self.dialed = resource
        #: DTMF transfer features the bridge gives this channel (Queue/Dial ``t``/``T``).
        self.can_transfer = False
        #: the attended transfer this channel is the transferer of (transfers.py).
        self.transfer: object | None = None
        #: DTMF digits collected while matching a feature code.
        self.feature_digits = ""

    # -- snapshot -------------------------------------------------------------

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state)),
            (prefix + "ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (prefix + "CallerIDNum", self.caller_num or "<unknown>"),
            (prefix + "CallerIDName", self.caller_name or "<unknown>"),
            (prefix + "ConnectedLineNum", self.conn_num or "<unknown>"),
            (prefix + "ConnectedLineName", self.conn_name or "<unknown>"),
            (prefix + "Language", self.language),
            (prefix + "AccountCode", self.accountcode),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]

    @property
    def endpoint(self) -> str:
        """``PJSIP/agent1`` for ``PJSIP/agent1-0000000a`` (the device)."""
        return f"{self.tech}/{self.resource}"

    # -- interruption and waits ---------------------------------------------------

    def interrupt(self, exc: ChannelInterrupted) -> None:
        """Stop whatever the channel waits for (hangup, timeout, redirect)."""
        if isinstance(exc, ChannelHungUp):
            self.soft_hangup = True
        if self._interrupt is None or isinstance(exc, ChannelHungUp):
            self._interrupt = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.agi_wakeup.set()

    def check(self) -> None:
        """Raise the pending interruption, if any (and clear a non-hangup one)."""
        exc = self._interrupt
        if exc is None:
            return
        if not isinstance(exc, ChannelHungUp):
            self._interrupt = None
        raise exc

    def clear_interrupt(self) -> None:
        if not self.soft_hangup:
            self._interrupt = None

    async def wait(self, seconds: float | None, *, digits: bool = False) -> str | None:
        """Wait ``seconds`` (None: forever); with ``digits`` return early on a DTMF digit."""
        self.check()
        if digits and self._digits:
            return self._digits.popleft()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str | None] = loop.create_future()
        self._waiter = fut
        self._waiter_digits = digits
        handle = None
        if seconds is not None:
            handle = self.core.clock.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None
            self._waiter_digits = False
            if self._interrupt is not None and not isinstance(self._interrupt, ChannelHungUp):
                # delivered through the future; do not raise it twice
                if fut.done() and fut.exception() is self._interrupt:
                    self._interrupt = None

    def deliver_digit(self, digit: str) -> None:
        """A DTMF digit ended: whoever reads digits gets it, otherwise it is dropped."""
        waiter = self._waiter
        if waiter is not None and self._waiter_digits and not waiter.done():
            waiter.set_result(digit)
        elif self._waiter_digits:
            self._digits.append(digit)

    def flush_digits(self) -> None:
        self._digits.clear()
