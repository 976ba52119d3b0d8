"""The IVR menu as data: ``config/ivr.toml``, its models and its checks.

The file is read into pydantic models (shape, types, ranges), then checked
as a whole (:func:`check_menu`): every ``goto`` names a menu, every route a
route, every queue a queue of ``queues_1090.conf``, every prompt has every
language, keys are single DTMF symbols, each menu is reachable, silence can
never loop forever, and every way out of the IVR has chosen a route. Each
problem is reported with its place in the file (``menus.main.options."4".goto``)
and, when it can be found, its line, so the person editing the menu gets the
whole list in one go instead of one error per run.

The runner (``callcenter.ivr``) only ever sees a menu that passed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callcenter.cases.reference import is_valid_reference
from callcenter.pbx import asterisk_conf

from .errors import MenuInvalid, MenuProblem

__all__ = [
    "DTMF_KEYS",
    "VALIDATORS",
    "Action",
    "IvrMenu",
    "Menu",
    "Route",
    "Settings",
    "check_menu",
    "load_menu",
    "parse_menu",
    "queue_names",
]

DTMF_KEYS = frozenset("0123456789*#")

#: What a ``kind = "digits"`` menu may check its input with.
VALIDATORS: dict[str, Callable[[str], bool]] = {"reference": is_valid_reference}

# Names that end up in channel variables (WPL_CATEGORY, WPL_FLAGS...) and in
# AGI arguments: no spaces, commas, quotes or pipes to escape anywhere.
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=60)]
# A sound name as Playback/STREAM FILE take it: a path below sounds/, no
# extension (Asterisk picks the best format), nothing AGI would have to quote.
SoundName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", max_length=120)]
Risk = Literal["low", "medium", "high", "critical"]


class _Model(BaseModel):
    # A misspelt key ("timout") must be an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(_Model):
    """What happens on a key, a valid entry, silence or too many invalid keys.

    Applied in order: ``language``, ``callback``, ``flags``, ``route``; then
    ``goto`` the next menu, or, without ``goto``, leave the IVR for the route.
    """

    goto: Name | None = None
    route: Name | None = None
    language: Slug | None = None
    callback: bool | None = None
    flags: tuple[Slug, ...] = ()

    @property
    def finishes(self) -> bool:
        return self.goto is None


class Menu(_Model):
    prompt: Name
    #: Play the prompt in every language in turn (before she has chosen one).
    all_languages: bool = False
    #: ``choice``: one key picks an option. ``digits``: she keys a number
    #: (up to ``max_digits``), checked with ``validate``.
    kind: Literal["choice", "digits"] = "choice"
    #: Seconds to wait for the first key, and between keys.
    timeout: float = Field(gt=0, le=60)
    max_digits: int = Field(default=1, ge=1, le=32)
    #: Replays of the prompt after silence before ``on_silence`` applies.
    retries: int = Field(default=1, ge=0, le=5)
    options: dict[str, Action] = Field(default_factory=dict)
    validate_: Literal["reference"] | None = Field(default=None, alias="validate")
    on_valid: Action | None = None
    on_silence: Action
    #: None: replay the prompt after the invalid prompt.
    on_invalid: Action | None = None
    invalid_prompt: Name | None = None
    max_invalid: int | None = Field(default=None, ge=1, le=10)
    #: None: the file's ``default_route``.
    on_max_invalid: Action | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def accepts(self, digits: str) -> bool:
        """Whether keyed ``digits`` are a valid entry for a ``digits`` menu."""
        if self.validate_ is None:
            return bool(digits)
        return VALIDATORS[self.validate_](digits)


class Route(_Model):
    """Where the IVR puts her, written to the channel for ``Queue()``."""

    queue: Name | None = None
    queue_by_language: dict[str, Name] | None = None
    #: QUEUE_PRIO: a higher number is served first within a queue.
    priority: int = Field(ge=0, le=1000)
    category: Slug
    risk: Risk
    flags: tuple[Slug, ...] = ()
    #: Force a language (else hers, else the default language).
    language: Slug | None = None
    #: Seconds in the queue before the overflow route (WPL_QUEUE_TIMEOUT).
    queue_timeout: int | None = Field(default=None, gt=0, le=7200)

    def queue_for(self, language: str) -> str:
        if self.queue is not None:
            return self.queue
        assert self.queue_by_language is not None  # guaranteed by check_menu
        return self.queue_by_language[language]


class Settings(_Model):
    languages: tuple[Slug, ...] = Field(min_length=1)
    default_language: Slug
    max_invalid: int = Field(default=3, ge=1, le=10)
    invalid_prompt: Name
    watchdog_seconds: int = Field(default=30, ge=10, le=600)


class IvrMenu(_Model):
    version: Literal[1]
    start: Name
    default_route: Name
    queues_file: str | None = None
    settings: Settings
    prompts: dict[Name, dict[str, SoundName]]
    menus: dict[Name, Menu] = Field(min_length=1)
    routes: dict[Name, Route] = Field(min_length=1)

    def sound(self, prompt: str, language: str) -> str:
        return self.prompts[prompt][language]

    def invalid_prompt(self, menu: Menu) -> str:
        return menu.invalid_prompt or self.settings.invalid_prompt

    def max_invalid(self, menu: Menu) -> int:
        return menu.max_invalid or self.settings.max_invalid

    def on_max_invalid(self, menu: Menu) -> Action:
        return menu.on_max_invalid or Action(route=self.default_route)


# ---------------------------------------------------------------------------
# Locations


def _key(part: str | int) -> str:
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text) else f'"{text}"'


def dotted(path: tuple[str | int, ...]) -> str:
    # DTMF keys are always quoted (options."1"), as the file writes them.
    return ".".join(
        f'"{p}"' if i and path[i - 1] == "options" else _key(p) for i, p in enumerate(path)
    )


def _locate(lines: list[str], path: tuple[str | int, ...]) -> int | None:
    """A cheap line search for a TOML path (tomllib keeps no positions).

    Finds the deepest ``[table]`` header that is a prefix of ``path``, then
    the first line after it that assigns the next key. Good enough to point a
    person at the right spot; None when unsure.
    """
    if not lines or not path:
        return None
    parts = [str(p) for p in path]
    best_line, best_depth = None, 0
    for index, line in enumerate(lines):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if not header:
            continue
        names = [n.strip().strip('"') for n in re.findall(r'"[^"]*"|[^.]+', header[1])]
        if names == parts[: len(names)] and len(names) > best_depth:
            best_line, best_depth = index, len(names)
    if best_line is None:
        start = 0
    else:
        start = best_line + 1
        if best_depth == len(parts):
            return best_line + 1
    key = parts[best_depth]
    pattern = re.compile(rf'^\s*("{re.escape(key)}"|{re.escape(key)})\s*=')
    for index in range(start, len(lines)):
        if index > start and lines[index].lstrip().startswith("["):
            break
        if pattern.match(lines[index]):
            return index + 1
    return best_line + 1 if best_line is not None else None


class _Problems:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.items: list[MenuProblem] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.items.append(MenuProblem(self.file, dotted(path), message, _locate(self.lines, path)))


# ---------------------------------------------------------------------------
# Loading and checking


def queue_names(queues_conf: str | Path) -> set[str]:
    """Queue names defined by a ``queues.conf`` (templates and [general] excluded)."""
    conf = asterisk_conf.load(queues_conf)
    return {name for name in conf.section_names() if name != "general"}


def parse_menu(text: str, file: str = "ivr.toml", queues: Collection[str] | None = None) -> IvrMenu:
    """Parse and check a menu file's text; :class:`MenuInvalid` lists every problem."""
    problems = _Problems(file, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise MenuInvalid(
            [MenuProblem(file, "", f"not valid TOML: {exc}", int(line[1]) if line else None)]
        ) from None
    try:
        menu = IvrMenu.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
            problems.add(loc, _pydantic_message(error))
        raise MenuInvalid(problems.items) from None
    _check(menu, problems, queues)
    if problems.items:
        raise MenuInvalid(problems.items)
    return menu


def load_menu(path: str | Path, queues: Collection[str] | None = None) -> IvrMenu:
    """Read ``path``; queues default to those of its ``queues_file``, if it names one."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if queues is None:
        queues = _queues_from_file(path, text)
    return parse_menu(text, str(path), queues)


def check_menu(path: str | Path, queues: Collection[str] | None = None) -> list[MenuProblem]:
    """Every problem of the menu file at ``path`` (empty when it is valid)."""
    try:
        load_menu(path, queues)
    except MenuInvalid as exc:
        return exc.problems
    return []


def _queues_from_file(path: Path, text: str) -> set[str] | None:
    try:
        queues_file = tomllib.loads(text).get("queues_file")
    except tomllib.TOMLDecodeError:
        return None  # parse_menu reports it
    if not isinstance(queues_file, str):
        return None
    conf_path = (path.parent / queues_file).resolve()
    try:
        return queue_names(conf_path)
    except FileNotFoundError:
        problem = MenuProblem(
            str(path),
            "queues_file",
            f"no such file: {queues_file}",
            _locate(text.splitlines(), ("queues_file",)),
        )
        raise MenuInvalid([problem]) from None
    except asterisk_conf.AsteriskConfError as exc:
        problem = MenuProblem(str(path), "queues_file", f"cannot read queues: {exc}")
        raise MenuInvalid([problem]) from None


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the union member or validator into the location
    # ("function-after[...]", "literal['x']", "str"); the file has no such key.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "bool"})


def _pydantic_message(error: dict[str, object]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key (misspelt?)"
    if kind == "missing":
        return "required key missing"
    return str(error.get("msg", "invalid"))


def _actions(menu: Menu) -> Iterator[tuple[tuple[str | int, ...], Action]]:
    """Every action of a menu, with its path below ``menus.<name>``."""
    for key, action in menu.options.items():
        yield ("options", key), action
    for field in ("on_valid", "on_silence", "on_invalid", "on_max_invalid"):
        action = getattr(menu, field)
        if action is not None:
            yield (field,), action


@dataclass(frozen=True)
class _Edge:
    target: str | None  # next menu, or None when the IVR ends here
    route: str | None
    path: tuple[str | int, ...]
    without_input: bool  # taken although she pressed nothing


def _edges(ivr: IvrMenu, name: str, menu: Menu) -> Iterator[_Edge]:
    base: tuple[str | int, ...] = ("menus", name)
    for sub, action in _actions(menu):
        yield _Edge(action.goto, action.route, base + sub, sub == ("on_silence",))
    if menu.on_max_invalid is None:
        yield _Edge(None, ivr.default_route, base + ("on_max_invalid",), False)


def _check(ivr: IvrMenu, problems: _Problems, queues: Collection[str] | None) -> None:
    settings = ivr.settings
    languages = set(settings.languages)
    if len(languages) != len(settings.languages):
        problems.add(("settings", "languages"), "a language is listed twice")
    if settings.default_language not in languages:
        problems.add(
            ("settings", "default_language"),
            f"{settings.default_language!r} is not one of the languages {list(settings.languages)}",
        )

    # Prompts: every language, nothing else.
    for prompt, sounds in ivr.prompts.items():
        missing = [lang for lang in settings.languages if lang not in sounds]
        if missing:
            problems.add(("prompts", prompt), f"no sound for language(s) {missing}")
        for lang in sounds:
            if lang not in languages:
                problems.add(("prompts", prompt, lang), f"{lang!r} is not a configured language")

    def need_prompt(path: tuple[str | int, ...], prompt: str) -> None:
        if prompt not in ivr.prompts:
            problems.add(path, f"unknown prompt {prompt!r}")

    need_prompt(("settings", "invalid_prompt"), settings.invalid_prompt)

    if ivr.start not in ivr.menus:
        problems.add(("start",), f"unknown menu {ivr.start!r}")
    if ivr.default_route not in ivr.routes:
        problems.add(("default_route",), f"unknown route {ivr.default_route!r}")

    for name, menu in ivr.menus.items():
        base: tuple[str | int, ...] = ("menus", name)
        need_prompt(base + ("prompt",), menu.prompt)
        if menu.invalid_prompt is not None:
            need_prompt(base + ("invalid_prompt",), menu.invalid_prompt)
        if menu.timeout >= settings.watchdog_seconds:
            problems.add(
                base + ("timeout",),
                f"{menu.timeout:g} s is not shorter than the IVR watchdog "
                f"({settings.watchdog_seconds} s): she would be sent to the fallback "
                "queue while still being asked",
            )
        if menu.kind == "choice":
            if not menu.options:
                problems.add(base + ("options",), "a choice menu needs at least one option")
            if menu.max_digits != 1:
                problems.add(base + ("max_digits",), "a choice menu takes exactly one key")
            for field in ("validate", "on_valid"):
                attr = "validate_" if field == "validate" else field
                if getattr(menu, attr) is not None:
                    problems.add(base + (field,), 'only for kind = "digits" menus')
            for key in menu.options:
                if len(key) != 1 or key not in DTMF_KEYS:
                    problems.add(
                        base + ("options", key),
                        f"key {key!r} is not a single DTMF key (0-9, *, #)",
                    )
        else:
            if menu.options:
                problems.add(base + ("options",), "a digits menu has no options (use on_valid)")
            if menu.on_valid is None:
                problems.add(base + ("on_valid",), "a digits menu needs on_valid")
            if menu.validate_ == "reference" and menu.max_digits != 11:
                problems.add(
                    base + ("max_digits",),
                    "a complaint reference has 11 digits (year, sequence, check digit)",
                )
        for sub, action in _actions(menu):
            path = base + sub
            if action.goto is not None and action.goto not in ivr.menus:
                problems.add(path + ("goto",), f"unknown menu {action.goto!r}")
            if action.route is not None and action.route not in ivr.routes:
                problems.add(path + ("route",), f"unknown route {action.route!r}")
            if action.language is not None and action.language not in languages:
                problems.add(
                    path + ("language",), f"{action.language!r} is not a configured language"
                )

    for name, route in ivr.routes.items():
        base = ("routes", name)
        if (route.queue is None) == (route.queue_by_language is None):
            problems.add(base, "needs exactly one of queue or queue_by_language")
        if route.queue_by_language is not None:
            missing = [lang for lang in settings.languages if lang not in route.queue_by_language]
            if missing:
                problems.add(base + ("queue_by_language",), f"no queue for language(s) {missing}")
            for lang in route.queue_by_language:
                if lang not in languages:
                    problems.add(
                        base + ("queue_by_language", lang), f"{lang!r} is not a configured language"
                    )
        if route.language is not None and route.language not in languages:
            problems.add(base + ("language",), f"{route.language!r} is not a configured language")
        if queues is not None:
            named = [(("queue",), route.queue)] if route.queue else []
            named += [
                (("queue_by_language", lang), q)
                for lang, q in (route.queue_by_language or {}).items()
            ]
            for sub, queue in named:
                if queue not in queues:
                    problems.add(base + sub, f"unknown queue {queue!r} (not in queues.conf)")

    if ivr.start in ivr.menus:
        _check_flow(ivr, problems)


def _check_flow(ivr: IvrMenu, problems: _Problems) -> None:
    """Reachability, silence loops, and a route on every way out."""
    known = {name for name in ivr.menus}
    edges = {name: list(_edges(ivr, name, menu)) for name, menu in ivr.menus.items()}

    # Every menu reachable from the start.
    seen = {ivr.start}
    todo = [ivr.start]
    while todo:
        for edge in edges[todo.pop()]:
            if edge.target in known and edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    for name in ivr.menus:
        if name not in seen:
            problems.add(("menus", name), f"unreachable from start menu {ivr.start!r}")

    # A silent caller must leave the IVR: no cycle through silence alone
    # (a cycle through keys she pressed, like "9: hear the menu again", is fine).
    silent = {
        name: [e for e in menu_edges if e.without_input and e.target in known]
        for name, menu_edges in edges.items()
    }
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        trail.append(name)
        for edge in silent[name]:
            target = str(edge.target)
            if target in trail:
                loop = " -> ".join(trail[trail.index(target) :] + [target])
                problems.add(
                    edge.path + ("goto",),
                    f"silence loops forever ({loop}): a caller who cannot speak "
                    "would never reach anyone",
                )
            elif target not in done:
                walk(target, trail)
        trail.pop()
        done.add(name)

    for name in ivr.menus:
        if name not in done:
            walk(name, [])

    # Every way out of the IVR has a route chosen on the way there.
    states = [(ivr.start, False)]
    visited = set(states)
    no_route: set[tuple[str | int, ...]] = set()
    while states:
        name, routed = states.pop()
        for edge in edges[name]:
            has_route = routed or edge.route is not None
            if edge.target is None:
                if not has_route and edge.path not in no_route:
                    no_route.add(edge.path)
                    problems.add(
                        edge.path,
                        "ends the IVR without a route: no queue chosen on this way "
                        f"(from {ivr.start!r})",
                    )
            elif edge.target in known and (edge.target, has_route) not in visited:
                visited.add((edge.target, has_route))
                states.append((edge.target, has_route))
