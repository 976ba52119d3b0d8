"""An agent's working state, as a pure state machine, and her softphone's registration.

No I/O here. Inputs are typed transitions; each returns the new :class:`AgentState` and the
PBX intents that bring app_queue in line with it (add / remove her as a queue member, pause
or unpause her per queue with a reason). Whoever applies the intents (the agents service,
through ``callcenter.pbx``) does the talking to Asterisk.

Two kinds of input:

* **commands** (her console, a supervisor, a timer the service runs): ``Login``, ``Logout``,
  ``Pause``, ``Unpause``, ``WrapUpDone``. One that makes no sense now raises
  :class:`~callcenter.agents.errors.InvalidTransition`.
* **observations** of the PBX (``Ring``, ``Answer``, ``HangUp``, ``RingNoAnswer``,
  ``PbxPauseObserved``, ``PbxMemberGone``) and system inputs that may arrive stale
  (``WrapUpTimeout``, ``RecoveryPause``). The PBX owns member and channel state, so an
  observation is never refused: it is applied, or ignored with the reason in
  :attr:`Outcome.ignored` when it changes nothing.

Intents are not hand-written per transition: every state has a *plan* (for each of her
queues: member or not, paused or not, with which reason) and a transition's intents are the
difference between the plan before and after. The same difference, taken between what
QueueStatus reports and the plan, is what reconciliation after an AMI reconnect applies
(:func:`reconcile`).

The plan's rules, which the property tests check:

* wrap-up is a pause with reason ``wrapup``, set per queue at AgentConnect (so app_queue
  cannot ring her between the hang-up and our pause) and never in the fallback queue: that
  queue is what the dialplan uses when the backend is down, and a backend that dies during
  someone's wrap-up must not leave her unreachable there. app_queue's own ``wrapuptime``
  remains the floor in every queue;
* every pause carries a reason: one she chose from the configured list, or a system one
  (``wrapup``, ``autopause`` after a ring-no-answer, ``recovery`` after a distress call), or
  the one someone else set on the PBX;
* ``on_call`` is entered only by ``Answer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from .errors import InvalidTransition, UnknownPauseReason
from .models import FALLBACK_QUEUE

WRAPUP = "wrapup"
AUTOPAUSE = "autopause"
RECOVERY = "recovery"
# What a pause set on the PBX without a reason shows as.
PBX_PAUSE = "pbx"
DEFAULT_PAUSE_REASONS: tuple[str, ...] = ("break", "meal", "training", "meeting", RECOVERY)
SYSTEM_PAUSE_REASONS: frozenset[str] = frozenset({WRAPUP, AUTOPAUSE, RECOVERY})


class Status(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


BUSY = frozenset({Status.RINGING, Status.ON_CALL, Status.WRAP_UP})


class PauseOrigin(StrEnum):
    AGENT = "agent"  # she (or a supervisor for her) chose it from the configured list
    SYSTEM = "system"  # wrap-up, autopause, recovery after a distress call
    PBX = "pbx"  # someone paused her on the PBX directly


@dataclass(frozen=True, slots=True)
class PauseReason:
    """Why she is (or will be) paused: ``code`` goes to the PBX, ``cause`` to the screens."""

    code: str
    origin: PauseOrigin
    cause: str = ""
    #: When a wrap-up ends or a recovery pause is over (guidance: the backend does not
    #: hold her in recovery once she says she is ready).
    until: datetime | None = None
    #: A recovery pause waiting for her call to end: ``until`` is set when it starts.
    duration: timedelta | None = None

    def started(self, now: datetime) -> PauseReason:
        if self.duration is not None and self.until is None:
            return replace(self, until=now + self.duration)
        return self


@dataclass(frozen=True, slots=True)
class Policy:
    pause_reasons: tuple[str, ...] = DEFAULT_PAUSE_REASONS
    #: The backend's wrap-up; app_queue's ``wrapuptime`` (30 s in queues_1090.conf) is
    #: the floor underneath it.
    wrap_up: timedelta = timedelta(seconds=60)
    recovery: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        for reason in self.pause_reasons:
            if not reason or reason in (WRAPUP, AUTOPAUSE, PBX_PAUSE):
                raise ValueError(f"{reason!r} cannot be a pause reason agents choose")
        if self.wrap_up < timedelta(0) or self.recovery <= timedelta(0):
            raise ValueError("wrap_up must be >= 0 and recovery > 0")


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """Who the machine is about, and the queues her skills put her in."""

    username: str
    interface: str  # PJSIP/agent1001
    queues: tuple[str, ...]
    fallback: str = FALLBACK_QUEUE
    #: MemberName in queue events and queue_log (log_membername_as_agent=yes): the
    #: username, so queue_log holds no personal name.
    member_name: str = ""

    def __post_init__(self) -> None:
        if not self.member_name:
            object.__setattr__(self, "member_name", self.username)
        if len(set(self.queues)) != len(self.queues):
            raise ValueError(f"queues repeat: {self.queues}")

    def ordered(self, queues: Iterable[str]) -> tuple[str, ...]:
        chosen = set(queues)
        return tuple(q for q in self.queues if q in chosen) + tuple(
            sorted(chosen - set(self.queues))
        )


# -- state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterruptedWrapUp:
    """A wrap-up that a fallback-queue ring interrupted; she goes back to it if she does
    not answer."""

    call: str | None
    queue: str | None
    pause: PauseReason


@dataclass(frozen=True, slots=True)
class AgentState:
    status: Status
    entered_at: datetime
    #: PAUSED: why. WRAP_UP: the ``wrapup`` pause, ``until`` = the wrap-up deadline.
    pause: PauseReason | None = None
    #: RINGING / ON_CALL / WRAP_UP: the caller channel's Uniqueid, and its queue.
    call: str | None = None
    queue: str | None = None
    #: The pause she goes into when the current ring, call and wrap-up are over.
    pending: PauseReason | None = None
    #: RINGING only: the wrap-up this ring interrupted.
    interrupted: InterruptedWrapUp | None = None
    #: Queues she is a member of, as far as we know.
    members: tuple[str, ...] = ()
    #: Our pause changes not yet seen back from the PBX, oldest first: (queue, paused), so
    #: their QueueMemberPause echoes are not mistaken for someone else's change.
    awaiting: tuple[tuple[str, bool], ...] = ()

    @property
    def wrap_up_deadline(self) -> datetime | None:
        return self.pause.until if self.status is Status.WRAP_UP and self.pause else None

    @property
    def shown_reason(self) -> str | None:
        """The reason the wallboard shows next to her status, if any."""
        if self.status in (Status.PAUSED, Status.WRAP_UP) and self.pause is not None:
            pause = self.pause
            return f"{pause.code} ({pause.cause})" if pause.cause else pause.code
        return None


def logged_out(now: datetime) -> AgentState:
    return AgentState(Status.LOGGED_OUT, now)


# -- transitions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str


@dataclass(frozen=True, slots=True)
class Unpause:
    pass


@dataclass(frozen=True, slots=True)
class Ring:
    call: str
    queue: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    call: str
    queue: str = ""


@dataclass(frozen=True, slots=True)
class HangUp:
    """Her call ended (AgentComplete), or a ring ended unanswered because the caller left."""

    call: str


@dataclass(frozen=True, slots=True)
class WrapUpDone:
    call: str | None = None


@dataclass(frozen=True, slots=True)
class WrapUpTimeout:
    call: str | None = None


@dataclass(frozen=True, slots=True)
class RecoveryPause:
    """After a call flagged distress or immediate danger: time to recover before the next."""

    duration: timedelta | None = None
    call: str | None = None


@dataclass(frozen=True, slots=True)
class RingNoAnswer:
    call: str | None = None
    queue: str = ""


@dataclass(frozen=True, slots=True)
class PbxPauseObserved:
    """QueueMemberPause: she was paused or unpaused on the PBX (by us or someone else)."""

    paused: bool
    reason: str = ""
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class PbxMemberGone:
    """QueueMemberRemoved (``queue``), or she is in no queue at all (``queue`` None)."""

    queue: str | None = None


Transition = (
    Login | Logout | Pause | Unpause | Ring | Answer | HangUp | WrapUpDone | WrapUpTimeout
    | RecoveryPause | RingNoAnswer | PbxPauseObserved | PbxMemberGone
)


# -- intents ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddMemberIntent:
    queue: str
    interface: str
    member_name: str
    paused: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoveMemberIntent:
    queue: str
    interface: str


@dataclass(frozen=True, slots=True)
class PauseIntent:
    interface: str
    queues: tuple[str, ...]
    paused: bool
    reason: str = ""


Intent = AddMemberIntent | RemoveMemberIntent | PauseIntent


@dataclass(frozen=True, slots=True)
class Outcome:
    state: AgentState
    intents: tuple[Intent, ...] = ()
    #: Why an observation changed nothing (for the log); None when it was applied.
    ignored: str | None = None


# -- the plan ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuePlan:
    """How one of her queues should look on the PBX."""

    paused: bool
    reason: str = ""

    def same_as(self, other: QueuePlan) -> bool:
        # An unpaused member's reason is meaningless (app_queue clears it).
        if self.paused != other.paused:
            return False
        return not self.paused or self.reason == other.reason


UNPAUSED = QueuePlan(False)


def plan(profile: AgentProfile, state: AgentState) -> dict[str, QueuePlan]:
    """Her queues on the PBX as this state wants them: queue -> paused, reason."""
    if state.status is Status.LOGGED_OUT:
        return {}
    if state.status is Status.PAUSED:
        assert state.pause is not None
        everywhere = QueuePlan(True, state.pause.code)
        return {q: everywhere for q in state.members}
    if state.status is Status.AVAILABLE:
        return {q: UNPAUSED for q in state.members}
    # Busy: ringing, on a call or in wrap-up.
    wrapping = state.status in (Status.ON_CALL, Status.WRAP_UP) or state.interrupted is not None
    if not wrapping and state.pending is not None:
        # A ring slipped in before her pause landed: the pause still stands.
        everywhere = QueuePlan(True, state.pending.code)
        return {q: everywhere for q in state.members}
    fallback = QueuePlan(True, state.pending.code) if state.pending is not None else UNPAUSED
    if not wrapping:
        return {q: fallback if q == profile.fallback else UNPAUSED for q in state.members}
    wrap = QueuePlan(True, WRAPUP)
    return {q: fallback if q == profile.fallback else wrap for q in state.members}


def intents_between(
    profile: AgentProfile, before: Mapping[str, QueuePlan], after: Mapping[str, QueuePlan]
) -> tuple[Intent, ...]:
    """The intents that turn ``before`` into ``after``, in her queues' order."""
    intents: list[Intent] = []
    for queue in profile.ordered(set(before) - set(after)):
        intents.append(RemoveMemberIntent(queue, profile.interface))
    for queue in profile.ordered(set(after) - set(before)):
        wanted = after[queue]
        intents.append(
            AddMemberIntent(
                queue, profile.interface, profile.member_name, wanted.paused,
                wanted.reason if wanted.paused else "",
            )
        )
    changes: dict[QueuePlan, list[str]] = {}
    for queue in profile.ordered(set(before) & set(after)):
        if not before[queue].same_as(after[queue]):
            wanted = after[queue] if after[queue].paused else UNPAUSED
            changes.setdefault(wanted, []).append(queue)
    for wanted, queues in changes.items():
        intents.append(PauseIntent(profile.interface, tuple(queues), wanted.paused, wanted.reason))
    return tuple(intents)


