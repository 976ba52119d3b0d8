"""The Asterisk configuration the product ships (``dialplans/``).

These files run on a real PBX where nobody runs our tests, so the checks here
stand in for a careful reviewer: the dialplan keeps to the subset the
simulator implements, never leaves a caller without a way to a person, never
shows her number to an agent; queues, AMI and PJSIP settings keep the
promises README.md makes. The AMI event filters are replayed against the
recorded Asterisk 22 traces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from callcenter.ami.parser import AMIParser
from callcenter.ivr.menu import load_menu
from callcenter.pbx import asterisk_conf
from callcenter.pbx.asterisk_conf import AsteriskConfError, Dialplan, Step

ROOT = Path(__file__).resolve().parent.parent
DIALPLANS = ROOT / "dialplans"
TRACES = ROOT / "tests" / "fixtures" / "asterisk"

SHIPPED = sorted(p.name for p in DIALPLANS.iterdir() if p.suffix in (".conf", ".sample"))

ALLOWED_APPS = {
    "Answer", "NoOp", "Set", "GotoIf", "Goto", "Gosub", "Return", "AGI", "Queue", "Dial",
    "Playback", "Wait", "Hangup", "MixMonitor", "ExecIf", "ChanSpy", "ConfBridge",
}  # fmt: skip
#: What an external transfer destination sees (set by the backend through AMI Setvar,
#: inherited by the consult leg); not WPL_ on purpose: the AMI event filter drops its VarSet.
TRANSFER_VARIABLES = {"XFER_PRESENT_NUM", "XFER_PRESENT_NAME"}
ALLOWED_FUNCTIONS = {"CALLERID", "TIMEOUT", "DB", "DB_EXISTS", "IF", "LEN", "ISNULL"}
ALLOWED_BUILTINS = {
    "EPOCH",
    "QUEUESTATUS",
    "DIALSTATUS",
    "UNIQUEID",
    "LINKEDID",
    "CHANNEL",
    "EXTEN",
}


def _dialplan() -> Dialplan:
    return asterisk_conf.parse_dialplan(asterisk_conf.load(DIALPLANS / "extensions_1090.conf"))


# ---------------------------------------------------------------------------
# The .conf reader itself


def test_reader_comments_escapes_templates_and_append() -> None:
    conf = asterisk_conf.parse(
        "; header comment\n"
        "[tpl](!)\n"
        "a = 1 ; trailing comment\n"
        "[real](tpl)\n"
        "b => semi\\;colon\n"
        ";-- a block\n"
        "c = hidden --;\n"
        "d = 4\n"
        "[real](+)\n"
        "e = 5\n"
        "#include other.conf\n",
        "t.conf",
    )
    assert conf.section_names() == ["real"]
    assert conf.section("tpl").is_template
    real = conf.section("real")
    assert [(o.name, o.value, o.operator) for o in real.options] == [
        ("b", "semi;colon", "=>"),
        ("d", "4", "="),
        ("e", "5", "="),
    ]
    assert conf.resolved_get("real", "a") == "1"
    assert [d.name for d in conf.directives] == ["include"]
    assert real.options[1].lineno == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = 1\n", "outside any [section]"),
        ("[x](missing)\n", "not defined above"),
        ("[x](+)\n", "does not exist"),
        ("[x]\njunk line\n", "no '='"),
        ("[x\n", "malformed section header"),
        ("[x]\n;-- never closed\n", "unclosed"),
    ],
)
def test_reader_refuses_what_asterisk_refuses(text: str, message: str) -> None:
    with pytest.raises(AsteriskConfError, match=re.escape(message)) as info:
        asterisk_conf.parse(text, "bad.conf")
    assert info.value.filename == "bad.conf"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[c]\nsame => n,NoOp()\n", "no 'exten =>' before it"),
        ("[c]\nexten => 1,1,NoOp()\nexten => 1,1,Hangup()\n", "defined twice"),
        ("[c]\nexten => 1,x,NoOp()\n", "bad priority"),
        ("[c]\nexten => 1,1,No Op()\n", "bad application"),
    ],
)
def test_dialplan_reader_refuses_broken_extensions(text: str, message: str) -> None:
    with pytest.raises(AsteriskConfError, match=re.escape(message)):
        asterisk_conf.parse_dialplan(asterisk_conf.parse(text))


def test_dialplan_reader_numbers_same_and_labels() -> None:
    plan = asterisk_conf.parse_dialplan(
        asterisk_conf.parse(
            "[globals]\nG=1\n[c]\nexten => _X.,1,Answer()\n same => n(x),Set(A=b,c)\n"
            " same => n,Hangup()\n"
        )
    )
    extension = plan.extension("c", "1090")
    assert extension is not None and extension.name == "_X."
    step = extension.label("x")
    assert step is not None and (step.priority, step.app, step.args) == (2, "Set", "A=b,c")
    assert plan.globals == {"G": "1"}
    assert plan.extension("c", "T") is None


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_parses(name: str) -> None:
    conf = asterisk_conf.load(DIALPLANS / name)
    assert conf.sections
    assert not conf.directives, "shipped files must not #include/#exec anything"


# ---------------------------------------------------------------------------
# extensions_1090.conf: the subset


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside ${...}, $[...] and (...)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _balanced(text: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack


def test_dialplan_uses_only_the_simulated_subset() -> None:
    plan = _dialplan()
    steps = list(plan.steps())
    assert steps
    for step in steps:
        assert step.app in ALLOWED_APPS, f"{step.where}: {step.app} is outside the subset"
        assert _balanced(step.args), f"{step.where}: unbalanced brackets in {step.args!r}"
        for function in re.findall(r"\$\{([A-Z_]+)\(", step.args):
            assert function in ALLOWED_FUNCTIONS, f"{step.where}: function {function}"
        for variable in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", step.args):
            assert (
                variable in ALLOWED_BUILTINS
                or variable.startswith(("WPL_", "HL_"))
                or variable == "QUEUE_PRIO"
                or variable in TRANSFER_VARIABLES
            ), f"{step.where}: variable {variable}"
        if step.app == "AGI":
            assert step.args == "agi:async", f"{step.where}: only AsyncAGI is simulated"
        if step.app == "Queue":
            arguments = step.args.split(",")
            # queue, options, URL, announceoverride, timeout: nothing else.
            assert len(arguments) in (2, 5), f"{step.where}: {step.args}"
            assert set(arguments[1]) <= {"t"}, f"{step.where}: options {arguments[1]!r}"
        if step.app == "Set":
            target = step.args.split("=", 1)[0]
            assert re.fullmatch(
                r"[A-Z][A-Z0-9_]*|CALLERID\((num|name)\)|TIMEOUT\(absolute\)"
                r"|__XFER_PRESENT_NUM"
                # The callback's mark that its call was placed (read by the settler).
                r"|DB\(wpl_call/\$\{WPL_TASK\}\)", target
            ), f"{step.where}: Set({target}=...)"


def _targets(plan: Dialplan, step: Step) -> Iterator[tuple[str, str, str]]:
    """(context, exten, priority-or-label) of each Goto/GotoIf destination."""
    if step.app == "Goto":
        destinations = [step.args]
    elif step.app == "GotoIf":
        condition, _, branches = step.args.partition("?")
        assert condition.startswith("$[") and _balanced(condition), step.where
        destinations = [b for b in _split_top(branches, ":") if b]
    else:
        return
    for destination in destinations:
        parts = destination.split(",")
        if len(parts) == 1:
            yield step.context, step.exten, parts[0]
        elif len(parts) == 2:
            yield step.context, parts[0], parts[1]
        else:
            yield parts[0], parts[1], parts[2]


def _resolve(plan: Dialplan, context: str, exten: str, where: str) -> Step | None:
    extension = plan.extension(context, exten)
    if extension is None:
        return None
    return extension.step(int(where)) if where.isdigit() else extension.label(where)


def test_every_goto_lands_on_an_existing_step() -> None:
    plan = _dialplan()
    for step in plan.steps():
        for context, exten, where in _targets(plan, step):
            assert _resolve(plan, context, exten, where) is not None, (
                f"{step.where}: {step.app}({step.args}) goes to missing {exten}@{context}:{where}"
            )


def test_every_extension_starts_at_priority_one_without_gaps() -> None:
    for extensions in _dialplan().contexts.values():
        for extension in extensions.values():
            priorities = [s.priority for s in extension.steps]
            assert priorities == list(range(1, len(priorities) + 1)), extension.name


def test_inbound_context_has_timeout_and_hangup_extensions() -> None:
    plan = _dialplan()
    inbound = plan.contexts["wpl-inbound"]
    assert {"T", "h", "_X.", "s"} <= set(inbound)
    t_steps = inbound["T"].steps
    assert any(s.app == "Goto" and s.args.startswith("wpl-fallback,") for s in t_steps)


def test_asterisklint_finds_nothing(tmp_path: Path) -> None:
    """A second opinion from an independent checker of Asterisk's applications,
    functions and expressions (pip install asterisklint; optional)."""
    pytest.importorskip("asterisklint")
    # asterisklint expects a whole extensions.conf, which starts with [general].
    shipped = (DIALPLANS / "extensions_1090.conf").read_text()
    (tmp_path / "extensions.conf").write_text("[general]\n\n" + shipped)
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; from asterisklint.main import main; "
         "sys.exit(main(sys.argv[1:], os.environ))", "dialplan-check", "extensions.conf"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.stdout + result.stderr == "", result.stdout + result.stderr
    assert result.returncode == 0


# ---------------------------------------------------------------------------
# extensions_1090.conf: every way through it


@dataclass(frozen=True)
class _State:
    name_hidden: bool = False
    number_hidden: bool = False
    ivr_ran: bool = False
    heartbeat_checked: bool = False
    watchdog_armed: bool = False


def _walk(plan: Dialplan, start: Step, state: _State) -> Iterator[tuple[Step, _State]]:
    """Every (step, state) reachable from ``start``, following both sides of
    each GotoIf: a symbolic run of the dialplan, path by path."""
    seen: set[tuple[str, str, int, _State]] = set()
    todo = [(start, state)]
    while todo:
        step, state = todo.pop()
        key = (step.context, step.exten, step.priority, state)
        if key in seen:
            continue
        seen.add(key)
        yield step, state
        if step.app == "Set":
            target, _, value = step.args.partition("=")
            if target == "CALLERID(name)":
                state = replace(state, name_hidden=True)
            elif target == "CALLERID(num)":
                state = replace(state, number_hidden=True)
            elif target == "TIMEOUT(absolute)":
                state = replace(state, watchdog_armed=value.strip() != "0")
        if step.app == "GotoIf" and "wpl/heartbeat" in step.args:
            state = replace(state, heartbeat_checked=True)
        if step.app == "AGI":
            state = replace(state, ivr_ran=True)
        if step.app == "Hangup":
            continue
        nexts: list[Step | None] = []
        if step.app in ("Goto", "GotoIf"):
            nexts += [_resolve(plan, *target) for target in _targets(plan, step)]
        if step.app != "Goto":
            if step.app == "GotoIf" and len(_split_top(step.args.partition("?")[2], ":")) == 2:
                pass  # both branches named: no fall-through
            else:
                extension = plan.extension(step.context, step.exten)
                assert extension is not None
                nexts.append(extension.step(step.priority + 1))
        todo.extend((n, state) for n in nexts if n is not None)


def _inbound_starts(plan: Dialplan) -> list[tuple[Step, _State]]:
    inbound = plan.contexts["wpl-inbound"]
    return [
        (inbound["_X."].steps[0], _State()),
        (inbound["s"].steps[0], _State()),
        # The watchdog fired: the IVR may or may not have replaced her ID.
        (inbound["T"].steps[0], _State()),
    ]


def test_ivr_runs_only_after_the_heartbeat_check_and_under_the_watchdog() -> None:
    plan = _dialplan()
    agi_seen = 0
    for start, state in _inbound_starts(plan):
        for step, at in _walk(plan, start, state):
            if step.app == "AGI":
                agi_seen += 1
                assert at.heartbeat_checked, f"{step.where}: AGI without the heartbeat check"
                assert at.watchdog_armed, f"{step.where}: AGI without TIMEOUT(absolute)"
    assert agi_seen


def test_watchdog_is_disarmed_before_any_queue_or_dial() -> None:
    plan = _dialplan()
    for start, state in _inbound_starts(plan):
        for step, at in _walk(plan, start, state):
            if step.app in ("Queue", "Dial"):
                assert not at.watchdog_armed, f"{step.where}: TIMEOUT(absolute) still armed"


def test_no_way_reaches_an_agent_with_her_number() -> None:
    """Every Queue()/Dial() is reached either after the IVR (which sets her
    token) or after the dialplan replaced both name and number itself."""
    plan = _dialplan()
    reached = set()
    for start, state in _inbound_starts(plan):
        for step, at in _walk(plan, start, state):
            if step.app in ("Queue", "Dial"):
                reached.add(step.where)
                assert at.ivr_ran or (at.name_hidden and at.number_hidden), (
                    f"{step.where}: reached with the carrier's caller ID"
                )
    # The fallback queue, the overflow queues and the emergency dial are all
    # reachable from an inbound call.
    assert any("wpl-fallback" in w for w in reached)
    assert any("wpl-overflow" in w for w in reached)


def test_a_caller_is_never_hung_up_on_before_someone_answered() -> None:
    """Follow every way, including a Queue() or Dial() that gives up on her:
    the only ends allowed are a Dial that was answered and a wait without
    time limit in a queue that never refuses or empties anyone out."""
    plan = _dialplan()
    queues = _queues()

    def never_refuses(queue: str) -> bool:
        return (
            queues.resolved_get(queue, "joinempty") == "yes"
            and queues.resolved_get(queue, "leavewhenempty") == "no"
        )

    for start, _ in _inbound_starts(plan):
        todo, seen = [start], set()
        while todo:
            step = todo.pop()
            if step.where in seen:
                continue
            seen.add(step.where)
            if step.app == "Queue":
                name, *rest = step.args.split(",")
                if len(rest) < 4 and never_refuses(name):
                    continue  # she waits there until someone answers
            assert step.app != "Hangup", f"{step.where}: hangs up on a caller nobody answered"
            extension = plan.extension(step.context, step.exten)
            assert extension is not None
            following = extension.step(step.priority + 1)
            if step.app == "Goto":
                nexts = [_resolve(plan, *t) for t in _targets(plan, step)]
            elif step.app == "GotoIf":
                answered = '"${DIALSTATUS}" = "ANSWER"' in step.args
                targets = [] if answered else [_resolve(plan, *t) for t in _targets(plan, step)]
                nexts = targets + [following]
            else:
                assert following is not None, f"{step.where}: falls off the end"
                nexts = [following]
            todo.extend(n for n in nexts if n is not None)


def test_dialplan_never_reads_the_callers_number() -> None:
    text = (DIALPLANS / "extensions_1090.conf").read_text()
    code = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    assert not re.search(r"CALLERID\((num|all|ani|number)\)\}", code)
    assert "CONNECTEDLINE" not in code


def test_queue_names_in_dialplan_and_menu_exist() -> None:
    queues = {
        s.name for s in asterisk_conf.load(DIALPLANS / "queues_1090.conf") if not s.is_template
    } - {"general"}
    for step in _dialplan().steps():
        if step.app == "Queue":
            name = step.args.split(",")[0]
            assert name.startswith("${") or name in queues, f"{step.where}: {name}"
    menu = load_menu(ROOT / "config" / "ivr.toml")
    used = {r.queue for r in menu.routes.values() if r.queue}
    used |= {q for r in menu.routes.values() for q in (r.queue_by_language or {}).values()}
    assert used <= queues
    # Every queue has a purpose: reached from the menu or the dialplan.
    dialplan_queues = {s.args.split(",")[0] for s in _dialplan().steps() if s.app == "Queue"}
    assert queues <= used | dialplan_queues


# ---------------------------------------------------------------------------
# queues_1090.conf


def _queues() -> asterisk_conf.ConfFile:
    return asterisk_conf.load(DIALPLANS / "queues_1090.conf")


def test_queue_general_settings() -> None:
    general = _queues().section("general")
    assert general.get("persistentmembers") == "yes"
    assert general.get("shared_lastcall") == "yes"


def test_queue_members_are_all_dynamic_and_agents_never_double_rung() -> None:
    conf = _queues()
    for name in conf.section_names():
        if name == "general":
            continue
        options = {o.name.lower() for o in conf.resolved(name)}
        assert "member" not in options, f"{name}: static member"
        assert conf.resolved_get(name, "ringinuse") == "no", name
        assert conf.resolved_get(name, "autopause") == "yes", name
        assert conf.resolved_get(name, "strategy") in ("rrmemory", "leastrecent"), name
        assert int(conf.resolved_get(name, "wrapuptime") or 0) > 0, name


def test_queue_weights_put_danger_and_distress_first() -> None:
    conf = _queues()

    def weight(name: str) -> int:
        return int(conf.resolved_get(name, "weight") or 0)

    assert weight("wpl-emergency") > weight("wpl-counselling")
    assert weight("wpl-counselling") > max(weight("wpl-general-hi"), weight("wpl-general-en"))
    assert weight("wpl-callback") < weight("wpl-general-hi")


def test_fallback_queue_never_refuses_and_waiting_callers_hear_112() -> None:
    conf = _queues()
    assert conf.resolved_get("wpl-fallback", "joinempty") == "yes"
    assert conf.resolved_get("wpl-fallback", "leavewhenempty") == "no"
    for name in ("wpl-emergency", "wpl-fallback", "wpl-general-hi", "wpl-general-en"):
        assert "112" in (conf.resolved_get(name, "periodic-announce") or ""), name
        assert conf.resolved_get(name, "announce-position") == "yes", name


# ---------------------------------------------------------------------------
# manager.conf.sample


def _manager_user() -> asterisk_conf.Section:
    return asterisk_conf.load(DIALPLANS / "manager.conf.sample").section("callcenter")


def test_manager_listens_privately_with_least_privilege() -> None:
    conf = asterisk_conf.load(DIALPLANS / "manager.conf.sample")
    general = conf.section("general")
    assert general.get("bindaddr") == "127.0.0.1"
    assert general.get("timestampevents") == "yes"
    assert general.get("webenabled") == "no"
    user = _manager_user()
    assert user.get_all("deny") == ["0.0.0.0/0.0.0.0"]
    assert user.get_all("permit") == ["127.0.0.1/255.255.255.255"]
    assert int(user.get("writetimeout") or 0) >= 100
    read = set((user.get("read") or "").split(","))
    write = set((user.get("write") or "").split(","))
    assert not {"all", "command", "config"} & (read | write)
    # What the backend does: heartbeat (system), IVR (agi), queues (agent),
    # callbacks (originate), channel control (call).
    assert {"system", "agi", "agent", "originate", "call"} <= write
    assert {"call", "agent", "agi", "dialplan"} <= read


def _trace_events() -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    for trace in sorted(TRACES.glob("*.ami")):
        parser = AMIParser()
        for frame in parser.feed(trace.read_bytes()):
            if frame.kind == "event":
                yield trace.name, frame.name, list(frame.pairs())


NEEDED = {
    "OriginateResponse", "AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd", "QueueCallerJoin",
    "QueueCallerLeave", "QueueCallerAbandon", "QueueMemberStatus", "QueueMemberAdded",
    "QueueMemberRemoved", "QueueMemberPause", "QueueMemberPenalty", "AgentCalled",
    "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "Newchannel", "Hangup", "Newstate",
    "NewCallerid", "NewConnectedLine", "DialBegin", "DialEnd", "DialState", "BridgeCreate",
    "BridgeEnter", "BridgeLeave", "BridgeDestroy", "LocalBridge", "MusicOnHoldStart",
    "MusicOnHoldStop", "FullyBooted", "DeviceStateChange", "SoftHangupRequest", "HangupRequest",
}  # fmt: skip
DROPPED = {"RTCPSent", "RTCPReceived", "Newexten", "AGIExecStart", "AGIExecEnd"}


def test_manager_filters_keep_every_needed_event_of_the_recorded_traces() -> None:
    filters = asterisk_conf.event_filters(_manager_user())
    # Exclude-only: an include filter would silently drop any event it forgot.
    assert filters.exclude and not filters.include
    kept: set[str] = set()
    dropped: set[str] = set()
    varsets = {True: set(), False: set()}
    for trace, name, pairs in _trace_events():
        allowed = filters.allows(name, pairs)
        (kept if allowed else dropped).add(name)
        if name in NEEDED:
            assert allowed, f"{trace}: {name} would be filtered out"
        if name in DROPPED:
            assert not allowed, f"{trace}: {name} would be sent"
        if name == "VarSet":
            variable = dict((k.lower(), v) for k, v in pairs)["variable"]
            varsets[allowed].add(variable)
    assert NEEDED <= kept, NEEDED - kept  # the traces really exercised them
    assert {"RTCPSent", "Newexten"} <= dropped
    assert varsets[True] and all(v.startswith("WPL_") for v in varsets[True])
    assert "WPL_CATEGORY" in varsets[True]
    assert {"QUEUE_PRIO", "BRIDGEPEER", "DIALSTATUS"} & varsets[False]
    assert not any(v.startswith("WPL_") for v in varsets[False])


def test_filter_semantics_match_asterisk() -> None:
    """Why the shipped file has no include filter: one include drops every
    event it does not name, OriginateResponse included."""
    section = asterisk_conf.parse(
        "[u]\neventfilter(action(include),name(Newchannel)) =\n"
        "eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/\n"
        "eventfilter = !Event: DTMF\n"
    ).section("u")
    filters = asterisk_conf.event_filters(section)
    assert filters.allows("Newchannel", [("Event", "Newchannel"), ("Channel", "PJSIP/a-1")])
    assert not filters.allows("Newchannel", [("Event", "Newchannel"), ("Channel", "Local/s@x")])
    assert not filters.allows("OriginateResponse", [("Event", "OriginateResponse")])
    with pytest.raises(AsteriskConfError, match="bad event filter"):
        asterisk_conf.event_filters(
            asterisk_conf.parse("[u]\neventfilter(action(drop)) =\n").section("u")
        )


# ---------------------------------------------------------------------------
# pjsip, cdr, cel, logger


def test_agent_phones_never_get_an_identity_the_dialplan_did_not_choose() -> None:
    conf = asterisk_conf.load(DIALPLANS / "pjsip_1090.conf.sample")
    template = conf.section("wpl-agent-endpoint")
    assert template.is_template
    expected = {
        "send_connected_line": "no",
        "trust_id_outbound": "no",
        "send_pai": "no",
        "send_rpid": "no",
        "send_diversion": "no",
        "trust_id_inbound": "no",
        "direct_media": "no",
        "context": "wpl-agents",
    }
    for key, value in expected.items():
        assert template.get(key) == value, key
    agents = [s for s in conf.sections if "wpl-agent-endpoint" in s.templates and not s.is_template]
    assert agents
    for agent in agents:
        # An agent block may not undo a privacy setting of the template.
        assert not set(agent.names()) & set(expected), agent.name


def test_carrier_lands_in_the_helpline_context_only_from_its_addresses() -> None:
    conf = asterisk_conf.load(DIALPLANS / "pjsip_1090.conf.sample")
    carrier = [s for s in conf.sections if s.name == "wpl-carrier"]
    by_type = {s.get("type"): s for s in carrier}
    assert by_type["endpoint"].get("context") == "wpl-inbound"
    assert by_type["endpoint"].get("send_connected_line") == "no"
    assert by_type["identify"].get_all("match")
    dialplan = _dialplan()
    assert "wpl-inbound" in dialplan.contexts and "wpl-agents" in dialplan.contexts


def test_cdr_and_cel_are_off_and_logs_carry_no_verbose_output() -> None:
    assert asterisk_conf.load(DIALPLANS / "cdr.conf").section("general").get("enable") == "no"
    assert asterisk_conf.load(DIALPLANS / "cel.conf").section("general").get("enable") == "no"
    logger = asterisk_conf.load(DIALPLANS / "logger.conf")
    assert logger.section("general").get("queue_log") == "yes"
    for option in logger.section("logfiles").options:
        if option.name != "console":
            levels = {level.strip() for level in option.value.split(",")}
            assert not levels & {"verbose", "debug", "dtmf", "*"}, option.name
