"""Synthetic callers and agent softphones that drive the simulated PBX.

A :class:`Caller` follows a :class:`CallerScript`: she dials, presses digits at
given times or in answer to each prompt, waits in the queue as long as her
patience lasts, talks for a while and hangs up. An :class:`AgentPhone` is the
softphone on an agent's PJSIP endpoint: it answers after a delay, may refuse
(busy) or not answer, and ends the call after a talk time. Both draw from a
seeded random generator, so a scenario replays identically.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .channels import Channel

if TYPE_CHECKING:
    from .core import PBXCore


@dataclass
class CallerScript:
    exten: str = "1090"
    endpoint: str = "caller"
    caller_num: str | None = None
    caller_name: str | None = None
    #: (seconds after the call starts, digits) pressed regardless of prompts.
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    #: digits pressed in answer to each prompt (AGI GET DATA), in order;
    #: "" stays silent on that prompt.
    prompt_answers: list[str] = field(default_factory=list)
    #: how long after a prompt starts she presses (seconds).
    reaction: float = 1.5
    #: seconds waiting in a queue before she gives up (None: never).
    patience: float | None = None
    #: seconds of conversation before she hangs up (None: the agent ends it).
    talk_time: float | None = None
    #: hard limit on the whole call (None: none).
    max_duration: float | None = None
    #: channel variables the trunk sets before the dialplan runs.
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class CallOutcome:
    """What happened to one call, from the events the PBX emitted."""

    channel: str = ""
    uniqueid: str = ""
    joined: list[str] = field(default_factory=list)
    connected_to: str | None = None
    abandoned: bool = False
    queue_status: str = ""
    hangup_cause: int | None = None
    started: float = 0.0
    ended: float | None = None

    @property
    def result(self) -> str:
        if self.connected_to is not None:
            return "answered"
        if self.abandoned:
            return "abandoned"
        if self.queue_status:
            return self.queue_status.lower()
        return "ended"


class Caller:
    """One synthetic caller on the simulated PBX."""

    def __init__(
        self, core: PBXCore, script: CallerScript, rng: random.Random | None = None
    ) -> None:
        self.core = core
        self.script = script
        self.rng = rng or random.Random(0)
        self.outcome = CallOutcome()
        self.done = asyncio.Event()
        self.chan: Channel | None = None
        self._prompts = 0
        self._timers: list[object] = []

    def start(self) -> Channel:
        core = self.core
        chan = core.inbound_call(
            self.script.endpoint,
            self.script.exten,
            caller_num=self.script.caller_num,
            caller_name=self.script.caller_name,
            variables=self.script.variables,
        )
        self.chan = chan
        core.channel_listeners[chan.uniqueid] = self._on_event
        chan.prompt_listener = self._on_prompt
        self.outcome.channel, self.outcome.uniqueid = chan.name, chan.uniqueid
        self.outcome.started = core.clock.now()
        for at, digits in self.script.dtmf:
            self._later(at, lambda d=digits: self._press(d))
        if self.script.max_duration is not None:
            self._later(self.script.max_duration, self.hang_up)
        return chan

    def _later(self, seconds: float, action: object) -> None:
        self._timers.append(self.core.clock.call_later(seconds, action))  # type: ignore[arg-type]

    def _press(self, digits: str) -> None:
        if self.chan is not None and not self.chan.gone and digits:
            self.core.spawn(self.core.send_dtmf(self.chan, digits))

    def hang_up(self) -> None:
        if self.chan is not None and not self.chan.gone:
            self.core.remote_hangup(self.chan)

    def _on_prompt(self, chan: Channel, prompt: str) -> None:
        answers = self.script.prompt_answers
        if self._prompts < len(answers):
            digits = answers[self._prompts]
            self._later(self.script.reaction, lambda: self._press(digits))
        self._prompts += 1

    def _on_event(self, name: str, pairs: list[tuple[str, str]]) -> None:
        headers = dict(pairs)
        if name == "QueueCallerJoin":
            self.outcome.joined.append(headers.get("Queue", ""))
            if self.script.patience is not None:
                self._later(self.script.patience, self._give_up)
        elif name == "AgentConnect":
            self.outcome.connected_to = headers.get("Interface")
            if self.script.talk_time is not None:
                self._later(self.script.talk_time, self.hang_up)
        elif name == "QueueCallerAbandon":
            self.outcome.abandoned = True
        elif name == "VarSet" and headers.get("Variable") == "QUEUESTATUS":
            self.outcome.queue_status = headers.get("Value", "")
        elif name == "Hangup":
            self.outcome.hangup_cause = int(headers.get("Cause", "0"))
            self.outcome.ended = self.core.clock.now()
            for timer in self._timers:
                timer.cancel()  # type: ignore[attr-defined]
            if self.chan is not None:
                self.core.channel_listeners.pop(self.chan.uniqueid, None)
            self.done.set()

    def _give_up(self) -> None:
        if self.outcome.connected_to is None:
            self.hang_up()


class AgentPhone:
    """The softphone on an agent's endpoint, with seeded random behaviour.

    Duck-types :class:`~callcenter.sim.config.PhoneBehaviour`: the core reads
    ``registered``, ``busy`` (per call), ``decide(channel)`` (answer delay or
    None) and ``hangup_after`` (talk time, per call).
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        answer_delay: tuple[float, float] = (1.0, 4.0),
        no_answer_rate: float = 0.0,
        busy_rate: float = 0.0,
        talk_time: tuple[float, float] | None = (60.0, 300.0),
        registered: bool = True,
    ) -> None:
        self.rng = rng
        self.answer_delay_range = answer_delay
        self.no_answer_rate = no_answer_rate
        self.busy_rate = busy_rate
        self.talk_time = talk_time
        self.registered = registered
        self.answer_after: float | None = answer_delay[0]
        self.calls_offered = 0

    @property
    def busy(self) -> bool:
        return self.busy_rate > 0 and self.rng.random() < self.busy_rate

    def decide(self, chan: Channel) -> float | None:
        self.calls_offered += 1
        if self.no_answer_rate and self.rng.random() < self.no_answer_rate:
            return None
        low, high = self.answer_delay_range
        return self.rng.uniform(low, high)

    @property
    def hangup_after(self) -> float | None:
        if self.talk_time is None:
            return None
        return self.rng.uniform(*self.talk_time)
