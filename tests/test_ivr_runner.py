"""The shipped IVR menu, run for scripted callers pressing keys (or not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.ami.agi import AGIResult, parse_agi_result
from callcenter.cases.reference import make_reference
from callcenter.ivr.errors import CallerHungUp
from callcenter.ivr.menu import IvrMenu, load_menu
from callcenter.ivr.runner import MAX_PROMPTS, MenuRunner
from callcenter.ivr.session import AGISession

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def menu() -> IvrMenu:
    return load_menu(ROOT / "config" / "ivr.toml")


class KeypadCaller:
    """A caller who answers each prompt from a script.

    Each script item is the keys she presses at the next prompt that waits for
    keys ("" = silence, "hangup" = she hangs up). STREAM FILE prompts played
    before the last language are not interrupted unless the item starts with
    ">" (she presses during the first language).
    """

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.commands: list[str] = []
        self.prompts: list[str] = []

    async def __call__(self, channel: str, command: str) -> AGIResult:
        self.commands.append(command)
        verb = command.split(" ", 2)
        if command.startswith("SET VARIABLE"):
            return parse_agi_result("200 result=1")
        if command.startswith("STREAM FILE"):
            self.prompts.append(verb[2].split('"')[1])
            if self.script and self.script[0].startswith(">"):
                key = self.script.pop(0)[1:]
                return parse_agi_result(f"200 result={ord(key)} endpos=100")
            return parse_agi_result("200 result=0 endpos=8000")
        if command.startswith("GET DATA"):
            self.prompts.append(verb[2].split('"')[1])
            keys = self.script.pop(0) if self.script else ""
            if keys == "hangup":
                return parse_agi_result("200 result=-1")
            if not keys:
                return parse_agi_result("200 result= (timeout)")
            return parse_agi_result(f"200 result={keys}")
        raise AssertionError(f"unexpected AGI command {command!r}")


async def run(menu: IvrMenu, caller: KeypadCaller):
    return await MenuRunner(menu).run(AGISession("PJSIP/caller-00000001", caller))


async def test_danger_key_goes_straight_to_emergency_with_highest_priority(menu) -> None:
    caller = KeypadCaller("1")
    outcome = await run(menu, caller)
    assert outcome.queue == "wpl-emergency"
    assert outcome.priority == max(r.priority for r in menu.routes.values())
    assert "danger" in outcome.flags
    assert outcome.risk == "critical"
    # Both languages were offered before she pressed (Hindi interruptible first).
    assert caller.prompts == ["wpl/hi/danger-press-1", "wpl/en/danger-press-1"]


async def test_danger_key_during_the_first_language_counts_at_once(menu) -> None:
    outcome = await run(menu, KeypadCaller(">1"))
    assert outcome.queue == "wpl-emergency"


async def test_hindi_internet_harassment_lands_in_hindi_general_queue(menu) -> None:
    caller = KeypadCaller("", "1", "2", "1")
    outcome = await run(menu, caller)
    assert (outcome.queue, outcome.category, outcome.language) == (
        "wpl-general-hi", "cyber-harassment", "hi",
    )
    assert outcome.callback_ok is True
    assert outcome.path_text() == "danger:silence>language:1>main:2>callback:1"
    variables = outcome.channel_variables()
    assert variables["WPL_QUEUE"] == "wpl-general-hi"
    assert variables["WPL_CALLBACK_OK"] == "1"
    assert variables["WPL_CATEGORY"] == "cyber-harassment"


async def test_distress_goes_to_counselling_ahead_of_general_callers(menu) -> None:
    outcome = await run(menu, KeypadCaller("", "2", "4", "2"))
    assert outcome.queue == "wpl-counselling"
    assert outcome.language == "en"
    assert outcome.callback_ok is False
    general = menu.routes["internet"].priority
    assert outcome.priority > general


async def test_three_invalid_keys_reach_the_default_route(menu) -> None:
    caller = KeypadCaller("", "1", "8", "8", "8")
    outcome = await run(menu, caller)
    assert outcome.route == menu.default_route
    assert outcome.queue == "wpl-general-hi"
    assert [s.result for s in outcome.path[-3:]] == ["invalid"] * 3
    # She heard the invalid-key prompt between attempts.
    assert caller.prompts.count("wpl/hi/invalid-key") == 2


async def test_silence_is_queued_with_the_silent_flag_not_dropped(menu) -> None:
    caller = KeypadCaller()  # never presses anything
    outcome = await run(menu, caller)
    assert "silent" in outcome.flags
    assert outcome.route == "silent"
    assert outcome.queue == menu.routes["silent"].queue


async def test_valid_reference_is_accepted_and_invalid_check_digit_is_not(menu) -> None:
    good = make_reference(2026, 123)
    outcome = await run(menu, KeypadCaller("", "1", "6", good, "2"))
    assert outcome.reference == good and outcome.category == "complaint-status"
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    outcome = await run(menu, KeypadCaller("", "1", "6", bad, bad, bad, "2"))
    assert outcome.reference is None
    assert outcome.category == "complaint-status"  # she still reaches an agent


async def test_a_caller_looping_in_the_menu_is_put_through_after_the_prompt_budget(menu) -> None:
    caller = KeypadCaller("", "1", *(["9"] * 100))
    outcome = await run(menu, caller)
    assert outcome.defaulted
    assert outcome.queue == "wpl-general-hi"
    assert sum(c.startswith("GET DATA") for c in caller.commands) <= MAX_PROMPTS + 1


async def test_watchdog_is_rearmed_before_every_prompt(menu) -> None:
    caller = KeypadCaller("", "1", "2", "1")
    await run(menu, caller)
    arms = [c for c in caller.commands if "TIMEOUT(absolute)" in c]
    prompts = [c for c in caller.commands if c.startswith("GET DATA")]
    assert len(arms) == len(prompts)
    assert all(str(menu.settings.watchdog_seconds) in c for c in arms)


async def test_hangup_mid_menu_stops_the_runner(menu) -> None:
    with pytest.raises(CallerHungUp):
        await run(menu, KeypadCaller("", "hangup"))
