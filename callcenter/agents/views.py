"""What the agents domain shows the rest of the system (web console, wallboard).

The contract between ``callcenter.agents.service`` (which keeps agents' state
in step with the PBX) and ``callcenter.web`` (which shows it). Plain frozen
dataclasses, JSON-friendly through :func:`dataclasses.asdict`; no caller number
ever appears here: the caller is her vault token (``T-...``/``W-...``) or a
fixed label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

AgentStateName = Literal[
    "logged_out", "available", "ringing", "on_call", "wrap_up", "paused"
]
SoftphoneState = Literal["registered", "unreachable", "unregistered", "unknown"]


@dataclass(frozen=True, slots=True)
class CallCard:
    """The call an agent is being offered or is on, as her console shows it."""

    node: str
    linkedid: str
    caller: str  # token or fixed label, never a number
    queue: str | None
    category: str | None
    language: str | None
    risk: str | None
    flags: tuple[str, ...]
    callback_ok: bool | None
    ivr_path: str | None
    offered_at: float | None  # PBX clock
    answered_at: float | None = None


@dataclass(frozen=True, slots=True)
class EarlierContact:
    """A previous call (and, later, case) of the same caller, for the screen-pop."""

    linkedid: str
    started_at: float | None
    outcome: str | None
    category: str | None
    case_reference: str | None = None


@dataclass(frozen=True, slots=True)
class ScreenPop:
    """Sent to the console of the rung agent only.

    ``phase="ringing"`` at AgentCalled, so she sees the risk and the ``silent``
    flag before she answers; ``phase="connected"`` at AgentConnect, with her
    earlier calls and cases; ``phase="ended"`` when the caller's leg is gone.
    """

    username: str
    phase: Literal["ringing", "connected", "ended"]
    card: CallCard
    earlier: tuple[EarlierContact, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentView:
    username: str
    display_name: str
    role: str
    endpoint: str
    state: AgentStateName
    #: Pause reason (break, meal, training, meeting, recovery, wrapup, autopause,
    #: or the PBX's own reason when someone else paused her).
    reason: str | None
    since: float  # epoch seconds, when she entered ``state``
    queues: tuple[str, ...]
    paused_queues: tuple[str, ...]
    softphone: SoftphoneState
    wrap_up_deadline: float | None = None
    call: CallCard | None = None
    rostered: bool = False


@dataclass(frozen=True, slots=True)
class AgentProblem:
    """A refused agent action, with a stable code the web layer returns."""

    code: str
    message: str


AgentListener = Callable[[AgentView], None]
PopListener = Callable[[ScreenPop], None]


class AgentDirectory(Protocol):
    """What the web layer needs from the agents service."""

    async def login(self, username: str) -> AgentView: ...

    async def logout(self, username: str) -> AgentView: ...

    async def pause(self, username: str, reason: str) -> AgentView: ...

    async def unpause(self, username: str) -> AgentView: ...

    async def wrap_up_done(self, username: str) -> AgentView: ...

    def view(self, username: str) -> AgentView | None: ...

    def views(self) -> list[AgentView]: ...

    def pause_reasons(self) -> tuple[str, ...]: ...

    def on_change(self, listener: AgentListener) -> None: ...

    def on_screen_pop(self, listener: PopListener) -> None: ...