def reconcile(
    profile: AgentProfile, state: AgentState, observed: Mapping[str, QueuePlan]
) -> tuple[Intent, ...]:
    """After a (re)connect: the intents that bring what QueueStatus showed (her queues only)
    back to what her state wants."""
    return intents_between(profile, observed, plan(profile, state))


# -- the machine ---------------------------------------------------------------------


def advance(
    profile: AgentProfile,
    policy: Policy,
    state: AgentState,
    transition: Transition,
    now: datetime,
) -> Outcome:
    """Apply one transition; pure."""
    step = _STEPS[type(transition)]
    result = step(profile, policy, state, transition, now)
    observed = transition if isinstance(transition, PbxPauseObserved) else None
    seen = (observed.queue, observed.paused) if observed and observed.queue else None
    if isinstance(result, str):
        if seen is not None and seen in state.awaiting:
            state = replace(state, awaiting=_drop_echo(state.awaiting, seen))
        return Outcome(state, (), ignored=result)
    new = result
    if new.status != state.status or new.pause != state.pause:
        new = replace(new, entered_at=now)
    # What the PBX just reported it did needs no intent: start the difference from there.
    before = plan(profile, state)
    if observed is not None and observed.queue in before:
        before[observed.queue] = QueuePlan(observed.paused, observed.reason or PBX_PAUSE)
    if isinstance(transition, PbxMemberGone):
        before = {q: p for q, p in before.items() if transition.queue not in (None, q)}
    intents = intents_between(profile, before, plan(profile, new))
    return Outcome(replace(new, awaiting=_awaiting(new, intents)), intents)


