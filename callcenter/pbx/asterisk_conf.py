"""A small reader of Asterisk ``.conf`` files and of the dialplan inside them.

It reads the syntax Asterisk's ``main/config.c`` accepts for the files this
product ships (``dialplans/``): ``[section]`` headers with template markers
``(!)`` / ``(tpl1,tpl2)`` / ``(+)``, ``name = value`` and ``name => value``
lines, ``;`` comments (``\\;`` is a literal semicolon) and ``;-- block --;``
comments. ``#include`` / ``#exec`` lines are kept as directives, never
followed: the caller decides what a file may pull in.

Used by the shipped-config checks and by the PBX simulator, so both read the
very files an installer copies to ``/etc/asterisk``. No I/O except
:func:`load`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Operator = Literal["=", "=>"]


class AsteriskConfError(ValueError):
    """A line Asterisk itself would refuse, with where it is."""

    def __init__(self, filename: str, lineno: int, message: str) -> None:
        super().__init__(f"{filename}:{lineno}: {message}")
        self.filename = filename
        self.lineno = lineno
        self.message = message


@dataclass(frozen=True, slots=True)
class Option:
    """One ``name = value`` (or ``name => value``) line of a section."""

    name: str
    value: str
    operator: Operator
    lineno: int


@dataclass(slots=True)
class Section:
    """One ``[name]`` block. ``options`` are this block's own lines, in order."""

    name: str
    lineno: int
    is_template: bool = False
    templates: tuple[str, ...] = ()
    options: list[Option] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The *last* value of ``name``: Asterisk lets a later line win for
        single-valued settings."""
        value = default
        for option in self.options:
            if option.name.lower() == name.lower():
                value = option.value
        return value

    def get_all(self, name: str) -> list[str]:
        return [o.value for o in self.options if o.name.lower() == name.lower()]

    def names(self) -> list[str]:
        return [o.name for o in self.options]


@dataclass(frozen=True, slots=True)
class Directive:
    """A ``#include`` / ``#tryinclude`` / ``#exec`` line (not followed)."""

    name: str
    argument: str
    lineno: int


@dataclass(slots=True)
class ConfFile:
    filename: str
    sections: list[Section] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)

    def __iter__(self) -> Iterator[Section]:
        return iter(self.sections)

    def section(self, name: str) -> Section:
        """The first section called ``name`` (KeyError if none): Asterisk's own
        ``ast_variable_browse`` also only ever sees the first one."""
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(name)

    def has_section(self, name: str) -> bool:
        return any(s.name == name for s in self.sections)

    def section_names(self, *, templates: bool = False) -> list[str]:
        return [s.name for s in self.sections if templates or not s.is_template]

    def resolved(self, name: str) -> list[Option]:
        """A section's options with its templates' options first, as Asterisk
        copies a template's lines into the section that names it."""
        section = self.section(name)
        merged: list[Option] = []
        for template in section.templates:
            merged.extend(self.resolved(template))
        merged.extend(section.options)
        return merged

    def resolved_get(self, name: str, option: str) -> str | None:
        value: str | None = None
        for o in self.resolved(name):
            if o.name.lower() == option.lower():
                value = o.value
        return value


_HEADER = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<flags>[^)]*)\))?\s*$")


def _strip_comment(line: str) -> str:
    """Remove a ``;`` comment, keeping ``\\;`` as a literal ``;``."""
    out: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            break
        out.append(ch)
        i += 1
    return "".join(out)


