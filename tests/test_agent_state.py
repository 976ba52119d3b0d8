"""The agent state machine (pure) and the softphone registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.agents.errors import InvalidTransition, UnknownPauseReason
from callcenter.agents.models import SkillQueues
from callcenter.agents.state import (
    AUTOPAUSE,
    WRAPUP,
    AddMemberIntent,
    AgentProfile,
    AgentState,
    AgentStateMachine,
    Answer,
    HangUp,
    Intent,
    Login,
    Logout,
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
    SoftphoneRegistry,
    Status,
    Transition,
    Unpause,
    WrapUpDone,
    WrapUpTimeout,
    advance,
    plan,
)

T0 = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)
IFACE = "PJSIP/agent1001"
HI, COUNSELLING, FALLBACK = "wpl-general-hi", "wpl-counselling", "wpl-fallback"
POLICY = Policy(wrap_up=timedelta(seconds=45), recovery=timedelta(minutes=15))


def _profile() -> AgentProfile:
    queues = SkillQueues().queues_for({"hi", "counselling"})
    return AgentProfile("asha", IFACE, queues)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def agent(clock: Clock) -> AgentStateMachine:
    machine = AgentStateMachine(_profile(), POLICY, clock=clock)
    machine.apply(Login())
    return machine


def _pause(queues: tuple[str, ...], paused: bool, reason: str = "") -> PauseIntent:
    return PauseIntent(IFACE, queues, paused, reason)


# -- examples --------------------------------------------------------------------


def test_login_joins_every_skill_queue_and_the_fallback(clock: Clock) -> None:
    machine = AgentStateMachine(_profile(), POLICY, clock=clock)
    assert machine.state.status is Status.LOGGED_OUT
    clock.tick(5)
    outcome = machine.apply(Login())
    assert outcome.state.status is Status.AVAILABLE
    assert outcome.state.entered_at == clock.now
    assert outcome.intents == (
        AddMemberIntent(COUNSELLING, IFACE, "asha"),
        AddMemberIntent(HI, IFACE, "asha"),
        AddMemberIntent(FALLBACK, IFACE, "asha"),
    )
    out = machine.apply(Logout())
    assert out.state.status is Status.LOGGED_OUT
    assert out.intents == tuple(RemoveMemberIntent(q, IFACE) for q in (COUNSELLING, HI, FALLBACK))


def test_a_call_wrap_up_pauses_per_queue_at_connect_never_the_fallback(
    agent: AgentStateMachine, clock: Clock
) -> None:
    assert agent.apply(Ring("1700000000.42", HI)).intents == ()
    assert agent.state.status is Status.RINGING

    clock.tick(4)
    answered = agent.apply(Answer("1700000000.42", HI))
    assert answered.state.status is Status.ON_CALL
    assert answered.state.entered_at == clock.now
    # At AgentConnect, so app_queue cannot ring her between hang-up and our pause.
    assert answered.intents == (_pause((COUNSELLING, HI), True, WRAPUP),)

    clock.tick(300)
    ended = agent.apply(HangUp("1700000000.42"))
    assert ended.state.status is Status.WRAP_UP
    assert ended.intents == ()
    assert ended.state.wrap_up_deadline == clock.now + timedelta(seconds=45)
    assert ended.state.shown_reason == "wrapup (call 1700000000.42)"

    clock.tick(20)
    done = agent.apply(WrapUpDone("1700000000.42"))
    assert done.state.status is Status.AVAILABLE
    assert done.intents == (_pause((COUNSELLING, HI), False),)


def test_wrap_up_timer(agent: AgentStateMachine, clock: Clock) -> None:
    agent.apply(Ring("c1"))
    agent.apply(Answer("c1"))
    agent.apply(HangUp("c1"))
    clock.tick(44)
    early = agent.apply(WrapUpTimeout("c1"))
    assert early.ignored and early.state.status is Status.WRAP_UP
    clock.tick(1)
    timed_out = agent.apply(WrapUpTimeout("c1"))
    assert timed_out.state.status is Status.AVAILABLE
    assert timed_out.intents == (_pause((COUNSELLING, HI), False),)
    stale = agent.apply(WrapUpTimeout("c1"))
    assert stale.ignored == "stale wrap-up timer"


def test_zero_wrap_up_goes_straight_back(clock: Clock) -> None:
    machine = AgentStateMachine(_profile(), Policy(wrap_up=timedelta(0)), clock=clock)
    machine.apply(Login())
    machine.apply(Answer("c1"))
    out = machine.apply(HangUp("c1"))
    assert out.state.status is Status.AVAILABLE
    assert out.intents == (_pause((COUNSELLING, HI), False),)


def test_a_break_asked_for_during_a_call_starts_after_wrap_up(agent: AgentStateMachine) -> None:
    agent.apply(Ring("c1"))
    agent.apply(Answer("c1"))
    asked = agent.apply(Pause("meal"))
    assert asked.state.status is Status.ON_CALL
    # The fallback is paused now (she will not be free), the others keep "wrapup".
    assert asked.intents == (_pause((FALLBACK,), True, "meal"),)
    agent.apply(HangUp("c1"))
    after = agent.apply(WrapUpDone())
    assert after.state.status is Status.PAUSED
    assert after.state.pause is not None and after.state.pause.code == "meal"
    assert after.intents == (_pause((COUNSELLING, HI), True, "meal"),)


def test_changing_her_mind_about_a_pending_break(agent: AgentStateMachine) -> None:
    agent.apply(Answer("c1"))
    agent.apply(Pause("break"))
    cancelled = agent.apply(Unpause())
    assert cancelled.state.pending is None
    assert cancelled.intents == (_pause((FALLBACK,), False),)


def test_ring_no_answer_autopauses_everywhere_until_she_is_back(
    agent: AgentStateMachine,
) -> None:
    agent.apply(Ring("c1", HI))
    missed = agent.apply(RingNoAnswer("c1", HI))
    assert missed.state.status is Status.PAUSED
    assert missed.state.shown_reason == f"autopause (no answer in {HI})"
    assert missed.intents == (_pause((COUNSELLING, HI, FALLBACK), True, AUTOPAUSE),)
    # app_queue's own per-queue "Auto-Pause" arrives afterwards: nothing changes.
    echo = agent.apply(PbxPauseObserved(True, "Auto-Pause", HI))
    assert echo.ignored and echo.intents == ()
    back = agent.apply(Unpause())
    assert back.state.status is Status.AVAILABLE
    assert back.intents == (_pause((COUNSELLING, HI, FALLBACK), False),)


def test_answering_proves_she_is_back_from_autopause(agent: AgentStateMachine) -> None:
    agent.apply(Ring("c1"))
    agent.apply(RingNoAnswer("c1"))
    # Our pause had not landed in one queue yet: it rang, and she answered.
    agent.apply(Ring("c2", FALLBACK))
    answered = agent.apply(Answer("c2", FALLBACK))
    assert answered.state.pending is None
    assert answered.intents == (
        _pause((COUNSELLING, HI), True, WRAPUP),
        _pause((FALLBACK,), False),
    )
    agent.apply(HangUp("c2"))
    assert agent.apply(WrapUpDone()).state.status is Status.AVAILABLE


def test_a_ring_that_beats_her_break_does_not_cancel_it(agent: AgentStateMachine) -> None:
    agent.apply(Pause("break"))
    rung = agent.apply(Ring("c1", HI))
    assert rung.state.status is Status.RINGING and rung.intents == ()
    gone = agent.apply(HangUp("c1"))  # the caller left before she answered
    assert gone.state.status is Status.PAUSED
    assert gone.state.pause is not None and gone.state.pause.code == "break"
    assert gone.intents == ()


def test_recovery_pause_after_a_distress_call(agent: AgentStateMachine, clock: Clock) -> None:
    agent.apply(Ring("c1"))
    agent.apply(Answer("c1"))
    agent.apply(Pause("break"))
    agent.apply(RecoveryPause(call="c1"))  # the case was flagged: distress
    agent.apply(HangUp("c1"))
    clock.tick(30)
    after = agent.apply(WrapUpDone())
    pause = after.state.pause
    assert after.state.status is Status.PAUSED and pause is not None
    assert (pause.code, pause.origin) == ("recovery", PauseOrigin.SYSTEM)
    assert pause.until == clock.now + timedelta(minutes=15)
    assert after.state.shown_reason == "recovery (after call c1)"
    # She may come back when she is ready; the backend does not hold her.
    assert agent.apply(Unpause()).state.status is Status.AVAILABLE


def test_recovery_pause_when_idle_starts_now(agent: AgentStateMachine, clock: Clock) -> None:
    out = agent.apply(RecoveryPause(timedelta(minutes=5)))
    assert out.state.pause is not None and out.state.pause.until == clock.now + timedelta(
        minutes=5
    )
    assert out.intents == (_pause((COUNSELLING, HI, FALLBACK), True, "recovery"),)


def test_a_fallback_ring_during_wrap_up(agent: AgentStateMachine, clock: Clock) -> None:
    agent.apply(Answer("c1", HI))
    agent.apply(HangUp("c1"))
    deadline = agent.state.wrap_up_deadline
    clock.tick(10)
    rung = agent.apply(Ring("c2", FALLBACK))
    assert rung.state.status is Status.RINGING and rung.intents == ()
    unanswered = agent.apply(HangUp("c2"))
    assert unanswered.state.status is Status.WRAP_UP
    assert unanswered.state.call == "c1" and unanswered.state.wrap_up_deadline == deadline
    assert unanswered.intents == ()

    agent.apply(Ring("c3", FALLBACK))
    assert agent.apply(Answer("c3", FALLBACK)).intents == ()
    agent.apply(HangUp("c3"))
    assert agent.state.call == "c3"
    assert agent.apply(WrapUpDone("c3")).state.status is Status.AVAILABLE


def test_someone_else_pauses_her_on_the_pbx(agent: AgentStateMachine) -> None:
    out = agent.apply(PbxPauseObserved(True, "lunch", HI))
    assert out.state.status is Status.PAUSED
    assert out.state.shown_reason == f"lunch (paused on the PBX in {HI})"
    assert out.state.pause is not None and out.state.pause.origin is PauseOrigin.PBX
    # Already paused in that queue; the others follow.
    assert out.intents == (_pause((COUNSELLING, FALLBACK), True, "lunch"),)
    # Echoes of those two are ours; the third "unpause" is someone else's.
    assert agent.apply(PbxPauseObserved(True, "lunch", COUNSELLING)).ignored
    assert agent.apply(PbxPauseObserved(True, "lunch", FALLBACK)).ignored
    unpaused = agent.apply(PbxPauseObserved(False, "", HI))
    assert unpaused.state.status is Status.AVAILABLE
    assert unpaused.intents == (_pause((COUNSELLING, FALLBACK), False),)


def test_an_older_echo_does_not_undo_a_newer_pause(agent: AgentStateMachine) -> None:
    agent.apply(Pause("break"))
    agent.apply(Unpause())
    agent.apply(Pause("meeting"))
    # The PBX now reports the break, then the unpause, then the meeting, per queue.
    for paused in (True, False):
        out = agent.apply(PbxPauseObserved(paused, "break" if paused else "", HI))
        assert out.ignored and agent.state.status is Status.PAUSED
    assert agent.state.pause is not None and agent.state.pause.code == "meeting"


def test_member_removed_on_the_pbx(agent: AgentStateMachine) -> None:
    one = agent.apply(PbxMemberGone(COUNSELLING))
    assert one.state.members == (HI, FALLBACK) and one.intents == ()
    assert agent.apply(PbxMemberGone("wpl-duty")).ignored
    gone = agent.apply(PbxMemberGone())
    assert gone.state.status is Status.LOGGED_OUT and gone.intents == ()
    assert agent.apply(PbxMemberGone()).ignored


@pytest.mark.parametrize(
    ("setup", "transition", "error"),
    [
        ((), Login(), "already logged in"),
        ((), Unpause(), "not paused"),
        ((), WrapUpDone(), "not in wrap-up"),
        ((Ring("c1"),), Logout(), "finish the call first"),
        ((Answer("c1"),), Logout(), "finish the call first"),
        ((Answer("c1"), HangUp("c1")), WrapUpDone("c9"), "for call c1"),
        ((Logout(),), Logout(), "not logged in"),
        ((Logout(),), Pause("break"), "not logged in"),
    ],
)
def test_invalid_commands_raise(
    agent: AgentStateMachine, setup: tuple[Transition, ...], transition: Transition, error: str
) -> None:
    for step in setup:
        agent.apply(step)
    before = agent.state
    with pytest.raises(InvalidTransition, match=error):
        agent.apply(transition)
    assert agent.state == before


def test_unknown_and_system_pause_reasons_are_refused(agent: AgentStateMachine) -> None:
    for reason in ("nap", WRAPUP, AUTOPAUSE, ""):
        with pytest.raises(UnknownPauseReason):
            agent.apply(Pause(reason))
    with pytest.raises(ValueError):
        Policy(pause_reasons=("break", WRAPUP))


def test_observations_in_the_wrong_state_are_ignored_not_refused(
    agent: AgentStateMachine,
) -> None:
    for observation in (HangUp("c1"), RingNoAnswer("c1"), PbxPauseObserved(False, "", HI)):
        out = agent.apply(observation)
        assert out.ignored and out.state == agent.state and out.intents == ()


def test_reconcile_after_reconnect(agent: AgentStateMachine) -> None:
    agent.apply(Answer("c1", HI))
    agent.apply(HangUp("c1"))
    # QueueStatus after an AMI reconnect: the PBX restarted without persistent members
    # for the counselling queue, and lost the wrap-up pause in the Hindi one.
    observed = {HI: QueuePlan(False), FALLBACK: QueuePlan(False)}
    assert agent.reconcile(observed) == (
        AddMemberIntent(COUNSELLING, IFACE, "asha", True, WRAPUP),
        _pause((HI,), True, WRAPUP),
    )
    # Only the echo of what reconcile sent is awaited now.
    assert agent.state.awaiting == ((HI, True),)


# -- properties --------------------------------------------------------------------

CALLS = ("c1", "c2")
QUEUES = (HI, COUNSELLING, FALLBACK)

commands = st.one_of(
    st.just(Login()),
    st.just(Logout()),
    st.sampled_from(["break", "meal", "recovery", "nap"]).map(Pause),
    st.just(Unpause()),
    st.sampled_from(CALLS).map(WrapUpDone),
    st.just(WrapUpDone()),
)
pbx_calls = st.one_of(
    st.builds(Ring, st.sampled_from(CALLS), st.sampled_from(QUEUES)),
    st.builds(Answer, st.sampled_from(CALLS), st.sampled_from(QUEUES)),
    st.sampled_from(CALLS).map(HangUp),
    st.builds(RingNoAnswer, st.sampled_from(CALLS)),
    st.sampled_from(CALLS).map(WrapUpTimeout),
    st.builds(RecoveryPause, st.sampled_from([None, timedelta(minutes=3)])),
)
pbx_member_changes = st.one_of(
    st.builds(
        PbxPauseObserved, st.booleans(), st.sampled_from(["", "lunch", WRAPUP, "Auto-Pause"]),
        st.sampled_from([*QUEUES, None]),
    ),
    st.builds(PbxMemberGone, st.sampled_from([*QUEUES, None])),
)


@dataclass
class FakeMembers:
    """app_queue's member table for one interface, changed only by intents."""

    queues: dict[str, QueuePlan] = field(default_factory=dict)

    def apply(self, intent: Intent) -> None:
        if isinstance(intent, AddMemberIntent):
            assert intent.queue not in self.queues, "QueueAdd of a member already there"
            self.queues[intent.queue] = QueuePlan(intent.paused, intent.reason)
        elif isinstance(intent, RemoveMemberIntent):
            assert self.queues.pop(intent.queue, None) is not None, "QueueRemove: not there"
        else:
            assert intent.queues, "a pause intent names its queues"
            for queue in intent.queues:
                assert queue in self.queues, "QueuePause of a non-member"
                self.queues[queue] = QueuePlan(intent.paused, intent.reason)