# Echoes remembered per queue; app_queue may not report a change that changed nothing, so
# an unanswered expectation must not live forever.
AWAITING_PER_QUEUE = 4


def _awaiting(state: AgentState, intents: Iterable[Intent]) -> tuple[tuple[str, bool], ...]:
    entries = list(state.awaiting)
    for intent in intents:
        if isinstance(intent, PauseIntent):
            entries.extend((queue, intent.paused) for queue in intent.queues)
    kept: list[tuple[str, bool]] = []
    for index, (queue, paused) in enumerate(entries):
        newer = sum(1 for q, _ in entries[index + 1 :] if q == queue)
        if queue in state.members and newer < AWAITING_PER_QUEUE:
            kept.append((queue, paused))
    return tuple(kept)


def _drop_echo(
    awaiting: tuple[tuple[str, bool], ...], seen: tuple[str, bool]
) -> tuple[tuple[str, bool], ...]:
    """Without the oldest expectation matching ``seen`` and the older ones of its queue
    (app_queue reported nothing for those, or they were superseded)."""
    match = awaiting.index(seen)
    return tuple(
        entry for index, entry in enumerate(awaiting)
        if entry[0] != seen[0] or index > match
    )


Step = Callable[[AgentProfile, Policy, AgentState, Transition, datetime], AgentState | str]


