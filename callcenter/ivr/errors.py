"""One exception root for the IVR layer.

``IvrError`` covers everything ``callcenter.ivr`` raises: a menu file that does
not validate (:class:`MenuInvalid`, carrying every problem with its location),
an AGI command that could not be sent or failed (:class:`IvrCommandError`), a
caller who hung up mid-menu (:class:`CallerHungUp`).
"""

from __future__ import annotations

from dataclasses import dataclass


class IvrError(Exception):
    """Root of every error raised by ``callcenter.ivr``."""


class IvrCommandError(IvrError):
    """An AGI command was refused before sending or failed on the PBX."""


class CallerHungUp(IvrError):
    """The caller's channel is gone; the menu stops for her, nothing to retry."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"caller hung up on {channel}")
        self.channel = channel


@dataclass(frozen=True, slots=True)
class MenuProblem:
    """One thing wrong in a menu file, where it is, and what is wrong.

    ``path`` is a dotted TOML path with non-identifier keys quoted
    (``menus.main.options."4".goto``); ``line`` is 1-based when it could be
    found in the file's text.
    """

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class MenuInvalid(IvrError, ValueError):
    """The menu file does not validate. ``problems`` lists each error."""

    def __init__(self, problems: list[MenuProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the IVR menu:\n{lines}")