def _check_invariants(
    profile: AgentProfile, before: AgentState, transition: Transition, now: datetime,
    after: AgentState, intents: tuple[Intent, ...],
) -> None:
    status = after.status
    assert (after.call is not None) == (status in (Status.RINGING, Status.ON_CALL,
                                                   Status.WRAP_UP))
    if status is Status.PAUSED:
        assert after.pause is not None and after.pause.code, "every pause has a reason"
    if status is Status.WRAP_UP:
        assert after.pause is not None and after.pause.code == WRAPUP
        assert after.wrap_up_deadline is not None
    if status in (Status.AVAILABLE, Status.RINGING, Status.ON_CALL, Status.LOGGED_OUT):
        assert after.pause is None
    if status is not Status.RINGING:
        assert after.interrupted is None
    if status is Status.LOGGED_OUT:
        assert after.members == () and after.pending is None and after.awaiting == ()
    else:
        assert after.members and set(after.members) <= set(profile.queues)
    if status is Status.ON_CALL and before.status is not Status.ON_CALL:
        assert isinstance(transition, Answer), "on_call only through Answer"
    if (status, after.pause) != (before.status, before.pause):
        assert after.entered_at == now
    for intent in intents:
        if isinstance(intent, PauseIntent):
            assert intent.queues
            if intent.paused:
                assert intent.reason, "every pause intent has a reason"
            if intent.reason == WRAPUP:
                assert profile.fallback not in intent.queues, "wrap-up never in the fallback"
        if isinstance(intent, AddMemberIntent):
            assert not (intent.paused and not intent.reason)
            assert not (intent.reason == WRAPUP and intent.queue == profile.fallback)
    for queue, wanted in plan(profile, after).items():
        if wanted.reason == WRAPUP:
            assert queue != profile.fallback


