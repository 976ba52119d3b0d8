"""The agents service: every logged-in agent's state kept in step with the live PBX.

One :class:`~callcenter.agents.state.AgentStateMachine` per agent who logged in, keyed by
username and tied to her softphone's queue interface (``PJSIP/<endpoint>``). Typed PBX
events from the node are fed into the machine of the agent they concern; whatever intents
a transition returns are sent through ``node.ops``, one agent's in order, so the PBX ends
up as her plan says. The PBX owns member and channel state; this service owns intent
(pause reasons, wrap-up deadlines, skills -> queues) and re-applies it after every
reconnect, from the node's fresh snapshot.

What the screens get (:class:`~callcenter.agents.views.AgentView`) mixes both on purpose:
her state and reason come from the machine (only the backend knows *why*), her queues and
the queues she is paused in come from the node's model, i.e. what the PBX last reported,
so a console never shows a membership the PBX does not have.

Nothing here logs or stores a caller's number: calls are known by Linkedid / Uniqueid and
the caller by the token the IVR put in CALLERID(name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import and_, not_, select

from callcenter.ami import AMIConnectionError, AMIError
from callcenter.pbx import events as ev
from callcenter.pbx.errors import PbxOperationError
from callcenter.pbx.model import Channel, LiveCall
from callcenter.pbx.models import CallRecord
from callcenter.pbx.node import PbxNode
from callcenter.store import Store

from .accounts import AccountService
from .errors import AgentError, InvalidTransition
from .models import Account, SkillQueues
from .state import (
    RECOVERY,
    SYSTEM_PAUSE_REASONS,
    WRAPUP,
    AddMemberIntent,
    AgentProfile,
    AgentStateMachine,
    Answer,
    HangUp,
    Intent,
    Login,
    Logout,
    Outcome,
    Pause,
    PauseIntent,
    PauseOrigin,
    PbxMemberGone,
    PbxPauseObserved,
    Policy,
    QueuePlan,
    Reachability,
    RecoveryPause,
    RemoveMemberIntent,
    Ring,
    RingNoAnswer,
    Softphone,
    SoftphoneRegistry,
    Status,
    Transition,
    Unpause,
    WrapUpDone,
    WrapUpTimeout,
)
from .views import (
    AgentListener,
    AgentProblem,
    AgentView,
    CallCard,
    EarlierContact,
    PopListener,
    ScreenPop,
    SoftphoneState,
)

log = logging.getLogger(__name__)

#: What the card says when the caller's leg carries neither a token nor a fixed label
#: (it never falls back to anything the PBX reported about her).
UNIDENTIFIED = "unidentified"
#: Only a caller token links calls of one woman; fixed labels (1090-FALLBACK) and
#: withheld tokens would link strangers or nothing.
CALLER_TOKEN = re.compile(r"^T-[0-9A-Z]{4,16}$")
#: Calls after which she gets the recovery pause: the IVR's flag or category.
RECOVERY_FLAGS = frozenset({"danger"})
RECOVERY_CATEGORIES = frozenset({"emotional-distress", "immediate-danger"})
#: How long a screen-pop waits for earlier calls before it goes without them.
HISTORY_TIMEOUT_S = 2.0


# -- errors --------------------------------------------------------------------------


class NotLoggedIn(InvalidTransition):
    code = "not_logged_in"

    def __init__(self, username: str, transition: str) -> None:
        super().__init__("logged_out", transition, "she is not logged in")
        self.username = username


class CannotTakeCalls(AgentError):
    """A supervisor's or admin's account, or a disabled one: no queue membership."""

    code = "cannot_take_calls"

    def __init__(self, username: str, why: str) -> None:
        super().__init__(f"{username!r} cannot take calls: {why}")
        self.username = username


class EndpointInUse(AgentError):
    """Her softphone is the queue member of someone else who is logged in (shared desks)."""

    code = "endpoint_in_use"

    def __init__(self, endpoint: str, holder: str) -> None:
        super().__init__(
            f"{endpoint} is in use by {holder!r}, who must log out first"
        )
        self.endpoint = endpoint
        self.holder = holder


def problem(error: AgentError) -> AgentProblem:
    """The refusal as the web layer returns it: stable code, actionable message."""
    return AgentProblem(error.code, str(error))


# -- collaborators -------------------------------------------------------------------


class Timer(Protocol):
    def cancel(self) -> object: ...


class ServiceClock(Protocol):
    """Epoch seconds and timers on one clock (a simulator's scaled clock in tests)."""

    def now(self) -> float: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


@dataclass(frozen=True, slots=True)
class CallHistory:
    """What the "connected" screen-pop adds: the IVR path of this call, her earlier calls."""

    ivr_path: str | None = None
    earlier: tuple[EarlierContact, ...] = ()


HistoryLookup = Callable[[CallCard], Awaitable[CallHistory]]


async def _no_history(card: CallCard) -> CallHistory:
    return CallHistory()


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    # SQLite hands timezone-aware columns back naive; every stored time is UTC.
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


class RecordedCallHistory:
    """Earlier calls of the same caller token from the call records, newest first."""

    def __init__(self, store: Store, *, limit: int = 5) -> None:
        self._store = store
        self._limit = limit

    async def __call__(self, card: CallCard) -> CallHistory:
        this_call = and_(CallRecord.node == card.node, CallRecord.linkedid == card.linkedid)
        async with self._store.session() as session:
            ivr_path = await session.scalar(select(CallRecord.ivr_path).where(this_call))
            if not CALLER_TOKEN.match(card.caller):
                return CallHistory(ivr_path)
            rows = (
                await session.scalars(
                    select(CallRecord)
                    .where(CallRecord.caller_token == card.caller, not_(this_call))
                    .order_by(CallRecord.started_at.desc().nulls_last(), CallRecord.id.desc())
                    .limit(self._limit)
                )
            ).all()
        earlier = tuple(
            EarlierContact(row.linkedid, _epoch(row.started_at), row.outcome, row.category)
            for row in rows
        )
        return CallHistory(ivr_path, earlier)


# -- one agent -------------------------------------------------------------------------


_SOFTPHONE: Mapping[Reachability, SoftphoneState] = {
    Reachability.REACHABLE: "registered",
    Reachability.REGISTERED: "registered",
    Reachability.UNREACHABLE: "unreachable",
    Reachability.UNREGISTERED: "unregistered",
    Reachability.UNKNOWN: "unknown",
}

_WITH_CALL = frozenset({Status.RINGING, Status.ON_CALL, Status.WRAP_UP})


@dataclass(eq=False)
class _Desk:
    """One agent's machine and what goes with it: her card, her timer, her intents' order."""

    account: Account
    machine: AgentStateMachine
    card: CallCard | None = None
    #: Her leg of the call she is rung for / on (its Uniqueid): its hangup ends it for her.
    agent_leg: str | None = None
    timer: Timer | None = None
    timer_key: tuple[str, float, str | None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_view: AgentView | None = None
    #: The "connected" pop waiting for her history; an "ended" pop goes after it.
    pop_task: asyncio.Task[None] | None = None
    #: Her queue leg ended but she talks on in a conference room: only her own
    #: channel's hangup ends the call for her.
    in_conference: bool = False

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def interface(self) -> str:
        return self.machine.profile.interface

    @property
    def logged_in(self) -> bool:
        return self.machine.state.status is not Status.LOGGED_OUT


def _flags(variables: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f for f in (variables.get("WPL_FLAGS") or "").split(",") if f)


def _leg_of(channel_name: str) -> str:
    """``PJSIP/agent1-0000002a`` -> ``PJSIP/agent1``: the device a channel belongs to."""
    return channel_name.rpartition("-")[0]


class AgentService:
    """Implements :class:`~callcenter.agents.views.AgentDirectory` for one PBX node."""

    def __init__(
        self,
        node: PbxNode,
        accounts: AccountService,
        *,
        policy: Policy | None = None,
        skill_queues: SkillQueues | None = None,
        history: HistoryLookup | None = None,
        clock: ServiceClock | None = None,
        on_duty: Callable[[str], bool] | None = None,
        recovery_flags: Iterable[str] = RECOVERY_FLAGS,
        recovery_categories: Iterable[str] = RECOVERY_CATEGORIES,
    ) -> None:
        self._node = node
        self._accounts = accounts
        self.policy = policy or Policy()
        self._skill_queues = skill_queues or accounts.skill_queues
        self._history = history or _no_history
        self._clock = clock or SystemClock()
        self._on_duty = on_duty
        self._recovery_flags = frozenset(recovery_flags)
        self._recovery_categories = frozenset(recovery_categories)
        self._desks: dict[str, _Desk] = {}
        #: Logged-in agents by queue interface.
        self._at: dict[str, _Desk] = {}
        self.softphones = SoftphoneRegistry()
        self._change_listeners: list[AgentListener] = []
        self._pop_listeners: list[PopListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: While set, transitions change her state but send nothing: a reconcile pass
        #: catches up with the PBX first and then sends one difference.
        self._holding = False
        #: Completed reconciliation passes (after each resync of the node).
        self.reconciled = 0
        node.on_event(self._on_event)
        node.on_resync(self._on_resync)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Catch up with a node that synced before this service subscribed."""
        if self._node.synced.is_set():
            await self.reconcile()

    async def close(self) -> None:
        self._closed = True
        for desk in self._desks.values():
            self._cancel_timer(desk)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- AgentDirectory: commands -----------------------------------------------------

    async def login(self, username: str) -> AgentView:
        account = await self._accounts.get(username)
        if not account.enabled:
            raise CannotTakeCalls(account.username, "the account is disabled")
        if not account.takes_calls:
            raise CannotTakeCalls(account.username, f"a {account.role.value} takes no calls")
        desk = self._desks.get(account.username)
        if desk is not None and desk.logged_in:
            desk.machine.apply(Login())  # raises: she is already logged in
        holder = self._at.get(account.endpoint)
        if holder is not None and holder.username != account.username:
            raise EndpointInUse(account.endpoint, holder.username)
        desk = self._desk_for(account)
        outcome = desk.machine.apply(Login())
        await self._settle(desk, outcome)
        return self._view(desk)

    async def logout(self, username: str) -> AgentView:
        desk = self._logged_in(username, "log out")
        outcome = desk.machine.apply(Logout())
        await self._settle(desk, outcome)
        return self._view(desk)

    async def pause(self, username: str, reason: str) -> AgentView:
        return await self._command(username, "pause", Pause(reason))

    async def unpause(self, username: str) -> AgentView:
        return await self._command(username, "unpause", Unpause())

    async def wrap_up_done(self, username: str) -> AgentView:
        return await self._command(username, "finish wrap-up", WrapUpDone())

    async def _command(self, username: str, what: str, transition: Transition) -> AgentView:
        desk = self._logged_in(username, what)
        outcome = desk.machine.apply(transition)
        await self._settle(desk, outcome)
        return self._view(desk)

    def _logged_in(self, username: str, what: str) -> _Desk:
        desk = self._desks.get(username.strip().lower())
        if desk is None or not desk.logged_in:
            raise NotLoggedIn(username, what)
        return desk

    def _desk_for(self, account: Account) -> _Desk:
        """Her desk, made afresh when her endpoint or skills changed since she last logged in."""
        profile = AgentProfile(
            username=account.username,
            interface=account.endpoint,
            queues=account.queues(self._skill_queues),
            fallback=self._skill_queues.fallback,
        )
        desk = self._desks.get(account.username)
        if desk is not None and desk.machine.profile == profile:
            desk.account = account
            return desk
        machine = AgentStateMachine(profile, self.policy, clock=self._now)
        desk = self._desks[account.username] = _Desk(account, machine)
        return desk

    # -- AgentDirectory: views ----------------------------------------------------------

    def view(self, username: str) -> AgentView | None:
        desk = self._desks.get(username.strip().lower())
        return None if desk is None else self._view(desk)

    def views(self) -> list[AgentView]:
        return [self._view(desk) for _, desk in sorted(self._desks.items())]

    def pause_reasons(self) -> tuple[str, ...]:
        return self.policy.pause_reasons

    def on_change(self, listener: AgentListener) -> None:
        self._change_listeners.append(listener)

    def on_screen_pop(self, listener: PopListener) -> None:
        self._pop_listeners.append(listener)

    def detail(self, username: str) -> str | None:
        """Her pause with its cause, as a wallboard line (``autopause (no answer in ...)``)."""
        desk = self._desks.get(username.strip().lower())
        return None if desk is None else desk.machine.state.shown_reason

    def _view(self, desk: _Desk) -> AgentView:
        state = desk.machine.state
        profile = desk.machine.profile
        members = {m.queue: m for m in self._node.model.members_of(profile.interface)}
        queues = profile.ordered(members)
        show_pause = state.status in (Status.PAUSED, Status.WRAP_UP) and state.pause is not None
        deadline = state.wrap_up_deadline
        return AgentView(
            username=desk.username,
            display_name=desk.account.display_name,
            role=desk.account.role.value,
            endpoint=profile.interface,
            state=state.status.value,  # type: ignore[arg-type]
            reason=state.pause.code if show_pause and state.pause is not None else None,
            since=state.entered_at.timestamp(),
            queues=queues,
            paused_queues=tuple(q for q in queues if members[q].paused),
            softphone=_SOFTPHONE[self.softphones.get(profile.interface).reachability],
            wrap_up_deadline=deadline.timestamp() if deadline is not None else None,
            call=desk.card if state.status in _WITH_CALL else None,
            rostered=bool(self._on_duty and self._on_duty(desk.username)),
        )

    # -- applying a transition ----------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _apply(
        self,
        desk: _Desk,
        transition: Transition,
        applied: Callable[[], None] | None = None,
    ) -> Outcome:
        """An observation or a timer: applied now, its intents sent in the background.

        ``applied`` runs when the transition changed something, before the screens hear
        of it (so a ring's card and its state arrive together).
        """
        outcome = desk.machine.apply(transition)
        if outcome.ignored is not None:
            log.debug("agent %s: %s ignored (%s)", desk.username,
                      type(transition).__name__, outcome.ignored)
        elif applied is not None:
            applied()
        self._after(desk)
        if outcome.intents and not self._holding:
            self._spawn(self._send_intents(desk, outcome.intents))
        return outcome

    async def _settle(self, desk: _Desk, outcome: Outcome) -> None:
        """After a command: screens now, then her intents, awaited."""
        self._after(desk)
        if outcome.intents:
            await self._send_intents(desk, outcome.intents)

    def _after(self, desk: _Desk) -> None:
        self._index(desk)
        self._arm(desk)
        self._changed(desk)

    async def _send_intents(self, desk: _Desk, intents: Sequence[Intent]) -> None:
        await self._send(desk, intents)
        self._changed(desk)

    def _index(self, desk: _Desk) -> None:
        state = desk.machine.state
        if state.status not in _WITH_CALL:
            desk.card = None
            desk.agent_leg = None
        if desk.logged_in:
            self._at[desk.interface] = desk
        elif self._at.get(desk.interface) is desk:
            del self._at[desk.interface]

    async def _send(self, desk: _Desk, intents: Sequence[Intent]) -> None:
        # One agent's intents go out in the order the machine produced them: a later
        # unpause must never overtake an earlier pause on its way to the PBX.
        async with desk.lock:
            ops = self._node.ops
            for intent in intents:
                try:
                    if isinstance(intent, AddMemberIntent):
                        await ops.add_member(
                            intent.queue, intent.interface, member_name=intent.member_name,
                            paused=intent.paused, reason=intent.reason or None,
                        )
                    elif isinstance(intent, RemoveMemberIntent):
                        await ops.remove_member(intent.queue, intent.interface)
                    elif isinstance(intent, PauseIntent):
                        for queue in intent.queues:
                            await ops.pause_member(
                                intent.interface, intent.paused, queue=queue,
                                reason=intent.reason if intent.paused else "",
                            )
                except AMIConnectionError:
                    # The link is down: the resync after the reconnect compares the
                    # PBX with her plan and sends whatever is still missing.
                    log.info("agent %s: PBX link down; her queues are re-applied on "
                             "reconnect", desk.username)
                    return
                except (PbxOperationError, AMIError) as exc:
                    log.warning("agent %s: %s refused by the PBX (%s)", desk.username,
                                type(intent).__name__, exc)
                except Exception:  # noqa: BLE001 - e.g. the write guard of a lost lease
                    log.exception("agent %s: could not apply %s", desk.username,
                                  type(intent).__name__)
                    return

    # -- timers ---------------------------------------------------------------------------

    def _arm(self, desk: _Desk) -> None:
        """One timer per agent: her wrap-up's end, or her recovery pause's end."""
        state = desk.machine.state
        key: tuple[str, float, str | None] | None = None
        if state.status is Status.WRAP_UP and state.pause and state.pause.until:
            key = ("wrapup", state.pause.until.timestamp(), state.call)
        elif (
            state.status is Status.PAUSED and state.pause is not None
            and state.pause.code == RECOVERY and state.pause.until is not None
        ):
            key = ("recovery", state.pause.until.timestamp(), None)
        if key == desk.timer_key or self._closed:
            return
        self._cancel_timer(desk)
        if key is None:
            return
        desk.timer_key = key
        delay = key[1] - self._clock.now()
        desk.timer = self._clock.call_later(delay, lambda: self._timer_fired(desk, key))

    def _cancel_timer(self, desk: _Desk) -> None:
        if desk.timer is not None:
            desk.timer.cancel()
        desk.timer = None
        desk.timer_key = None

    def _timer_fired(self, desk: _Desk, key: tuple[str, float, str | None]) -> None:
        if desk.timer_key != key or self._closed:
            return  # cancelled or replaced after it was already due
        desk.timer = None
        desk.timer_key = None
        kind, _, call = key
        if kind == "wrapup":
            outcome = self._apply(desk, WrapUpTimeout(call))
            if outcome.ignored == "wrap-up timer before the deadline":
                self._arm(desk)  # two clocks rounding apart: wait for the rest
            return
        state = desk.machine.state
        if state.status is Status.PAUSED and state.pause and state.pause.code == RECOVERY:
            self._apply(desk, Unpause())

    # -- listeners -------------------------------------------------------------------------

    def _changed(self, desk: _Desk) -> None:
        view = self._view(desk)
        if view == desk.last_view:
            return
        desk.last_view = view
        for listener in self._change_listeners:
            try:
                listener(view)
            except Exception:  # noqa: BLE001 - one screen must not starve the others
                log.exception("agent change listener failed")

    def _pop(self, pop: ScreenPop) -> None:
        for listener in self._pop_listeners:
            try:
                listener(pop)
            except Exception:  # noqa: BLE001
                log.exception("screen-pop listener failed")

    def _pop_after_history(self, desk: _Desk, pop: ScreenPop) -> None:
        async def lookup() -> None:
            try:
                async with asyncio.timeout(HISTORY_TIMEOUT_S):
                    history = await self._history(pop.card)
            except Exception as exc:  # noqa: BLE001 - she gets the pop, without history
                log.warning("earlier calls for a screen-pop unavailable: %s",
                            type(exc).__name__)
                history = CallHistory()
            card = replace(pop.card, ivr_path=history.ivr_path or pop.card.ivr_path)
            if desk.card is not None and desk.card.linkedid == card.linkedid:
                desk.card = card
                self._changed(desk)
            self._pop(replace(pop, card=card, earlier=history.earlier))

        desk.pop_task = self._spawn(lookup())

    def _pop_ended(self, desk: _Desk, card: CallCard) -> None:
        pop = ScreenPop(desk.username, "ended", card)
        pending = desk.pop_task
        if pending is None or pending.done():
            self._pop(pop)
            return

        async def after() -> None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
            self._pop(pop)

        self._spawn(after())

    # -- PBX events -----------------------------------------------------------------------

    def _on_event(self, event: ev.PbxEvent) -> None:
        if self._closed:
            return
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _card(
        self,
        linkedid: str,
        caller_uniqueid: str,
        queue: str | None,
        *,
        offered_at: float | None,
        answered_at: float | None = None,
    ) -> CallCard:
        """Her card from what the PBX reported: the token label and the IVR's WPL_* choices."""
        model = self._node.model
        call: LiveCall | None = model.calls.get(linkedid)
        if call is not None and call.caller_uniqueid != caller_uniqueid:
            call = None
        channel = model.channels.get(caller_uniqueid)
        variables: Mapping[str, str] = (
            call.variables if call is not None
            else channel.variables if channel is not None else {}
        )
        # Both are the model's safe labels (token or fixed label), never a CNAM.
        label = (call.label if call is not None else None) or (
            channel.label if channel is not None else None
        )
        callback = variables.get("WPL_CALLBACK_OK")
        return CallCard(
            node=self._node.name,
            linkedid=linkedid,
            caller=label or UNIDENTIFIED,
            queue=queue or (call.queue if call is not None else None),
            category=variables.get("WPL_CATEGORY") or None,
            language=variables.get("WPL_LANGUAGE") or None,
            risk=variables.get("WPL_RISK") or None,
            flags=_flags(variables),
            callback_ok=None if callback not in ("0", "1") else callback == "1",
            ivr_path=None,
            offered_at=offered_at,
            answered_at=answered_at,
        )

    def _agent_called(self, event: ev.AgentCalled) -> None:
        desk = self._at.get(event.interface)
        if desk is None:
            return
        card = self._card(
            event.caller.linkedid, event.caller.uniqueid, event.queue,
            offered_at=event.timestamp,
        )

        def offered() -> None:
            desk.card = card
            desk.agent_leg = event.agent_channel.uniqueid

        outcome = self._apply(desk, Ring(event.caller.uniqueid, event.queue), offered)
        if outcome.ignored is None:
            # Before she answers: the risk and the silent / danger flags are what she
            # needs to pick up the call right.
            self._pop(ScreenPop(desk.username, "ringing", card))

    def _agent_connected(self, event: ev.AgentConnected) -> None:
        desk = self._at.get(event.interface)
        if desk is None:
            return
        rung = desk.card if desk.card and desk.card.linkedid == event.caller.linkedid else None
        card = self._card(
            event.caller.linkedid, event.caller.uniqueid, event.queue,
            offered_at=rung.offered_at if rung is not None else None,
            answered_at=event.timestamp,
        )
        self._answer(desk, event.caller.uniqueid, event.queue, card,
                     event.agent_channel.uniqueid)

    def _answer(
        self, desk: _Desk, call: str, queue: str, card: CallCard, agent_leg: str | None
    ) -> None:
        def answered() -> None:
            desk.card = card
            desk.agent_leg = agent_leg

        outcome = self._apply(desk, Answer(call, queue), answered)
        if outcome.ignored is not None:
            return
        if self._needs_recovery(card):
            # Pending until her call and wrap-up are over; the fallback queue stops
            # ringing her at once (see state.plan).
            self._apply(desk, RecoveryPause(call=call))
        self._pop_after_history(desk, ScreenPop(desk.username, "connected", card))

    def _needs_recovery(self, card: CallCard) -> bool:
        return bool(self._recovery_flags.intersection(card.flags)) or (
            card.category in self._recovery_categories
        )

    def _agent_completed(self, event: ev.AgentCompleted) -> None:
        desk = self._at.get(event.interface)
        if desk is None:
            return
        call = self._node.model.calls.get(event.caller.linkedid)
        if call is not None and event.agent_channel.name in call.conferenced:
            # Redirected into a three-way room with the caller: still on the call, so
            # no wrap-up while she talks (it starts when her phone leaves the room).
            desk.in_conference = True
            return
        self._call_over(desk, event.caller.uniqueid)

    def _call_over(self, desk: _Desk, call: str) -> None:
        desk.in_conference = False
        card = desk.card
        outcome = self._apply(desk, HangUp(call))
        if outcome.ignored is None and card is not None:
            self._pop_ended(desk, card)

    def _ring_no_answer(self, event: ev.AgentRingNoAnswer) -> None:
        desk = self._at.get(event.interface)
        if desk is None:
            return
        card = desk.card
        outcome = self._apply(desk, RingNoAnswer(event.caller.uniqueid, event.queue))
        if outcome.ignored is None and card is not None:
            self._pop_ended(desk, card)

    def _hung_up(self, event: ev.ChannelHungUp) -> None:
        gone = event.channel.uniqueid
        for desk in list(self._at.values()):
            state = desk.machine.state
            if state.status not in (Status.RINGING, Status.ON_CALL) or state.call is None:
                continue
            # The caller left, or her own leg ended (another agent answered a ringall,
            # the phone rejected): either way this call is over for her.
            if desk.in_conference and gone != desk.agent_leg:
                continue  # the caller left the room; she may still be talking there
            if gone in (state.call, desk.agent_leg):
                self._call_over(desk, state.call)

    def _member_changed(self, event: ev.MemberChanged) -> None:
        member = event.member
        desk = self._at.get(member.interface)
        if event.change in ("added", "status"):
            # QueueStatus and member events carry her device state: the softphone is
            # known from the moment she joins, before any DeviceStateChange.
            self._device_state(member.interface, member.status.upper())
        if desk is None:
            return
        if event.change == "pause":
            self._apply(desk, PbxPauseObserved(member.paused, member.paused_reason, member.queue))
        elif event.change == "removed":
            self._apply(desk, PbxMemberGone(member.queue))
        else:
            self._changed(desk)

    def _device_state(self, device: str, state: str) -> None:
        phone = self.softphones.device_state(device, state, self._now())
        if phone is not None:
            self._phone_changed(phone)

    def _device_changed(self, event: ev.DeviceStateChanged) -> None:
        self._device_state(event.device, event.state)

    def _contact_changed(self, event: ev.ContactStatusChanged) -> None:
        phone = self.softphones.contact_status(event.endpoint, event.status, self._now())
        if phone is not None:
            self._phone_changed(phone)

    def _phone_changed(self, phone: Softphone) -> None:
        for desk in self._desks.values():
            if desk.interface == phone.endpoint:
                self._changed(desk)

    _handlers: dict[type, Callable[[AgentService, ev.PbxEvent], None]] = {
        ev.AgentCalled: _agent_called,
        ev.AgentConnected: _agent_connected,
        ev.AgentCompleted: _agent_completed,
        ev.AgentRingNoAnswer: _ring_no_answer,
        ev.ChannelHungUp: _hung_up,
        ev.MemberChanged: _member_changed,
        ev.DeviceStateChanged: _device_changed,
        ev.ContactStatusChanged: _contact_changed,
    }  # type: ignore[dict-item]

    # -- after a (re)connect ------------------------------------------------------------

    def _on_resync(self) -> None:
        if not self._closed:
            self._spawn(self.reconcile())

    async def reconcile(self) -> None:
        """Bring agents and PBX together after the node rebuilt its model from a snapshot.

        Events lost while the link was down never come back, so: calls that ended or began
        meanwhile are applied to her machine from the channels the PBX reports; a pause
        someone else set meanwhile is taken as hers; then whatever differs between the PBX
        and her plan (a QueueAdd that never arrived, a pause that did not land) is sent.
        """
        await self._adopt_members()
        for desk in list(self._desks.values()):
            if desk.logged_in:
                self._reconcile_desk(desk)
        self.reconciled += 1

    def _reconcile_desk(self, desk: _Desk) -> None:
        machine = desk.machine
        # Echoes we were waiting for may never come: the actions may not have arrived.
        machine.state = replace(machine.state, awaiting=())
        self._holding = True
        try:
            self._catch_up_calls(desk)
            self._catch_up_pauses(desk, self._observed(desk))
        finally:
            self._holding = False
        intents = machine.reconcile(self._observed(desk))
        self._spawn(self._settle(desk, Outcome(machine.state, intents)))

    def _observed(self, desk: _Desk) -> dict[str, QueuePlan]:
        """Her queues as the PBX has them (queues someone else added her to are not hers)."""
        mine = set(desk.machine.profile.queues) | set(desk.machine.state.members)
        return {
            m.queue: QueuePlan(m.paused, m.paused_reason)
            for m in self._node.model.members_of(desk.interface)
            if m.queue in mine
        }

    def _our_reason(self, reason: str) -> bool:
        return reason in self.policy.pause_reasons or reason in SYSTEM_PAUSE_REASONS

    def _catch_up_pauses(self, desk: _Desk, observed: Mapping[str, QueuePlan]) -> None:
        state = desk.machine.state
        foreign = [(q, p.reason) for q, p in observed.items()
                   if p.paused and not self._our_reason(p.reason)]
        if foreign:
            for queue, reason in foreign:
                self._apply(desk, PbxPauseObserved(True, reason, queue))
            return
        pause = state.pause
        if (
            state.status is Status.PAUSED and pause is not None
            and pause.origin is PauseOrigin.PBX
            and observed and not any(p.paused for p in observed.values())
        ):
            # Someone else's pause, lifted on the PBX while we were away.
            self._apply(desk, PbxPauseObserved(False, "", next(iter(observed))))

    def _catch_up_calls(self, desk: _Desk) -> None:
        model = self._node.model
        state = desk.machine.state
        legs = [c for c in model.channels.values() if _leg_of(c.name) == desk.interface]
        if state.status in (Status.RINGING, Status.ON_CALL) and state.call is not None:
            caller = model.channels.get(state.call)
            leg = next((c for c in legs if caller is not None
                        and c.linkedid == caller.linkedid), None)
            if caller is None or leg is None:
                self._call_over(desk, state.call)
            elif state.status is Status.RINGING and leg.state == "up" and leg.bridge_id:
                self._answered_while_away(desk, caller, leg)
            return
        for leg in legs:
            caller = self._bridged_caller(leg)
            if caller is not None:
                self._answered_while_away(desk, caller, leg)
                return

    def _bridged_caller(self, leg: Channel) -> Channel | None:
        if leg.state != "up" or not leg.bridge_id:
            return None
        model = self._node.model
        call = model.calls.get(leg.linkedid)
        if call is None:
            return None
        caller = model.channels.get(call.caller_uniqueid)
        if caller is None or caller.bridge_id != leg.bridge_id:
            return None
        return caller

    def _answered_while_away(self, desk: _Desk, caller: Channel, leg: Channel) -> None:
        call = self._node.model.calls.get(caller.linkedid)
        queue = (call.queue if call is not None else None) or ""
        card = self._card(
            caller.linkedid, caller.uniqueid, queue, offered_at=None,
            answered_at=call.answered_at if call is not None else None,
        )
        self._answer(desk, caller.uniqueid, queue, card, leg.uniqueid)

    async def _adopt_members(self) -> None:
        """Members of her queues on the PBX whom this instance does not know (it restarted,
        or took over from another instance): the account at that phone is logged in."""
        known = set(self._at)
        interfaces = {
            m.interface for queue in self._node.model.queues.values()
            for m in queue.members.values() if m.interface not in known
        }
        for interface in sorted(interfaces):
            if not interface.startswith("PJSIP/"):
                continue
            try:
                accounts = [a for a in await self._accounts.by_endpoint(interface)
                            if a.takes_calls]
            except Exception as exc:  # noqa: BLE001 - adoption waits for the next resync
                log.warning("could not look up who is at %s: %s", interface,
                            type(exc).__name__)
                return
            if len(accounts) != 1 or interface in self._at:
                if len(accounts) > 1:
                    log.warning("%s is shared by %d accounts; not adopting its member",
                                interface, len(accounts))
                continue
            account = accounts[0]
            desk = self._desks.get(account.username)
            if desk is not None and desk.logged_in:
                continue
            desk = self._desk_for(account)
            desk.machine.apply(Login())  # her queues are reconciled with the PBX next
            # A pause she had (a break, a supervisor's hold) stays; a wrap-up nobody here
            # knows the end of does not: the plan takes that queue back.
            paused = [m for m in self._node.model.members_of(interface)
                      if m.paused and m.paused_reason != WRAPUP]
            if paused:
                desk.machine.apply(
                    PbxPauseObserved(True, paused[0].paused_reason, paused[0].queue)
                )
            self._index(desk)
            log.info("agent %s adopted from the PBX's queue members", account.username)

    # -- plumbing --------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agents service task failed", exc_info=task.exception())

    async def settled(self) -> None:
        """Wait until every intent sent so far has had its answer (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


__all__ = [
    "AgentService",
    "CallHistory",
    "CannotTakeCalls",
    "EndpointInUse",
    "HistoryLookup",
    "NotLoggedIn",
    "RecordedCallHistory",
    "ServiceClock",
    "SystemClock",
    "problem",
]
