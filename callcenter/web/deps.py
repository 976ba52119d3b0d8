"""What the web layer is given: its options and its collaborators.

The composition root (``callcenter.app``) builds a :class:`WebDeps` and hands it to
:func:`callcenter.web.app.make_app`; nothing in ``callcenter.web`` reaches for a global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy import select

from callcenter.agents.models import Account
from callcenter.agents.views import AgentDirectory
from callcenter.bus import Bus
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

from .metrics import WebMetrics
from .schemas import WrapUpRequest

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Web settings; the defaults are the production ones."""

    #: Secure cookies need HTTPS end to end (or at the balancer); off only for local HTTP.
    cookie_secure: bool = True
    cookie_name: str = "cc_session"
    #: A shift plus handover; after that she signs in again whatever she did.
    session_ttl: float = 14 * 3600.0
    #: A console left open with nobody at it stops being hers.
    session_idle: float = 30 * 60.0
    login_limit_per_user: int = 5
    login_limit_per_address: int = 30
    login_window: float = 300.0
    #: Origins other than this host's that may open WebSockets (e.g. a wall-screen kiosk).
    allowed_origins: frozenset[str] = frozenset()
    #: Requests are small JSON forms; the largest is a wrap-up note.
    max_body_bytes: int = 64 * 1024
    console_interval: float = 1.0
    wallboard_interval: float = 1.0
    #: Messages queued for one socket before it counts as unable to keep up.
    socket_queue: int = 256
    #: How often an open socket re-checks that its session still exists.
    socket_session_check: float = 30.0
    trust_forwarded_for: bool = False
    #: When set, /metrics wants ``Authorization: Bearer <token>`` (Prometheus'
    #: ``authorization`` scrape setting); the numbers tell who is on shift and how busy.
    metrics_token: str | None = None
    redis_prefix: str = "callcenter:"
    static_dir: Path = STATIC_DIR


class CallLookup(Protocol):
    """Read access to call records, as the API needs it."""

    async def get(self, node: str, linkedid: str) -> CallRecord | None: ...

    async def recent_for_agent(self, interface: str, limit: int) -> Sequence[CallRecord]: ...


class Accounts(Protocol):
    async def verify_password(self, username: str, password: str) -> Account | None: ...


class StoreCallLookup:
    """:class:`CallLookup` over the ``call_record`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, node: str, linkedid: str) -> CallRecord | None:
        async with self._store.session() as session:
            return await session.scalar(
                select(CallRecord).where(CallRecord.node == node, CallRecord.linkedid == linkedid)
            )

    async def recent_for_agent(self, interface: str, limit: int) -> Sequence[CallRecord]:
        query = (
            select(CallRecord)
            .where(CallRecord.agent_interface == interface)
            .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
            .limit(limit)
        )
        async with self._store.session() as session:
            return list((await session.scalars(query)).all())


#: node -> that node's QueueStatsSnapshot (or its JSON dict), for the nodes this instance follows.
StatsSource = Callable[[], Mapping[str, Any]]
#: node -> AMI link state ("up", "down", "connecting", "standby"...).
PbxLinks = Callable[[], Mapping[str, str]]
#: Receives a validated wrap-up form; the cases service writes the case from it.
WrapUpSink = Callable[[str, WrapUpRequest], Awaitable[None]]


async def drop_wrapup(username: str, form: WrapUpRequest) -> None:
    """The default sink until cases are wired: the form was validated, nothing keeps it."""


def _no_stats() -> Mapping[str, Any]:
    return {}


def _no_links() -> Mapping[str, str]:
    return {}


def _no_lag() -> Mapping[str, float]:
    return {}


@dataclass(slots=True)
class WebDeps:
    accounts: Accounts
    agents: AgentDirectory
    calls: CallLookup
    bus: Bus
    stats: StatsSource = _no_stats
    pbx_links: PbxLinks = _no_links
    #: node -> seconds the latest AMI event waited before it was handled.
    ami_lag: Callable[[], Mapping[str, float]] = _no_lag
    wrapup_sink: WrapUpSink = drop_wrapup
    #: The cases domain (callcenter.cases): CaseService, ConsentService, CaseSearch,
    #: AuditLog. None in tests that do not serve case routes.
    cases: Any = None
    consent: Any = None
    search: Any = None
    audit: Any = None
    #: Call recordings (callcenter.cases.recordings), when configured.
    recordings: Any = None
    #: Follow-ups (callcenter.followups): callbacks and follow-up calls, referrals and
    #: harasser actions, SMS. None where not served.
    callbacks: Any = None
    referrals: Any = None
    sms: Any = None
    #: Transfers and supervision (listen / whisper / barge) of live calls.
    transfers: Any = None
    store: Store | None = None
    #: redis.asyncio.Redis for sessions and rate limits shared by instances; None = memory.
    redis: Any = None
    options: WebOptions = field(default_factory=WebOptions)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: WebMetrics | None = None

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = WebMetrics(self.registry)