def _run(steps: list[tuple[Transition, int]], track_pbx: bool) -> None:
    profile = _profile()
    now = T0
    state = AgentState(Status.LOGGED_OUT, now)
    pbx = FakeMembers()
    for transition, seconds in steps:
        now += timedelta(seconds=seconds)
        try:
            outcome = advance(profile, POLICY, state, transition, now)
        except InvalidTransition:
            assert not isinstance(
                transition, (Ring, Answer, HangUp, RingNoAnswer, PbxPauseObserved,
                             PbxMemberGone, WrapUpTimeout, RecoveryPause)
            ), "observations are never refused"
            continue
        _check_invariants(profile, state, transition, now, outcome.state, outcome.intents)
        if outcome.ignored:
            assert outcome.state.status == state.status and outcome.intents == ()
        if track_pbx:
            for intent in outcome.intents:
                pbx.apply(intent)
            # The intents are exactly the difference: the PBX now looks like the plan.
            assert pbx.queues == {
                q: p if p.paused else QueuePlan(False) for q, p in plan(profile,
                                                                        outcome.state).items()
            }
        state = outcome.state


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(commands, pbx_calls), st.integers(0, 120)), max_size=40))
def test_intents_keep_the_pbx_exactly_on_plan(steps: list[tuple[Transition, int]]) -> None:
    _run(steps, track_pbx=True)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(commands, pbx_calls, pbx_member_changes), st.integers(0, 120)),
        max_size=40,
    )
)
def test_invariants_hold_whatever_the_pbx_reports(steps: list[tuple[Transition, int]]) -> None:
    _run(steps, track_pbx=False)


