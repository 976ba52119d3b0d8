"""The IVR menu file (config/ivr.toml): what ships, what is refused, the CLI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import callcenter.cli
from callcenter.cases.reference import make_reference
from callcenter.ivr.errors import MenuInvalid, MenuProblem
from callcenter.ivr.menu import load_menu, parse_menu, queue_names

ROOT = Path(__file__).resolve().parent.parent
MENU = ROOT / "config" / "ivr.toml"
QUEUES_CONF = ROOT / "dialplans" / "queues_1090.conf"
SHIPPED = MENU.read_text(encoding="utf-8")
QUEUES = queue_names(QUEUES_CONF)


def _problems(text: str) -> list[MenuProblem]:
    with pytest.raises(MenuInvalid) as info:
        parse_menu(text, "ivr.toml", QUEUES)
    return info.value.problems


def _edit(old: str, new: str, text: str = SHIPPED) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# ---------------------------------------------------------------------------
# The shipped menu


def test_shipped_menu_is_valid_against_the_shipped_queues() -> None:
    menu = load_menu(MENU)  # queues from its queues_file
    assert menu.queues_file is not None
    assert set(menu.settings.languages) == {"hi", "en"}


def test_danger_comes_first_in_both_languages_and_wins_the_queue() -> None:
    menu = load_menu(MENU)
    first = menu.menus[menu.start]
    assert first.all_languages
    danger = first.options["1"]
    assert danger.finishes  # no further question before she is queued
    route = menu.routes[danger.route or ""]
    assert route.queue == "wpl-emergency" and route.risk == "critical"
    assert route.priority == max(r.priority for r in menu.routes.values())
    for language in menu.settings.languages:
        assert menu.sound(first.prompt, language) == f"wpl/{language}/danger-press-1"


def test_a_silent_caller_is_queued_with_the_silent_flag_not_dropped() -> None:
    menu = load_menu(MENU)
    # Follow silence from the start until the IVR ends.
    name, flags, route = menu.start, set(), None
    for _ in range(len(menu.menus) + 1):
        action = menu.menus[name].on_silence
        flags |= set(action.flags)
        route = action.route or route
        if action.goto is None:
            break
        name = action.goto
    assert route is not None
    assert "silent" in flags | set(menu.routes[route].flags)
    assert menu.routes[route].risk in ("high", "critical")


def test_callback_is_opt_in() -> None:
    menu = load_menu(MENU)
    callback = menu.menus["callback"]
    assert callback.on_silence.callback is False
    assert menu.on_max_invalid(callback).callback is False
    assert {k: a.callback for k, a in callback.options.items()} == {"1": True, "2": False}


def test_three_invalid_keys_reach_the_default_route() -> None:
    menu = load_menu(MENU)
    main = menu.menus["main"]
    assert menu.max_invalid(main) == 3
    assert menu.on_max_invalid(main).route == menu.default_route
    assert menu.routes[menu.default_route].queue_for("en") == "wpl-general-en"


def test_reference_menu_checks_the_luhn_digit() -> None:
    menu = load_menu(MENU).menus["reference"]
    good = make_reference(2025, 4821)
    assert menu.accepts(good)
    wrong_check = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not menu.accepts(wrong_check)
    assert not menu.accepts(good[:-1])
    assert not menu.accepts("")


# ---------------------------------------------------------------------------
# Broken menus: each problem, with where it is


def test_unknown_goto_is_reported_with_path_and_line() -> None:
    text = _edit('"4" = { route = "counselling", goto = "callback" }', '"4" = { goto = "councel" }')
    problems = _problems(text)
    assert [str(p) for p in problems] == [
        f'ivr.toml:{_line_of(text, "councel")}: menus.main.options."4".goto: '
        "unknown menu 'councel'"
    ]


def test_unknown_queue_and_route_are_each_reported() -> None:
    text = _edit('queue = "wpl-counselling"', 'queue = "wpl-counseling"')
    text = _edit('"5" = { route = "domestic"', '"5" = { route = "domestik"', text)
    by_path = {p.path: p for p in _problems(text)}
    assert set(by_path) == {"routes.counselling.queue", 'menus.main.options."5".route'}
    assert "unknown queue 'wpl-counseling'" in by_path["routes.counselling.queue"].message
    assert by_path["routes.counselling.queue"].line == _line_of(text, "wpl-counseling")
    assert by_path['menus.main.options."5".route'].line == _line_of(text, "domestik")


def test_prompt_missing_a_language() -> None:
    text = _edit(
        'main-menu = { hi = "wpl/hi/main-menu", en = "wpl/en/main-menu" }',
        'main-menu = { hi = "wpl/hi/main-menu" }',
    )
    (problem,) = _problems(text)
    assert problem.path == "prompts.main-menu"
    assert "['en']" in problem.message
    assert problem.line == _line_of(text, "main-menu = {")


@pytest.mark.parametrize("key", ["12", "A", " "])
def test_keys_must_be_single_dtmf_digits(key: str) -> None:
    text = _edit('"9" = { goto = "main" }', f'"{key}" = {{ goto = "main" }}')
    (problem,) = _problems(text)
    assert problem.path == f'menus.main.options."{key}"'
    assert "not a single DTMF key" in problem.message


def test_unreachable_menu() -> None:
    text = SHIPPED + (
        '\n[menus.orphan]\nprompt = "main-menu"\ntimeout = 5\n'
        'on_silence = { route = "general" }\n[menus.orphan.options]\n"1" = { route = "phone" }\n'
    )
    (problem,) = _problems(text)
    assert problem.path == "menus.orphan"
    assert "unreachable" in problem.message
    assert problem.line == _line_of(text, "[menus.orphan]")


def test_silence_must_not_loop_forever() -> None:
    text = _edit(
        '[menus.main]\nprompt = "main-menu"\ntimeout = 6\nmax_digits = 1\nretries = 2\n'
        'on_silence = { route = "silent", flags = ["silent"] }',
        '[menus.main]\nprompt = "main-menu"\ntimeout = 6\nmax_digits = 1\nretries = 2\n'
        'on_silence = { goto = "language" }',
    )
    text = _edit(
        "all_languages = true\ntimeout = 5\nmax_digits = 1\nretries = 2\n"
        'on_silence = { route = "silent", flags = ["silent"] }',
        "all_languages = true\ntimeout = 5\nmax_digits = 1\nretries = 2\n"
        'on_silence = { goto = "main" }',
        text,
    )
    problems = _problems(text)
    loops = [p for p in problems if "silence loops forever" in p.message]
    assert len(loops) == 1
    assert loops[0].path in ("menus.main.on_silence.goto", "menus.language.on_silence.goto")
    assert "language" in loops[0].message and "main" in loops[0].message


def test_leaving_the_ivr_without_a_route() -> None:
    text = _edit('"6" = { goto = "reference" }', '"6" = { goto = "callback" }')
    problems = _problems(text)
    paths = {p.path for p in problems}
    # The reference menu is now unreachable, and from main via "6" the
    # callback question ends the IVR with no queue chosen.
    assert "menus.reference" in paths
    assert any(
        p.path.startswith("menus.callback.") and "without a route" in p.message for p in problems
    )


def test_shape_errors_carry_their_location() -> None:
    text = _edit("timeout = 6\n", "timeout = -1\n")
    text = _edit("retries = 1\nvalidate", "retrys = 1\nvalidate", text)
    text = _edit('risk = "low"', 'risk = "tiny"', text)
    by_path = {p.path: p for p in _problems(text)}
    assert set(by_path) == {"menus.main.timeout", "menus.reference.retrys", "routes.status.risk"}
    assert by_path["menus.main.timeout"].line == _line_of(text, "timeout = -1")
    assert by_path["menus.reference.retrys"].message == "unknown key (misspelt?)"
    assert by_path["routes.status.risk"].line == _line_of(text, '"tiny"')


def test_many_problems_are_reported_together() -> None:
    text = _edit('start = "danger"', 'start = "dangerr"')
    text = _edit('default_route = "general"', 'default_route = "generall"', text)
    text = _edit('default_language = "hi"', 'default_language = "ta"', text)
    paths = {p.path for p in _problems(text)}
    assert paths == {"start", "default_route", "settings.default_language"}


def test_a_watchdog_shorter_than_a_menu_timeout_is_refused() -> None:
    text = _edit("watchdog_seconds = 30", "watchdog_seconds = 10")
    text = _edit("timeout = 8\n", "timeout = 12\n", text)
    (problem,) = _problems(text)
    assert problem.path == "menus.reference.timeout"
    assert "watchdog" in problem.message


def test_invalid_toml_reports_its_line() -> None:
    text = SHIPPED.replace("[menus.main]\n", "[menus.main\n", 1)
    (problem,) = _problems(text)
    assert "not valid TOML" in problem.message
    assert problem.line == _line_of(text, "[menus.main")


# ---------------------------------------------------------------------------
# callcenter ivr check


CliMain = Callable[[Sequence[str] | None], int]


@pytest.fixture()
def cli_main(monkeypatch: pytest.MonkeyPatch) -> CliMain:
    monkeypatch.setattr(callcenter.cli, "COMMAND_MODULES", ("callcenter.ivr.cli",))
    return callcenter.cli.main


def test_cli_check_valid(cli_main: CliMain, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ivr", "check", str(MENU)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "5 menus" in out and "queues checked" in out


def test_cli_check_lists_each_problem_and_fails(
    cli_main: CliMain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = _edit(
        '"4" = { route = "counselling", goto = "callback" }', '"4" = { goto = "councel" }'
    )
    broken = _edit('queue = "wpl-duty"', 'queue = "wpl-dutty"', broken)
    path = tmp_path / "ivr.toml"
    path.write_text(broken, encoding="utf-8")
    assert cli_main(["ivr", "check", str(path), "--queues", str(QUEUES_CONF)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2
    assert f'{path}:{_line_of(broken, "councel")}: menus.main.options."4".goto' in lines[0]
    assert "routes.officer.queue: unknown queue 'wpl-dutty'" in lines[1]
    assert "2 problem(s)" in captured.err


def test_cli_check_missing_queues_file(
    cli_main: CliMain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text(SHIPPED, encoding="utf-8")  # its queues_file does not exist from here
    assert cli_main(["ivr", "check", str(path)]) == 1
    assert "queues_file: no such file" in capsys.readouterr().out
    assert cli_main(["ivr", "check", str(tmp_path / "nope.toml")]) == 1
