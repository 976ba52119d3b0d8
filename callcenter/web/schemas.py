"""Request and response bodies of the API, as pydantic models.

Requests forbid unknown fields: a console that sends ``{"reson": "break"}`` gets a 422
naming the field instead of a pause with no reason. Responses reuse the agents' and
queues' own types (``AgentView``, ``QueueStatsSnapshot``) so there is one definition of
what a wallboard shows; the OpenAPI document is generated from these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callcenter.agents.views import AgentView
from callcenter.cases.models import WRAPUP_CHOICES, WRAPUP_SUGGESTIONS
from callcenter.queues.stats import AbandonedCall, QueueStatsSnapshot

# The wrap-up choices come from the cases domain, so the form and the case file agree.
WRAPUP_CATEGORIES: tuple[str, ...] = tuple(WRAPUP_CHOICES)
WrapUpCategory = Literal[WRAPUP_CATEGORIES]  # type: ignore[valid-type]
#: Call category (IVR or case) -> the wrap-up choice the form starts on.
WRAPUP_SUGGESTED: dict[str, str] = {str(c): choice for c, choice in WRAPUP_SUGGESTIONS.items()}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- requests ------------------------------------------------------------------


class LoginRequest(_Request):
    username: str = Field(min_length=1, max_length=64)
    # The accounts service caps what it hashes; this caps what we read at all.
    password: str = Field(min_length=1, max_length=1024)


class PauseRequest(_Request):
    reason: str = Field(min_length=1, max_length=32)


class WrapUpRequest(_Request):
    category: WrapUpCategory
    notes: str = Field(default="", max_length=4000)
    #: The call the form is about, when the console knows it.
    node: str | None = Field(default=None, max_length=64)
    linkedid: str | None = Field(default=None, max_length=64)


# -- responses -----------------------------------------------------------------


class ErrorBody(_Response):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(_Response):
    error: ErrorBody


class SessionInfo(_Response):
    username: str
    display_name: str
    role: str
    endpoint: str
    csrf_token: str
    expires_at: float


class CallRecordOut(_Response):
    """A call as the API shows it: the caller only as her vault token."""

    node: str
    linkedid: str
    caller_token: str | None
    started_at: datetime | None
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    ivr_path: str | None
    route: str | None
    category: str | None
    language: str | None
    queue: str | None
    priority: int | None
    risk: str | None
    flags: list[str]
    callback_ok: bool | None
    agent_interface: str | None
    outcome: str | None
    hold_seconds: int | None
    talk_seconds: int | None

    @classmethod
    def of(cls, record: Any) -> CallRecordOut:
        flags = [f for f in (record.flags or "").replace(";", ",").split(",") if f]
        return cls(
            node=record.node,
            linkedid=record.linkedid,
            caller_token=record.caller_token,
            started_at=record.started_at,
            queued_at=record.queued_at,
            answered_at=record.answered_at,
            ended_at=record.ended_at,
            ivr_path=record.ivr_path,
            route=record.route,
            category=record.category,
            language=record.language,
            queue=record.queue,
            priority=record.priority,
            risk=record.risk,
            flags=flags,
            callback_ok=record.callback_ok,
            agent_interface=record.agent_interface,
            outcome=record.outcome,
            hold_seconds=record.hold_seconds,
            talk_seconds=record.talk_seconds,
        )


class CallList(_Response):
    calls: list[CallRecordOut]


class MeResponse(_Response):
    agent: AgentView | None
    pause_reasons: list[str]
    wrapup_categories: list[str]
    #: A call's category -> the wrap-up choice her form starts on, set once per call.
    wrapup_suggestions: dict[str, str] = {}
    #: Optional domains this deployment serves (cases, transfers, callbacks...): the pages
    #: show only the panels whose routes exist.
    features: list[str] = []


class AgentList(_Response):
    agents: list[AgentView]


class QueuesResponse(_Response):
    nodes: list[QueueStatsSnapshot]


class AbandonedResponse(_Response):
    calls: list[AbandonedCall]


class AgentResponse(_Response):
    agent: AgentView


class Health(_Response):
    live: bool
    ready: bool
    database: Literal["ok", "unreachable", "not_configured"]
    pbx: dict[str, str]
