"""The simulator's dialplan subset: parsing, ${} and $[] expansion, and the shipped dialplan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.sim import Endpoint, MemberConfig, PhoneBehaviour, QueueConfig, SimConfig, SimPBX
from callcenter.sim.actors import Caller, CallerScript
from callcenter.sim.clock import VirtualClock
from callcenter.sim.dialplan import evaluate, match_pattern, parse_extensions, substitute

SHIPPED = Path(__file__).resolve().parent.parent / "dialplans" / "extensions_1090.conf"


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 / 3", "3"),
        ("5 > 3 & 2 > 1", "1"),
        ("0 | 0", "0"),
        ('"wpl-duty" = "wpl-duty"', "1"),
        ("abc != abc", "0"),
        ("1795329070 - 1795329060", "10"),
        ("12 <= 12", "1"),
        ("-3 < -2", "1"),
    ],
)
def test_expressions(expression: str, value: str) -> None:
    assert evaluate(expression) == value


def test_substitution_nests_inner_first() -> None:
    values = {"A": "5", "EMPTY": "", "NAME": "wpl", "LEN(5)": "1", "LEN()": "0", "ISNULL()": "1"}

    def resolve(expr: str) -> str:
        if expr.startswith("IF("):
            cond, _, rest = expr[3:-1].partition("?")
            yes, _, no = rest.partition(":")
            return yes if cond not in ("", "0") else no
        return values.get(expr, "")

    assert substitute("${IF($[${LEN(${A})} > 0]?${A}:15)}", resolve) == "5"
    assert substitute("${IF($[${LEN(${EMPTY})} > 0]?${EMPTY}:15)}", resolve) == "15"
    assert substitute("x-${NAME:0:2}-$[${A} + 1]", resolve) == "x-wp-6"


def test_patterns() -> None:
    assert match_pattern("_X.", "1090") and not match_pattern("_X.", "1")
    assert match_pattern("_NXX", "234") and not match_pattern("_NXX", "134")
    assert match_pattern("_[1-3]!", "1")


def test_parse_priorities_labels_and_globals() -> None:
    plan = parse_extensions(
        "[globals]\nLIMIT=15\n[ctx]\nexten => s,1,NoOp(a;b) ; comment\n"
        " same => n(lbl),Set(X=1)\n same => n,Hangup()\n"
    )
    ext = plan.find("ctx", "s")
    assert ext is not None
    assert ext.priorities[1] == ("NoOp", "a")
    assert ext.labels["lbl"] == 2 and ext.priorities[3] == ("Hangup", "")
    assert plan.globals == {"LIMIT": "15"}


def test_shipped_dialplan_uses_only_supported_applications() -> None:
    from callcenter.sim.core import PBXCore

    plan = parse_extensions(SHIPPED.read_text())
    apps = {
        app.lower()
        for ctx in plan.contexts.values()
        for ext in ctx.extensions.values()
        for app, _ in ext.priorities.values()
    }
    unsupported = {app for app in apps if not hasattr(PBXCore, "app_" + app)}
    assert not unsupported
    assert plan.find("wpl-inbound", "1090") is not None
    assert plan.find("wpl-inbound", "T") is not None and plan.find("wpl-inbound", "h") is not None


@pytest.fixture
async def shipped() -> AsyncIterator[SimPBX]:
    queues = [
        QueueConfig(
            name, strategy="rrmemory", ringinuse=False, members=[MemberConfig("PJSIP/agent1", "A1")]
        )
        for name in ("wpl-fallback", "wpl-duty", "wpl-general")
    ]
    config = SimConfig(
        endpoints=[
            Endpoint("carrier", "", "9876543210", "wpl-inbound"),
            Endpoint("agent1", "Agent One", "1001", "wpl-agents"),
            Endpoint("wpl-carrier", "", "", "wpl-inbound", PhoneBehaviour(answer_after=None)),
        ],
        queues=queues,
        dialplan=SHIPPED.read_text(),
    )
    sim = SimPBX(config, clock=VirtualClock())
    yield sim
    await sim.core.shutdown()
    sim.clock.stop()  # type: ignore[attr-defined]


async def test_shipped_dialplan_without_backend_goes_to_fallback(shipped: SimPBX) -> None:
    events: list[tuple[str, dict[str, str]]] = []
    shipped.core.listeners.append(lambda name, pairs: events.append((name, dict(pairs))))
    caller = Caller(shipped.core, CallerScript(exten="1090", endpoint="carrier", talk_time=3))
    caller.start()
    await caller.done.wait()
    join = next(h for name, h in events if name == "QueueCallerJoin")
    assert join["Queue"] == "wpl-fallback"
    # her number never reaches the agent: the fallback replaces the caller id
    called = next(h for name, h in events if name == "AgentCalled")
    assert (called["CallerIDNum"], called["CallerIDName"]) == ("1090", "1090-FALLBACK")
    assert not [h for name, h in events if name == "AsyncAGIStart"]


async def test_shipped_dialplan_with_fresh_heartbeat_runs_the_ivr_under_a_watchdog(
    shipped: SimPBX,
) -> None:
    shipped.core.db_put("wpl", "heartbeat", str(int(shipped.clock.now())))
    events: list[tuple[str, dict[str, str]]] = []
    shipped.core.listeners.append(lambda name, pairs: events.append((name, dict(pairs))))
    caller = Caller(shipped.core, CallerScript(exten="1090", endpoint="carrier", talk_time=3))
    caller.start()
    await caller.done.wait()
    names = [name for name, _ in events]
    # nobody answers the AsyncAGI: the watchdog takes her to the fallback queue
    assert "AsyncAGIStart" in names and "AsyncAGIEnd" in names
    assert names.index("AsyncAGIEnd") < names.index("QueueCallerJoin")
    assert next(h for name, h in events if name == "QueueCallerJoin")["Queue"] == "wpl-fallback"
    assert caller.outcome.result == "answered"
