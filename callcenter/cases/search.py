"""Case search and CSV export for supervisors.

An export leaves the system (a spreadsheet for a district meeting, a referral list),
so it carries tokens, never numbers, and no free text: descriptions and notes stay in
the console. Every export is a row in the audit log with its filter and row count.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import Select, func, or_, select

from callcenter.agents.models import Role
from callcenter.store import Store

from .audit import AuditAction, AuditLog, scrub_text
from .errors import CaseError
from .models import CallerIdentity, Case, CaseCall, CaseCategory, CaseHarasser, CaseStatus
from .reference import parse_reference
from .service import REPEAT_HARASSER_CASES, CaseSummary, case_summary

__all__ = ["EXPORT_COLUMNS", "CaseFilter", "CaseSearch", "SearchNotAllowed"]

MAX_RESULTS: Final = 500
MAX_EXPORT: Final = 50_000
EXPORT_COLUMNS: Final = (
    "reference",
    "created_at",
    "status",
    "category",
    "sub_category",
    "risk",
    "district",
    "language",
    "assigned_to",
    "caller_token",
    "harasser_tokens",
    "repeat_harasser",
    "calls",
    "closed_at",
)
# A cell a spreadsheet would run as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SEARCH_ROLES: Final = frozenset({Role.SUPERVISOR.value, Role.ADMIN.value})


class SearchNotAllowed(CaseError, PermissionError):
    code: ClassVar[str] = "search_not_allowed"


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Every field narrows the search; ``created_to`` is exclusive."""

    reference: str | None = None
    status: CaseStatus | str | None = None
    category: CaseCategory | str | None = None
    district: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    token: str | None = None  # a caller's or a harasser's token code, e.g. T-4Q2M8X1Z

    def described(self) -> dict[str, Any]:
        """The filter for the audit log (scrubbed there again)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _utc(value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    text = scrub_text(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


class CaseSearch:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _check_role(role: Role | str) -> None:
        if str(role).strip().lower() not in _SEARCH_ROLES:
            raise SearchNotAllowed("case search and export are for supervisors")

    def _query(self, where: CaseFilter) -> Select[tuple[Case, str | None]]:
        query = select(Case, CallerIdentity.token_code).outerjoin(
            CallerIdentity, CallerIdentity.id == Case.caller_identity_id
        )
        if where.reference:
            query = query.where(Case.reference == parse_reference(where.reference).digits)
        if where.status:
            query = query.where(Case.status == CaseStatus(where.status).value)
        if where.category:
            query = query.where(Case.category == CaseCategory(where.category).value)
        if where.district:
            query = query.where(func.lower(Case.district) == where.district.strip().lower())
        if where.created_from is not None:
            query = query.where(Case.created_at >= _utc(where.created_from))
        if where.created_to is not None:
            query = query.where(Case.created_at < _utc(where.created_to))
        if where.token:
            code = where.token.strip().upper()
            named = (
                select(CaseHarasser.case_id)
                .join(CallerIdentity, CallerIdentity.id == CaseHarasser.identity_id)
                .where(CallerIdentity.token_code == code)
            )
            callers = select(CallerIdentity.id).where(CallerIdentity.token_code == code)
            query = query.where(
                or_(Case.caller_identity_id.in_(callers), Case.id.in_(named))
            )
        return query.order_by(Case.created_at.desc(), Case.id.desc())

    async def search(
        self, where: CaseFilter, *, role: Role | str, limit: int = 100
    ) -> list[CaseSummary]:
        self._check_role(role)
        query = self._query(where).limit(min(limit, MAX_RESULTS))
        async with self._store.session() as session:
            rows = (await session.execute(query)).all()
            return [case_summary(case, token) for case, token in rows]

    async def export_csv(self, where: CaseFilter, *, actor: str, role: Role | str) -> str:
        """The matching cases as CSV (:data:`EXPORT_COLUMNS`), audited."""
        self._check_role(role)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        async with self._store.transaction() as session:
            rows = (await session.execute(self._query(where).limit(MAX_EXPORT))).all()
            case_ids = [case.id for case, _token in rows]
            harassers: dict[int, list[tuple[str, int]]] = {}
            calls: dict[int, int] = {}
            if case_ids:
                counts = (
                    select(CaseHarasser.identity_id, func.count().label("n"))
                    .group_by(CaseHarasser.identity_id)
                    .subquery()
                )
                named = await session.execute(
                    select(CaseHarasser.case_id, CallerIdentity.token_code, counts.c.n)
                    .join(CallerIdentity, CallerIdentity.id == CaseHarasser.identity_id)
                    .join(counts, counts.c.identity_id == CaseHarasser.identity_id)
                    .where(CaseHarasser.case_id.in_(case_ids))
                    .order_by(CaseHarasser.case_id, CallerIdentity.token_code)
                )
                for case_id, code, count in named:
                    harassers.setdefault(case_id, []).append((code, int(count)))
                linked = await session.execute(
                    select(CaseCall.case_id, func.count())
                    .where(CaseCall.case_id.in_(case_ids))
                    .group_by(CaseCall.case_id)
                )
                calls = {case_id: int(n) for case_id, n in linked}
            for case, token in rows:
                named_here = harassers.get(case.id, [])
                writer.writerow(
                    [
                        _cell(case.reference),
                        _cell(_utc(case.created_at)),
                        _cell(case.status),
                        _cell(case.category),
                        _cell(case.sub_category),
                        _cell(case.risk),
                        _cell(case.district),
                        _cell(case.language),
                        _cell(case.assigned_to),
                        _cell(token),
                        _cell(";".join(code for code, _n in named_here)),
                        "yes" if any(n >= REPEAT_HARASSER_CASES for _c, n in named_here) else "no",
                        str(calls.get(case.id, 0)),
                        _cell(_utc(case.closed_at) if case.closed_at else None),
                    ]
                )
            await self._audit.append(
                session, actor=actor, action=AuditAction.EXPORT, subject="cases",
                details={"filter": where.described(), "rows": len(rows), "role": str(role)},
                at=self._clock(),
            )
        return out.getvalue()
