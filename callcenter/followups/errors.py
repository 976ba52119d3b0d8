"""Errors of the follow-up scheduler (one root).

Every class carries a stable ``code`` for the web layer. ``reason`` texts end up in the
task's ``last_error`` column and in logs, so they are short codes chosen by the code that
raises them, never a message that could quote a caller's number.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar


class FollowupError(Exception):
    """Root of every error raised by ``callcenter.followups``."""

    code: ClassVar[str] = "followup_error"


class TaskPayloadError(FollowupError, ValueError):
    """A payload that is not a flat set of row references (or looks like it holds a number).

    The message names the key, never the value: the value may be the number itself.
    """

    code: ClassVar[str] = "task_payload_invalid"


class UnknownTaskKind(FollowupError, LookupError):
    """No handler is registered for this kind of task."""

    code: ClassVar[str] = "task_kind_unknown"


class LeaseLost(FollowupError):
    """This instance no longer holds the task's claim: another instance took it over.

    Raised by :meth:`TaskContext.before_call` instead of letting a stale worker place a
    call; the handler must let it propagate.
    """

    code: ClassVar[str] = "task_lease_lost"


class RetryTask(FollowupError):
    """Raised by a handler: this attempt did not succeed; try again after a backoff.

    After :meth:`TaskContext.before_call`, raise it only when the handler KNOWS the call
    ended (an OriginateResponse Failure, for example): a retry is a new call to her.
    """

    code: ClassVar[str] = "task_retry"

    def __init__(self, reason: str, *, delay: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class TaskFailed(FollowupError):
    """Raised by a handler: the task cannot succeed (the case was closed, consent withdrawn)."""

    code: ClassVar[str] = "task_failed"

    def __init__(self, reason: str, *, outcome: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