# -- softphone registration --------------------------------------------------------


def test_softphone_registration_from_contact_status_and_device_state() -> None:
    phones = SoftphoneRegistry()
    assert phones.get("PJSIP/agent1001").reachability is Reachability.UNKNOWN

    created = phones.contact_status("agent1001", "Created", T0)
    assert created is not None and created.reachability is Reachability.REGISTERED
    reachable = phones.contact_status("agent1001", "Reachable", T0 + timedelta(seconds=1))
    assert reachable is not None and reachable.usable
    # A re-registration of a phone that answers qualify changes nothing.
    assert phones.contact_status("agent1001", "Updated", T0 + timedelta(seconds=60)) is None

    in_use = phones.device_state("PJSIP/agent1001", "INUSE", T0 + timedelta(seconds=70))
    assert in_use is not None and in_use.device_state == "INUSE"
    assert in_use.since == T0 + timedelta(seconds=1), "still reachable since then"

    lost = phones.device_state("PJSIP/agent1001", "UNAVAILABLE", T0 + timedelta(seconds=90))
    assert lost is not None and lost.reachability is Reachability.UNREACHABLE
    assert phones.unusable(["PJSIP/agent1001", "PJSIP/agent1002"]) == [
        lost, phones.get("PJSIP/agent1002"),
    ]
    removed = phones.contact_status("agent1001", "Removed", T0 + timedelta(seconds=95))
    assert removed is not None and removed.reachability is Reachability.UNREGISTERED
    # UNAVAILABLE after the contact is gone keeps the more precise "unregistered".
    assert phones.device_state("PJSIP/agent1001", "UNAVAILABLE", T0 + timedelta(seconds=96)) is None
    assert phones.get("PJSIP/agent1001").reachability is Reachability.UNREGISTERED
    # She switches the softphone back on.
    back = phones.device_state("PJSIP/agent1001", "NOT_INUSE", T0 + timedelta(seconds=200))
    assert back is not None and back.usable and back.since == T0 + timedelta(seconds=200)

    assert phones.device_state("Queue:wpl-fallback_avail", "NOT_INUSE", T0) is None
    assert phones.contact_status("agent1001", "Bogus", T0) is None


def test_a_leftover_wrap_up_pause_is_taken_back(agent: AgentStateMachine) -> None:
    # A wrap-up pause this instance never set (another instance, before a failover).
    out = agent.apply(PbxPauseObserved(True, WRAPUP, HI))
    assert out.state.status is Status.AVAILABLE
    assert out.intents == (_pause((HI,), False),)
