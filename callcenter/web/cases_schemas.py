"""Request and response bodies of the cases API.

No response model here has a field that could hold a phone number except
:class:`RevealOut`: a caller or a harasser appears as a vault token code, and free text
(description, notes, reasons) comes from the cases service already scrubbed. Requests
forbid unknown fields and cap every string, so a mistyped field is a 422 that names it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callcenter.cases.models import (
    CaseActionKind,
    CaseCategory,
    CaseStatus,
    ConsentScope,
    RiskLevel,
)
from callcenter.cases.reference import parse_reference
from callcenter.cases.service import INDIA_TIME, CaseSummary, CaseView, HarasserView

#: A vault token code as agents read it: T- (caller), H- (harasser), W- (withheld).
TOKEN_PATTERN = r"^[A-Za-z]-[0-9A-Za-z]{8}$"
_LANGUAGE_PATTERN = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$"
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Mirrors the cases service's caps, so an oversized field is refused before any work.
TEXT_MAX = 4000
SHORT_MAX = 64
USERNAME_MAX = 32
MAX_BLOCK_DAYS = 90


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- requests ------------------------------------------------------------------------


def _moment(value: object, *, end_of_day: bool) -> object:
    """A query's date or date-time; times without an offset are India time.

    Supervisors think in the helpline's day, so ``to=2026-03-31`` means "through the
    31st": a bare date as the upper bound is the start of the next day (exclusive).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _DATE_ONLY.fullmatch(text):
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(), INDIA_TIME)
    moment = datetime.fromisoformat(text)  # ValueError -> 422 naming the field
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=INDIA_TIME)


class CaseQuery(_Request):
    """The query string of a search or an export; every field narrows it."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, populate_by_name=True
    )

    reference: str | None = Field(default=None, max_length=32)
    status: CaseStatus | None = None
    category: CaseCategory | None = None
    district: str | None = Field(default=None, max_length=SHORT_MAX)
    created_from: datetime | None = Field(default=None, alias="from")
    created_to: datetime | None = Field(default=None, alias="to")
    #: A caller's or a harasser's token code.
    token: str | None = Field(default=None, pattern=TOKEN_PATTERN)
    limit: int = Field(default=100, ge=1, le=500)

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        # InvalidReference is a ValueError: a typo is a 422 on this field, not a 500.
        return None if value is None else parse_reference(value).digits

    @field_validator("created_from", mode="before")
    @classmethod
    def _from(cls, value: object) -> object:
        return _moment(value, end_of_day=False)

    @field_validator("created_to", mode="before")
    @classmethod
    def _to(cls, value: object) -> object:
        return _moment(value, end_of_day=True)


class CaseUpdateRequest(_Request):
    """Fields to change; the assigned agent may change only ``description``."""

    status: CaseStatus | None = None
    #: Why the status changed; kept in the timeline.
    reason: str | None = Field(default=None, max_length=TEXT_MAX)
    assigned_to: str | None = Field(default=None, min_length=1, max_length=USERNAME_MAX)
    category: CaseCategory | None = None
    sub_category: str | None = Field(default=None, max_length=SHORT_MAX)
    description: str | None = Field(default=None, max_length=TEXT_MAX)
    language: str | None = Field(default=None, pattern=_LANGUAGE_PATTERN)
    district: str | None = Field(default=None, max_length=SHORT_MAX)
    risk: RiskLevel | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        if self.reason is not None and self.status is None:
            raise ValueError("a reason goes with a status change")
        return self

    def field_changes(self) -> dict[str, Any]:
        """The case fields (not status) this request sets."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set - {"status", "reason"}
            if getattr(self, name) is not None
        }


class NoteRequest(_Request):
    text: str = Field(min_length=1, max_length=TEXT_MAX)


class ActionRequest(_Request):
    kind: CaseActionKind
    note: str | None = Field(default=None, max_length=TEXT_MAX)


class HarasserRequest(_Request):
    """A harasser's number as the agent typed it; it goes to the vault and nowhere else."""

    number: str = Field(min_length=1, max_length=SHORT_MAX)


class ConsentRequest(_Request):
    scope: ConsentScope
    #: Only for the ``department`` scope: which department she agreed to.
    department: str | None = Field(default=None, max_length=SHORT_MAX)


class RevealRequest(_Request):
    purpose: ConsentScope
    department: str | None = Field(default=None, max_length=SHORT_MAX)
    #: An emergency override without her consent: a written reason, audited.
    override_reason: str | None = Field(default=None, max_length=1000)


