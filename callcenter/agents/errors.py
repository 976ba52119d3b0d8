"""Errors of the agents domain.

Every error carries a stable ``code`` (what the web layer puts in its JSON body and what a
console can switch on) and a message an admin or an agent can act on.
"""

from __future__ import annotations

from collections.abc import Sequence


class AgentError(Exception):
    """Root of the agents domain's errors."""

    code: str = "agent_error"


# -- accounts ------------------------------------------------------------------


class AccountError(AgentError):
    code = "account_error"


class InvalidAccountData(AccountError, ValueError):
    """A username, display name, role, skill, endpoint or password is not acceptable."""

    code = "invalid_account_data"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class WeakPassword(InvalidAccountData):
    code = "weak_password"

    def __init__(self, message: str) -> None:
        super().__init__("password", message)


class AccountExists(AccountError):
    code = "account_exists"

    def __init__(self, username: str) -> None:
        super().__init__(f"an account named {username!r} already exists")
        self.username = username


class UnknownAccount(AccountError, LookupError):
    code = "unknown_account"

    def __init__(self, username: str) -> None:
        super().__init__(f"no account named {username!r}")
        self.username = username


# -- state machine -------------------------------------------------------------


class InvalidTransition(AgentError):
    """An agent or system command that makes no sense in her current state.

    Observations of the PBX never raise this: the PBX owns member state, so what it reports
    is applied or, when it changes nothing, ignored.
    """

    code = "invalid_transition"

    def __init__(self, status: str, transition: str, message: str) -> None:
        super().__init__(f"cannot {transition} while {status}: {message}")
        self.status = status
        self.transition = transition


class UnknownPauseReason(InvalidTransition):
    code = "unknown_pause_reason"

    def __init__(self, status: str, reason: str, allowed: Sequence[str]) -> None:
        choices = ", ".join(allowed)
        super().__init__(
            status, "pause", f"{reason!r} is not a pause reason (choose one of {choices})"
        )
        self.reason = reason


# -- roster --------------------------------------------------------------------


class RosterInvalid(AgentError, ValueError):
    """The duty roster cannot be used; ``problems`` lists each one with its location."""

    code = "roster_invalid"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: invalid roster:\n  " + "\n  ".join(self.problems))
