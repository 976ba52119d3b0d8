"""The dialplan subset the simulator runs: ``extensions.conf`` text, ``${}`` and ``$[]``.

Pure functions and data, no channels: :func:`parse_extensions` turns the text
into :class:`Dialplan`; :func:`substitute` expands ``${VAR}``, ``${FUNC(args)}``
and ``$[expression]`` through a resolver the channel provides; :func:`evaluate`
is Asterisk's expression language (``ast_expr2``) for the operators the
shipped dialplan uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from callcenter.pbx.asterisk_conf import pattern_matches


class DialplanError(ValueError):
    pass


@dataclass
class Extension:
    pattern: str
    priorities: dict[int, tuple[str, str]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class Context:
    name: str
    extensions: dict[str, Extension] = field(default_factory=dict)
    includes: list[str] = field(default_factory=list)


@dataclass
class Dialplan:
    contexts: dict[str, Context] = field(default_factory=dict)
    #: the ``[globals]`` section (Asterisk reads only the first one).
    globals: dict[str, str] = field(default_factory=dict)

    def find(
        self, context: str, exten: str, _seen: frozenset[str] = frozenset()
    ) -> Extension | None:
        """The extension ``exten`` runs in ``context`` (exact match before patterns)."""
        ctx = self.contexts.get(context)
        if ctx is None or context in _seen:
            return None
        found = ctx.extensions.get(exten)
        if found is not None and not exten.startswith("_"):
            return found
        best: Extension | None = None
        best_rank: tuple[int, int] | None = None
        for pattern, ext in ctx.extensions.items():
            if pattern.startswith("_") and match_pattern(pattern, exten):
                # Asterisk prefers the most specific pattern: fewer wildcards,
                # then longer literal prefix.
                rank = (_pattern_width(pattern), -len(pattern))
                if best_rank is None or rank < best_rank:
                    best, best_rank = ext, rank
        if best is not None:
            return best
        for included in ctx.includes:
            found = self.find(included, exten, _seen | {context})
            if found is not None:
                return found
        return None

    def exists(self, context: str, exten: str, priority: int = 1) -> bool:
        ext = self.find(context, exten)
        return ext is not None and priority in ext.priorities


def _pattern_width(pattern: str) -> int:
    width = 0
    for ch in pattern[1:]:
        if ch in ".!":
            width += 1000
        elif ch in "XZN[":
            width += 10
    return width


def match_pattern(pattern: str, exten: str) -> bool:
    """Asterisk extension pattern (``_X.``, ``_NXX``, ``_[1-3]!``...) against an extension.

    The same matcher the dialplan checks use, so the simulator and the checks
    cannot disagree on which extension a call lands in.
    """
    return pattern_matches(pattern, exten)


_PRIORITY = re.compile(r"^(\d+|n|same|hint)(?:\(([^)]*)\))?$")


def parse_extensions(text: str) -> Dialplan:
    """Parse ``extensions.conf`` text (the subset: contexts, exten/same, include)."""
    plan = Dialplan()
    ctx: Context | None = None
    last: Extension | None = None
    last_prio = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("[") and "]" in line:
            name = line[1 : line.index("]")].strip()
            ctx = plan.contexts.setdefault(name, Context(name))
            last, last_prio = None, 0
            continue
        if "=>" in line:
            key, _, value = line.partition("=>")
        elif "=" in line:
            key, _, value = line.partition("=")
        else:
            raise DialplanError(f"line {lineno}: cannot parse {raw!r}")
        raw_key = key.strip()
        key = raw_key.lower()
        value = value.strip()
        if ctx is not None and ctx.name == "globals":
            plan.globals.setdefault(raw_key, value)
            continue
        if ctx is None:
            if key in ("static", "writeprotect", "clearglobalvars", "autofallthrough"):
                continue
            raise DialplanError(f"line {lineno}: {key} outside a context")
        if key == "include":
            ctx.includes.append(value)
            continue
        if key == "same":
            if last is None:
                raise DialplanError(f"line {lineno}: 'same' without a previous exten")
            pattern, rest = last.pattern, value
        elif key == "exten":
            pattern, _, rest = value.partition(",")
            pattern = pattern.strip()
        else:
            continue  # [globals] and other assignments are not needed here
        prio_text, _, app_text = rest.partition(",")
        m = _PRIORITY.match(prio_text.strip())
        if m is None:
            raise DialplanError(f"line {lineno}: bad priority {prio_text!r}")
        if m.group(1) == "hint":
            continue
        ext = ctx.extensions.setdefault(pattern, Extension(pattern))
        if m.group(1) in ("n", "same"):
            if last is not ext:
                raise DialplanError(f"line {lineno}: 'n' priority without a previous one")
            prio = last_prio + 1
        else:
            prio = int(m.group(1))
        if m.group(2):
            ext.labels[m.group(2)] = prio
        app, args = split_app(app_text.strip())
        ext.priorities[prio] = (app, args)
        last, last_prio = ext, prio
    return plan


def _strip_comment(line: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
            continue
        if ch == ";":
            break
        out.append(ch)
        i += 1
    return "".join(out)


def split_app(text: str) -> tuple[str, str]:
    """``App(args)`` -> ("App", "args"); ``App`` -> ("App", "")."""
    if "(" not in text:
        return text.strip(), ""
    name, _, rest = text.partition("(")
    if rest.endswith(")"):
        rest = rest[:-1]
    return name.strip(), rest


def split_args(args: str, sep: str = ",") -> list[str]:
    """Split application arguments on ``sep`` outside (), [], {} and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    cur: list[str] = []
    for ch in args:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