class BlockRequest(_Request):
    days: int = Field(ge=1, le=MAX_BLOCK_DAYS)
    reason: str = Field(min_length=10, max_length=1000)


# -- responses -----------------------------------------------------------------------


class HarasserOut(_Response):
    token: str
    #: In how many complaints he is named.
    complaint_count: int
    #: Named in several complaints: the console flags him.
    repeat: bool

    @classmethod
    def of(cls, view: HarasserView) -> HarasserOut:
        return cls(token=view.token, complaint_count=view.complaint_count, repeat=view.repeat)


class TimelineEntryOut(_Response):
    at: datetime
    actor: str
    kind: Literal["status", "action", "note"]
    #: The new status, the action's kind, or "note".
    what: str
    text: str | None


class CaseCallOut(_Response):
    node: str
    linkedid: str


class ConsentOut(_Response):
    id: int
    scope: ConsentScope
    department: str | None
    given_at: datetime
    recorded_by: str
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    #: Whether this consent still covers anything.
    active: bool

    @classmethod
    def of(cls, record: Any) -> ConsentOut:
        return cls(
            id=record.id, scope=record.scope, department=record.department,
            given_at=record.given_at, recorded_by=record.recorded_by,
            withdrawn_at=record.withdrawn_at, withdrawn_by=record.withdrawn_by,
            active=record.withdrawn_at is None,
        )


class CaseSummaryOut(_Response):
    reference: str
    #: As read aloud: "2026 0001 237".
    reference_grouped: str
    status: CaseStatus
    category: CaseCategory
    sub_category: str | None
    risk: RiskLevel
    district: str | None
    language: str | None
    assigned_to: str | None
    #: The caller as her vault token; None for a case opened without one.
    caller_token: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def fields_of(cls, summary: CaseSummary) -> dict[str, Any]:
        return {
            "reference": summary.reference,
            "reference_grouped": summary.reference_grouped,
            "status": summary.status,
            "category": summary.category,
            "sub_category": summary.sub_category,
            "risk": summary.risk,
            "district": summary.district,
            "language": summary.language,
            "assigned_to": summary.assigned_to,
            "caller_token": summary.caller_token,
            "created_at": summary.created_at,
            "updated_at": summary.updated_at,
            "closed_at": summary.closed_at,
        }

    @classmethod
    def of(cls, summary: CaseSummary) -> CaseSummaryOut:
        return cls(**cls.fields_of(summary))


class CaseList(_Response):
    cases: list[CaseSummaryOut]
    #: The most this search returns; narrow the filter when it is reached.
    limit: int


class CaseOut(CaseSummaryOut):
    description: str
    #: When the case last entered each status.
    status_times: dict[CaseStatus, datetime | None]
    harassers: list[HarasserOut]
    calls: list[CaseCallOut]
    #: Her consents (all of them, withdrawn ones too), newest last.
    consents: list[ConsentOut]
    timeline: list[TimelineEntryOut]

    @classmethod
    def of_view(
        cls, view: CaseView, calls: list[CaseCallOut], consents: list[ConsentOut]
    ) -> CaseOut:
        return cls(
            **cls.fields_of(view.summary),
            description=view.description,
            status_times=dict(view.status_times),
            harassers=[HarasserOut.of(h) for h in view.harassers],
            calls=calls,
            consents=consents,
            timeline=[
                TimelineEntryOut(at=e.at, actor=e.actor, kind=e.kind,  # type: ignore[arg-type]
                                 what=e.what, text=e.text)
                for e in view.timeline
            ],
        )


class RevealOut(_Response):
    """The one response of the API that carries a phone number."""

    reference: str
    caller_token: str | None
    #: Her number in E.164, for the purpose below only.
    number: str
    purpose: ConsentScope
    department: str | None
    basis: Literal["consent", "override"]


class BlockOut(_Response):
    id: int
    token: str
    reason: str
    blocked_by: str
    blocked_at: datetime
    expires_at: datetime


class AuditProblemOut(_Response):
    seq: int
    code: str
    message: str


class AuditVerifyOut(_Response):
    ok: bool
    #: Rows walked, and the last row's seq.
    checked: int
    head_seq: int
    #: The first row that is wrong or missing, when the chain is broken.
    first_bad_seq: int | None
    #: True: the anchor's signature holds; None: no anchor key is configured.
    anchor_signed: bool | None
    problems: list[AuditProblemOut]
