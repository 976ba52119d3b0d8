"""Follow-ups: callbacks, follow-up calls, harasser warnings and referral deadlines, run by a
durable exactly-once scheduler (:mod:`callcenter.followups.scheduler`)."""

from .errors import (
    FollowupError,
    LeaseLost,
    RetryTask,
    TaskFailed,
    TaskPayloadError,
    UnknownTaskKind,
)
from .models import ScheduledTask, TaskState
from .scheduler import (
    TASK_VARIABLE,
    Backoff,
    CallSettler,
    Handler,
    OutcomeHook,
    Scheduler,
    Settlement,
    TaskContext,
    TaskReport,
)

__all__ = [
    "TASK_VARIABLE",
    "Backoff",
    "CallSettler",
    "FollowupError",
    "Handler",
    "LeaseLost",
    "OutcomeHook",
    "RetryTask",
    "ScheduledTask",
    "Scheduler",
    "Settlement",
    "TaskContext",
    "TaskFailed",
    "TaskPayloadError",
    "TaskReport",
    "TaskState",
    "UnknownTaskKind",
]