def parse(text: str, filename: str = "<string>") -> ConfFile:
    """Parse the text of one ``.conf`` file.

    Raises :class:`AsteriskConfError` for what Asterisk would refuse: an option
    before any section, a malformed header, a template that is named before it
    is defined, ``(+)`` on a section that does not exist, an unclosed block
    comment.
    """
    conf = ConfFile(filename)
    current: Section | None = None
    in_block_comment_since: int | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if in_block_comment_since is not None:
            end = line.find("--;")
            if end < 0:
                continue
            line = line[end + 3 :]
            in_block_comment_since = None
        start = line.find(";--")
        while start >= 0 and (start == 0 or line[start - 1] != "\\"):
            end = line.find("--;", start + 3)
            if end < 0:
                line = line[:start]
                in_block_comment_since = lineno
                break
            line = line[:start] + line[end + 3 :]
            start = line.find(";--")
        line = _strip_comment(line).strip()
        if not line:
            continue
        if line.startswith("#"):
            name, _, argument = line[1:].partition(" ")
            conf.directives.append(Directive(name.strip(), argument.strip().strip('"<>'), lineno))
            continue
        if line.startswith("["):
            current = _parse_header(conf, line, lineno)
            continue
        if current is None:
            raise AsteriskConfError(filename, lineno, "option outside any [section]")
        equals = line.find("=")
        if equals < 0:
            raise AsteriskConfError(filename, lineno, f"no '=' in line {line!r}")
        name, value = line[:equals], line[equals + 1 :]
        operator: Operator = "="
        # Only the first "=" splits: "exten => 1,1,Set(A=b)" keeps "A=b" whole.
        if value.startswith(">"):
            value = value[1:]
            operator = "=>"
        name = name.strip()
        if not name:
            raise AsteriskConfError(filename, lineno, "option with an empty name")
        current.options.append(Option(name, value.strip(), operator, lineno))
    if in_block_comment_since is not None:
        raise AsteriskConfError(filename, in_block_comment_since, "unclosed ';--' block comment")
    return conf


def _parse_header(conf: ConfFile, line: str, lineno: int) -> Section:
    match = _HEADER.match(line)
    if match is None:
        raise AsteriskConfError(conf.filename, lineno, f"malformed section header {line!r}")
    name = match["name"].strip()
    flags = [f.strip() for f in (match["flags"] or "").split(",") if f.strip()]
    if "+" in flags:
        if len(flags) > 1:
            raise AsteriskConfError(conf.filename, lineno, "'(+)' cannot be combined")
        for existing in reversed(conf.sections):
            if existing.name == name:
                return existing
        raise AsteriskConfError(
            conf.filename, lineno, f"'[{name}](+)' appends to a section that does not exist"
        )
    is_template = "!" in flags
    templates = tuple(f for f in flags if f != "!")
    for template in templates:
        # Asterisk copies from any section defined above, template or not.
        if not conf.has_section(template):
            raise AsteriskConfError(
                conf.filename, lineno, f"template {template!r} is not defined above"
            )
    section = Section(name, lineno, is_template=is_template, templates=templates)
    conf.sections.append(section)
    return section


def load(path: str | Path) -> ConfFile:
    path = Path(path)
    return parse(path.read_text(encoding="utf-8"), path.name)


# --------------------------------------------------------------------------
# The dialplan (extensions.conf) on top of the generic syntax.


@dataclass(frozen=True, slots=True)
class Step:
    """One priority of one extension: ``exten => 1090,3(ivr),AGI(agi:async)``."""

    context: str
    exten: str
    priority: int
    label: str | None
    app: str
    args: str
    lineno: int

    @property
    def where(self) -> str:
        return f"{self.exten}@{self.context}:{self.priority}"


@dataclass(slots=True)
class Extension:
    context: str
    name: str
    steps: list[Step] = field(default_factory=list)

    def label(self, label: str) -> Step | None:
        return next((s for s in self.steps if s.label == label), None)

    def step(self, priority: int) -> Step | None:
        return next((s for s in self.steps if s.priority == priority), None)


@dataclass(slots=True)
class Dialplan:
    filename: str
    globals: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, dict[str, Extension]] = field(default_factory=dict)

    def extension(self, context: str, exten: str) -> Extension | None:
        """The extension ``exten`` would run in ``context``: an exact name wins
        over a pattern, as in Asterisk."""
        extensions = self.contexts.get(context, {})
        if exten in extensions:
            return extensions[exten]
        for name, extension in extensions.items():
            if name.startswith("_") and pattern_matches(name, exten):
                return extension
        return None

    def steps(self) -> Iterator[Step]:
        for extensions in self.contexts.values():
            for extension in extensions.values():
                yield from extension.steps