# -- substitution ------------------------------------------------------------

Resolver = Callable[[str], str]


def substitute(text: str, resolve: Resolver) -> str:
    """Expand ``${...}`` and ``$[...]`` (inner first, as pbx_substitute_variables)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n and text[i + 1] in "{[":
            opener = text[i + 1]
            closer = "}" if opener == "{" else "]"
            depth = 1
            j = i + 2
            while j < n and depth:
                if text[j] == "$" and j + 1 < n and text[j + 1] in "{[":
                    # a nested ${ or $[ opens a level whatever its bracket kind
                    depth += 1 if text[j + 1] == opener else 0
                    j += 1
                elif text[j] == opener:
                    depth += 1
                elif text[j] == closer:
                    depth -= 1
                j += 1
            inner = substitute(text[i + 2 : j - 1], resolve)
            if opener == "{":
                out.append(_variable(inner, resolve))
            else:
                out.append(evaluate(inner))
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_SUBSTR = re.compile(r"^([^:()]+(?:\([^)]*\))?):(-?\d+)(?::(-?\d+))?$")


def _variable(expr: str, resolve: Resolver) -> str:
    m = _SUBSTR.match(expr)
    if m is None:
        return resolve(expr)
    value = resolve(m.group(1))
    offset = int(m.group(2))
    length = int(m.group(3)) if m.group(3) is not None else None
    start = offset if offset >= 0 else max(0, len(value) + offset)
    if length is None:
        return value[start:]
    if length < 0:
        return value[start:length]
    return value[start : start + length]


# -- $[ ] expressions ----------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:("(?:[^"\\]|\\.)*")|(\|\||&&|!=|<=|>=|=~|==|[|&=<>+\-*/%!()?:])|([^\s|&=<>+\-*/%!()?:"]+))'
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        if m.group(1) is not None:
            out.append(("s", m.group(1)[1:-1]))
        elif m.group(2) is not None:
            out.append(("op", m.group(2)))
        else:
            out.append(("s", m.group(3)))
        pos = m.end()
    return out


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def truthy(value: str) -> bool:
    number = _num(value)
    if number is not None:
        return number != 0
    return value != ""


class _ExprParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.pos = 0

    def peek(self) -> str | None:
        if self.pos < len(self.toks) and self.toks[self.pos][0] == "op":
            return self.toks[self.pos][1]
        return None

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> str:
        if not self.toks:
            return ""
        value = self.ternary()
        return value

    def ternary(self) -> str:
        cond = self.or_()
        if self.peek() == "?":
            self.take()
            a = self.ternary()
            if self.peek() == ":" or self.peek() == "::":
                self.take()
            b = self.ternary()
            return a if truthy(cond) else b
        return cond

    def or_(self) -> str:
        left = self.and_()
        while self.peek() in ("|", "||"):
            self.take()
            right = self.and_()
            left = left if truthy(left) else (right if truthy(right) else "0")
        return left

    def and_(self) -> str:
        left = self.cmp()
        while self.peek() in ("&", "&&"):
            self.take()
            right = self.cmp()
            left = left if (truthy(left) and truthy(right)) else "0"
        return left

    def cmp(self) -> str:
        left = self.add()
        while self.peek() in ("=", "==", "!=", "<", ">", "<=", ">=", "=~"):
            op = self.take()[1]
            right = self.add()
            if op == "=~":
                left = "1" if re.search(right, left) else "0"
                continue
            a, b = _num(left), _num(right)
            x: float | str
            y: float | str
            x, y = (a, b) if a is not None and b is not None else (left, right)
            result = {
                "=": x == y,
                "==": x == y,
                "!=": x != y,
                "<": x < y,  # type: ignore[operator]
                ">": x > y,  # type: ignore[operator]
                "<=": x <= y,  # type: ignore[operator]
                ">=": x >= y,  # type: ignore[operator]
            }[op]
            left = "1" if result else "0"
        return left

    def add(self) -> str:
        left = self.mul()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            right = self.mul()
            a, b = _num(left) or 0.0, _num(right) or 0.0
            left = _fmt(a + b if op == "+" else a - b)
        return left

    def mul(self) -> str:
        left = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take()[1]
            right = self.unary()
            a, b = _num(left) or 0.0, _num(right) or 0.0
            if op == "*":
                left = _fmt(a * b)
            elif b == 0:
                left = "0"
            elif op == "/":
                left = _fmt(float(int(a / b)))
            else:
                left = _fmt(float(int(a) % int(b)))
        return left

    def unary(self) -> str:
        op = self.peek()
        if op == "-":
            self.take()
            return _fmt(-(_num(self.unary()) or 0.0))
        if op == "!":
            self.take()
            return "0" if truthy(self.unary()) else "1"
        return self.primary()

    def primary(self) -> str:
        if self.pos >= len(self.toks):
            return ""
        kind, value = self.take()
        if kind == "op" and value == "(":
            inner = self.ternary()
            if self.peek() == ")":
                self.take()
            return inner
        if kind == "op":
            raise DialplanError(f"unexpected operator {value!r}")
        # adjacent bare words form one string ("a b" without quotes)
        return value


def evaluate(expression: str) -> str:
    """Evaluate an Asterisk ``$[...]`` expression body."""
    try:
        return _ExprParser(_tokens(expression)).parse()
    except (DialplanError, IndexError, ValueError, TypeError, re.error):
        return ""