def _refuse(state: AgentState, what: str, message: str) -> InvalidTransition:
    return InvalidTransition(state.status.value, what, message)


def _idle(state: AgentState, pause: PauseReason | None, now: datetime) -> AgentState:
    """Out of ring / call / wrap-up: available, or into the pause waiting for her."""
    if pause is not None:
        return AgentState(Status.PAUSED, now, pause=pause.started(now), members=state.members,
                          awaiting=state.awaiting)
    return AgentState(Status.AVAILABLE, now, members=state.members, awaiting=state.awaiting)


def _login(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    if state.status is not Status.LOGGED_OUT:
        raise _refuse(state, "log in", "she is already logged in")
    if not profile.queues:
        raise _refuse(state, "log in", "her skills put her in no queue")
    return AgentState(Status.AVAILABLE, now, members=profile.queues)


def _logout(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    if state.status is Status.LOGGED_OUT:
        raise _refuse(state, "log out", "she is not logged in")
    if state.status in (Status.RINGING, Status.ON_CALL):
        raise _refuse(state, "log out", "finish the call first")
    return logged_out(now)


def _pause(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, Pause)
    if t.reason not in policy.pause_reasons:
        raise UnknownPauseReason(state.status.value, t.reason, policy.pause_reasons)
    if state.status is Status.LOGGED_OUT:
        raise _refuse(state, "pause", "she is not logged in")
    wanted = PauseReason(t.reason, PauseOrigin.AGENT)
    if state.status in BUSY:
        # After the call: a break requested mid-call must not cut the call or the wrap-up.
        return replace(state, pending=wanted)
    return replace(state, status=Status.PAUSED, pause=wanted)


def _unpause(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    if state.status is Status.PAUSED:
        return replace(state, status=Status.AVAILABLE, pause=None)
    if state.status in BUSY and state.pending is not None:
        return replace(state, pending=None)
    raise _refuse(state, "unpause", "she is not paused")


def _ring(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, Ring)
    if state.status is Status.LOGGED_OUT:
        return "ring for an agent who is not logged in"
    if state.status in (Status.RINGING, Status.ON_CALL):
        return f"already {state.status.value}"
    base = replace(state, status=Status.RINGING, call=t.call, queue=t.queue or None)
    if state.status is Status.PAUSED:
        # Her pause had not landed in the queue that rang: it still stands afterwards.
        return replace(base, pause=None, pending=state.pause)
    if state.status is Status.WRAP_UP:
        # Only the fallback queue can ring her now (see module doc); keep the wrap-up.
        assert state.pause is not None
        return replace(
            base, pause=None, interrupted=InterruptedWrapUp(state.call, state.queue, state.pause)
        )
    return base


def _answer(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, Answer)
    if state.status is Status.LOGGED_OUT:
        return "answer by an agent who is not logged in"
    if state.status is Status.ON_CALL:
        return "already on a call"
    pending = state.pause if state.status is Status.PAUSED else state.pending
    if pending is not None and pending.code == AUTOPAUSE:
        pending = None  # she answered: she is at her desk
    return replace(
        state, status=Status.ON_CALL, call=t.call, queue=t.queue or state.queue,
        pause=None, pending=pending, interrupted=None,
    )


def _hang_up(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, HangUp)
    if state.call != t.call or state.status not in (Status.RINGING, Status.ON_CALL):
        return "hang-up of a call she does not have"
    if state.status is Status.RINGING:
        back = state.interrupted
        if back is not None and (back.pause.until is None or back.pause.until > now):
            return replace(state, status=Status.WRAP_UP, pause=back.pause, call=back.call,
                           queue=back.queue, interrupted=None)
        return _idle(state, state.pending, now)
    if policy.wrap_up == timedelta(0):
        return _idle(state, state.pending, now)
    wrap = PauseReason(WRAPUP, PauseOrigin.SYSTEM, f"call {t.call}", until=now + policy.wrap_up)
    return replace(state, status=Status.WRAP_UP, pause=wrap)


def _wrap_up_done(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, WrapUpDone)
    if state.status is not Status.WRAP_UP:
        raise _refuse(state, "finish wrap-up", "she is not in wrap-up")
    if t.call is not None and t.call != state.call:
        raise _refuse(state, "finish wrap-up", f"her wrap-up is for call {state.call}")
    return _idle(state, state.pending, now)


def _wrap_up_timeout(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, WrapUpTimeout)
    deadline = state.wrap_up_deadline
    if deadline is None or (t.call is not None and t.call != state.call):
        return "stale wrap-up timer"
    if now < deadline:
        return "wrap-up timer before the deadline"
    return _idle(state, state.pending, now)


def _recovery_pause(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, RecoveryPause)
    if state.status is Status.LOGGED_OUT:
        return "recovery pause for an agent who is not logged in"
    duration = t.duration if t.duration is not None else policy.recovery
    if duration <= timedelta(0):
        raise _refuse(state, "start a recovery pause", "its duration must be positive")
    cause = f"after call {t.call}" if t.call else "after a distress call"
    recovery = PauseReason(RECOVERY, PauseOrigin.SYSTEM, cause, duration=duration)
    if state.status in BUSY:
        return replace(state, pending=recovery)
    return replace(state, status=Status.PAUSED, pause=recovery.started(now))


def _ring_no_answer(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, RingNoAnswer)
    if state.status is not Status.RINGING or (t.call is not None and t.call != state.call):
        return "ring-no-answer for a ring she does not have"
    where = t.queue or state.queue
    cause = f"no answer in {where}" if where else "no answer"
    # Everywhere, not just in the queue app_queue auto-paused her in: if she is away from
    # her desk, every other caller rung to her would wait out the same 15 s for nothing.
    return AgentState(
        Status.PAUSED, now, pause=PauseReason(AUTOPAUSE, PauseOrigin.SYSTEM, cause),
        members=state.members, awaiting=state.awaiting,
    )


def _pbx_pause_observed(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, PbxPauseObserved)
    if state.status is Status.LOGGED_OUT:
        return "pause change for an agent who is not logged in"
    if t.queue is not None:
        if t.queue not in state.members:
            return f"pause change in {t.queue}, a queue she is not in"
        if (t.queue, t.paused) in state.awaiting:
            return "echo of our own pause change"
    if t.paused:
        reason = t.reason or PBX_PAUSE
        if state.status is Status.AVAILABLE and reason == WRAPUP:
            # Our own reason, left over from a wrap-up this instance does not know of (a
            # failover, a restart): she is available, so the plan takes that queue back.
            # Taken as someone else's pause it would spread "wrapup" to the fallback.
            return state
        if state.status is Status.AVAILABLE:
            where = f" in {t.queue}" if t.queue else ""
            return replace(state, status=Status.PAUSED,
                           pause=PauseReason(reason, PauseOrigin.PBX, f"paused on the PBX{where}"))
        if state.status is Status.PAUSED:
            return "already paused; the backend keeps her reason"
        if reason == WRAPUP or state.pending is not None:
            return "paused while busy; her next pause is already set"
        return replace(state, pending=PauseReason(reason, PauseOrigin.PBX, "paused on the PBX"))
    if state.status is Status.PAUSED:
        return replace(state, status=Status.AVAILABLE, pause=None)
    if state.status is Status.WRAP_UP:
        return _idle(state, None, now)
    return f"unpaused while {state.status.value}: nothing to change"


def _pbx_member_gone(
    profile: AgentProfile, policy: Policy, state: AgentState, t: Transition, now: datetime
) -> AgentState | str:
    assert isinstance(t, PbxMemberGone)
    if state.status is Status.LOGGED_OUT:
        return "not a member anywhere already"
    if t.queue is not None:
        if t.queue not in state.members:
            return f"removed from {t.queue}, a queue she is not in"
        left = tuple(q for q in state.members if q != t.queue)
        if left:
            return replace(state, members=left)
    return logged_out(now)


_STEPS: dict[type, Step] = {
    Login: _login,
    Logout: _logout,
    Pause: _pause,
    Unpause: _unpause,
    Ring: _ring,
    Answer: _answer,
    HangUp: _hang_up,
    WrapUpDone: _wrap_up_done,
    WrapUpTimeout: _wrap_up_timeout,
    RecoveryPause: _recovery_pause,
    RingNoAnswer: _ring_no_answer,
    PbxPauseObserved: _pbx_pause_observed,
    PbxMemberGone: _pbx_member_gone,
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AgentStateMachine:
    """One agent's state with an injected clock; everything else is :func:`advance`."""

    def __init__(
        self,
        profile: AgentProfile,
        policy: Policy | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        state: AgentState | None = None,
    ) -> None:
        self.profile = profile
        self.policy = policy or Policy()
        self._clock = clock
        self.state = state or logged_out(clock())

    def apply(self, transition: Transition) -> Outcome:
        outcome = advance(self.profile, self.policy, self.state, transition, self._clock())
        self.state = outcome.state
        return outcome

    def plan(self) -> dict[str, QueuePlan]:
        return plan(self.profile, self.state)

    def reconcile(self, observed: Mapping[str, QueuePlan]) -> tuple[Intent, ...]:
        """Intents after a (re)connect. What we awaited before is void: the actions may
        never have reached the PBX; only the echoes of these intents are expected now."""
        intents = reconcile(self.profile, self.state, observed)
        self.state = replace(
            self.state, awaiting=_awaiting(replace(self.state, awaiting=()), intents)
        )
        return intents


# -- softphone registration ------------------------------------------------------------


class Reachability(StrEnum):
    UNKNOWN = "unknown"
    REACHABLE = "reachable"  # registered, and answers OPTIONS (or is in use)
    REGISTERED = "registered"  # a contact exists; qualify has not answered yet
    UNREACHABLE = "unreachable"  # registered but does not answer OPTIONS
    UNREGISTERED = "unregistered"  # no contact: the softphone is off


# ContactStatus values (res_pjsip): Created, Reachable, Unreachable, Removed, Updated,
# NonQualified (qualify_frequency=0: no OPTIONS, so registration is all we know).
_CONTACT_STATUS = {
    "created": Reachability.REGISTERED,
    "updated": Reachability.REGISTERED,
    "nonqualified": Reachability.REGISTERED,
    "reachable": Reachability.REACHABLE,
    "unreachable": Reachability.UNREACHABLE,
    "removed": Reachability.UNREGISTERED,
}
# Device states (devicestate.h) in which the phone is evidently there.
_DEVICE_PRESENT = frozenset({"NOT_INUSE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})


@dataclass(frozen=True, slots=True)
class Softphone:
    endpoint: str  # PJSIP/agent1001
    reachability: Reachability = Reachability.UNKNOWN
    device_state: str = "UNKNOWN"
    since: datetime | None = None

    @property
    def usable(self) -> bool:
        return self.reachability in (Reachability.REACHABLE, Reachability.REGISTERED)


@dataclass
class SoftphoneRegistry:
    """Registration state per softphone, from ContactStatus and DeviceStateChange.

    ContactStatus says whether a contact exists and answers qualify; DeviceStateChange for
    ``PJSIP/...`` says UNAVAILABLE when no contact is reachable and an in-use state when the
    phone is evidently there. Neither alone is the whole story: a re-registration sends
    ``Updated`` without saying it is reachable, and device state never says "removed".
    """

    phones: dict[str, Softphone] = field(default_factory=dict)

    def get(self, endpoint: str) -> Softphone:
        return self.phones.get(endpoint) or Softphone(endpoint)

    def contact_status(self, endpoint_name: str, status: str, at: datetime) -> Softphone | None:
        """A ContactStatus event; ``endpoint_name`` as in ``EndpointName:`` (no ``PJSIP/``).

        Returns the phone when what the screens show changed, else None.
        """
        reach = _CONTACT_STATUS.get(status.strip().lower())
        if reach is None:
            return None
        endpoint = endpoint_name if "/" in endpoint_name else f"PJSIP/{endpoint_name}"
        current = self.get(endpoint)
        if reach is Reachability.REGISTERED and current.reachability is Reachability.REACHABLE:
            # A re-registration of a phone that answers qualify: still reachable.
            return None
        return self._set(replace(current, reachability=reach), at)

    def device_state(self, device: str, state: str, at: datetime) -> Softphone | None:
        """A DeviceStateChange event (``Device: PJSIP/agent1001``, ``State: NOT_INUSE``)."""
        if not device.upper().startswith("PJSIP/"):
            return None
        value = state.strip().upper()
        current = self.get(device)
        reach = current.reachability
        if value in _DEVICE_PRESENT:
            reach = Reachability.REACHABLE
        elif value == "UNAVAILABLE" and reach is not Reachability.UNREGISTERED:
            reach = Reachability.UNREACHABLE
        elif value == "INVALID":
            reach = Reachability.UNKNOWN
        return self._set(replace(current, reachability=reach, device_state=value), at)

    def unusable(self, endpoints: Iterable[str]) -> list[Softphone]:
        """Of these endpoints (e.g. logged-in agents'), the phones that cannot ring."""
        return [p for p in (self.get(e) for e in endpoints) if not p.usable]

    def _set(self, phone: Softphone, at: datetime) -> Softphone | None:
        before = self.phones.get(phone.endpoint)
        if before is not None and (before.reachability, before.device_state) == (
            phone.reachability, phone.device_state,
        ):
            return None
        changed_reach = before is None or before.reachability != phone.reachability
        stored = replace(phone, since=at if changed_reach else before.since)  # type: ignore[union-attr]
        self.phones[phone.endpoint] = stored
        return stored