_PRIORITY = re.compile(r"^(?P<prio>\d+|n|hint)(?:\((?P<label>[A-Za-z0-9_-]+)\))?$")
_APP = re.compile(r"^(?P<app>[A-Za-z][A-Za-z0-9_]*)\s*(?:\((?P<args>.*)\))?$", re.DOTALL)


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension pattern match (``_X.``, ``_NXX``, ``_[1-5]!``...)."""
    if not pattern.startswith("_"):
        return pattern == exten
    return _pattern_regex(pattern).fullmatch(exten) is not None


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    regex: list[str] = []
    body = pattern[1:]
    i = 0
    while i < len(body):
        ch = body[i]
        upper = ch.upper()
        if upper == "X":
            regex.append("[0-9]")
        elif upper == "Z":
            regex.append("[1-9]")
        elif upper == "N":
            regex.append("[2-9]")
        elif ch == ".":
            regex.append(".+")
        elif ch == "!":
            regex.append(".*")
        elif ch == "[":
            end = body.index("]", i)
            regex.append("[" + re.escape(body[i + 1 : end]).replace("\\-", "-") + "]")
            i = end
        else:
            regex.append(re.escape(ch))
        i += 1
    return re.compile("".join(regex))


def parse_dialplan(conf: ConfFile) -> Dialplan:
    """Extensions of every context of an ``extensions.conf``-style file.

    Resolves ``same =>`` and ``n`` priorities the way ``pbx_config`` does, and
    keeps ``[globals]`` apart. ``[general]`` is settings, not a context.
    """
    plan = Dialplan(conf.filename)
    for section in conf.sections:
        if section.name == "general":
            continue
        if section.name == "globals":
            for option in section.options:
                plan.globals.setdefault(option.name, option.value)
            continue
        extensions = plan.contexts.setdefault(section.name, {})
        last: Extension | None = None
        last_priority = 0
        for option in section.options:
            kind = option.name.lower()
            if kind not in ("exten", "same"):
                if kind in ("include", "switch", "ignorepat"):
                    continue
                raise AsteriskConfError(
                    conf.filename, option.lineno, f"unknown dialplan keyword {option.name!r}"
                )
            if kind == "exten":
                exten, sep, rest = option.value.partition(",")
                if not sep:
                    raise AsteriskConfError(conf.filename, option.lineno, "exten without priority")
                exten = exten.strip()
                last = extensions.setdefault(exten, Extension(section.name, exten))
                last_priority = last.steps[-1].priority if last.steps else 0
            else:
                if last is None:
                    raise AsteriskConfError(
                        conf.filename, option.lineno, "'same =>' with no 'exten =>' before it"
                    )
                rest = option.value
            prio_text, sep, app_text = rest.partition(",")
            if not sep:
                raise AsteriskConfError(
                    conf.filename, option.lineno, "priority without application"
                )
            match = _PRIORITY.match(prio_text.strip())
            if match is None:
                raise AsteriskConfError(
                    conf.filename, option.lineno, f"bad priority {prio_text.strip()!r}"
                )
            if match["prio"] == "hint":
                continue
            priority = last_priority + 1 if match["prio"] == "n" else int(match["prio"])
            if last.step(priority) is not None:
                raise AsteriskConfError(
                    conf.filename,
                    option.lineno,
                    f"priority {priority} of {last.name}@{section.name} defined twice",
                )
            app_match = _APP.match(app_text.strip())
            if app_match is None:
                raise AsteriskConfError(
                    conf.filename, option.lineno, f"bad application call {app_text.strip()!r}"
                )
            last.steps.append(
                Step(
                    context=section.name,
                    exten=last.name,
                    priority=priority,
                    label=match["label"],
                    app=app_match["app"],
                    args=app_match["args"] or "",
                    lineno=option.lineno,
                )
            )
            last_priority = priority
    return plan


# --------------------------------------------------------------------------
# manager.conf event filters, evaluated the way Asterisk 22's manager.c does.

FilterMethod = Literal["regex", "exact", "starts_with", "ends_with", "contains", "none"]
_CRITERION = re.compile(r"(action|name|header|method)\(([^()]*)\)")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """One ``eventfilter`` line.

    Advanced form: ``eventfilter(action(exclude),name(VarSet),header(Variable),
    method(regex)) = ^X`` matches the named header's value. Legacy form:
    ``eventfilter = !Event: RTCP`` is a regex over the whole event text,
    ``!`` meaning exclude.
    """

    exclude: bool
    event: str | None
    header: str | None
    method: FilterMethod
    expression: str
    lineno: int

    def matches(self, event: str, pairs: list[tuple[str, str]]) -> bool:
        if self.event is not None and self.event.lower() != event.lower():
            return False
        if self.header is None:
            text = "".join(f"{name}: {value}\r\n" for name, value in pairs)
            return self._match(text)
        return any(
            self._match(value.lstrip())
            for name, value in pairs
            if name.lower() == self.header.lower() and value.strip()
        )

    def _match(self, data: str) -> bool:
        expression = self.expression
        if self.method == "regex":
            return re.search(expression, data) is not None
        if self.method == "exact":
            return data == expression
        if self.method == "starts_with":
            return data.startswith(expression)
        if self.method == "ends_with":
            return data.endswith(expression)
        if self.method == "contains":
            return expression in data
        return True


@dataclass(slots=True)
class EventFilters:
    include: list[EventFilter] = field(default_factory=list)
    exclude: list[EventFilter] = field(default_factory=list)

    def allows(self, event: str, pairs: list[tuple[str, str]]) -> bool:
        """Whether an AMI user with these filters receives this event.

        No filters: everything. Any include filter: only what some include
        matches. Then any exclude match drops it.
        """
        if self.include and not any(f.matches(event, pairs) for f in self.include):
            return False
        return not any(f.matches(event, pairs) for f in self.exclude)


def event_filters(section: Section, filename: str = "manager.conf") -> EventFilters:
    """The event filters of one ``manager.conf`` user section."""
    filters = EventFilters()
    for option in section.options:
        name = option.name.replace(" ", "")
        if name.lower() == "eventfilter":
            exclude = option.value.startswith("!")
            expression = option.value[1:] if exclude else option.value
            _check_regex(filename, option.lineno, expression)
            entry = EventFilter(exclude, None, None, "regex", expression, option.lineno)
        elif name.lower().startswith("eventfilter(") and name.endswith(")"):
            criteria = dict(_CRITERION.findall(name[len("eventfilter(") : -1]))
            leftover = _CRITERION.sub("", name[len("eventfilter(") : -1]).replace(",", "")
            action = criteria.get("action", "include")
            method = criteria.get("method", "none")
            if (
                leftover
                or action not in ("include", "exclude")
                or method
                not in (
                    "regex",
                    "exact",
                    "starts_with",
                    "ends_with",
                    "contains",
                    "none",
                )
            ):
                raise AsteriskConfError(filename, option.lineno, f"bad event filter {name!r}")
            if method == "regex":
                _check_regex(filename, option.lineno, option.value)
            entry = EventFilter(
                exclude=action == "exclude",
                event=criteria.get("name"),
                header=criteria.get("header"),
                method=method,  # type: ignore[arg-type]
                expression=option.value,
                lineno=option.lineno,
            )
        else:
            continue
        (filters.exclude if entry.exclude else filters.include).append(entry)
    return filters


def _check_regex(filename: str, lineno: int, expression: str) -> None:
    # Python's re stands in for POSIX ERE here; the shipped filters use only
    # what both accept (classes, alternation, anchors).
    try:
        re.compile(expression)
    except re.error as exc:
        raise AsteriskConfError(filename, lineno, f"bad filter regex: {exc}") from None
