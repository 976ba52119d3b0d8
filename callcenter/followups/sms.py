"""SMS to a caller through Twilio: neutral templates, only with her consent, sent exactly once.

A text on her phone may be read by the person she called about. So

- every template is neutral (an "appointment reference" style text); a template or a
  rendered text naming the helpline's subject is refused when the settings load and again
  before each send;
- a message is sent only while she has a recorded, not withdrawn consent of scope ``sms``;
  a refused request is audited;
- her number leaves the vault only in memory, at send time, for the request to Twilio. It
  is in no column, log line or error text: Twilio's own wire logger (which logs URLs and
  query strings, the ``To`` of a list request included) is muted, and Twilio's error
  messages (which quote the number) are reduced to their numeric code.

Exactly once. A send is a scheduler task of kind ``sms`` and follows the scheduler's two
phases: :meth:`TaskContext.before_call` commits ``dialling``, then the message row commits
``submitting`` (fenced against the task's claim), and only then does the request go out.
Twilio has no idempotency key, so a message found ``submitting`` after its worker died is
never sent again blindly: :class:`SmsSettler` looks for it in Twilio's message list (same
recipient, same text, created since the attempt) and, if it is not there, marks it
``unconfirmed`` for a person to check. A status callback for it (its URL carries our
message id and is signed) also settles it.

DLT (India): operators deliver only texts whose header (sender id) and template are
registered on a DLT portal under the sender's principal entity id. twilio-python 9.x has no
parameter for these ids; Twilio's documented route is to pre-register the header and the
templates (entity id, template ids) with Twilio's sender id team, after which Twilio maps
a text to its template by content. We send from the registered header (``sender_id`` as
``From``) or from a Messaging Service holding it, keep each template's DLT id with it, and
by default also carry ``DltEntityId``/``DltTemplateId`` form fields on the request (the
names of Twilio's error catalogue, e.g. 21901 "DltTemplateId is invalid"), through the HTTP
client, since the library's ``create`` drops parameters it does not know.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.cases.audit import AuditLog, scrub_text
from callcenter.cases.models import CallerIdentity, Consent
from callcenter.cases.vault import Purpose, SecretNumber, Vault
from callcenter.store import Store

from .errors import FollowupError, LeaseLost, RetryTask, TaskFailed
from .models import ScheduledTask, TaskState, aware
from .scheduler import CallSettler, Scheduler, Settlement, TaskContext
from .sms_models import (
    ACTOR_MAX,
    STATUS_RANK,
    TEMPLATE_KEY_MAX,
    SmsMessage,
    SmsStatus,
    SmsStatusEvent,
)

log = logging.getLogger(__name__)

#: The task kind the scheduler runs SMS sends under.
SMS_TASK_KIND = "sms"
#: The consent scope that covers texting her (added to ``consent.scope`` by migration 0009).
SMS_CONSENT_SCOPE = "sms"
#: Where the Twilio auth token comes from (never from the TOML file).
AUTH_TOKEN_ENV = "CALLCENTER_SECRET_TWILIO_AUTH_TOKEN"
#: The query parameter of the status callback URL naming our message.
CALLBACK_MESSAGE_PARAM = "sms"

# Words a text must not contain: anyone reading her phone must learn nothing from it.
# Matched as word starts, case-insensitively ("harass" catches "harassment"); numbers as
# whole numbers ("1090" but not a reference that happens to contain those digits).
DEFAULT_FORBIDDEN_WORDS: tuple[str, ...] = (
    "1090", "112", "181", "helpline", "help line", "power line", "powerline", "wpl",
    "women", "woman", "harass", "police", "fir", "complaint", "abuse", "violence",
    "stalk", "victim", "counsel", "suicide", "safety", "emergency", "crime", "threat",
    "dowry", "rape", "assault",
)

_DLT_ID = re.compile(r"^\d{10,32}$")
_VARIABLE_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .:/-]{0,31}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TWILIO_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
_MAX_BODY = 320


# -- errors -----------------------------------------------------------------------------


class SmsError(FollowupError):
    """Root of the SMS errors; messages never carry a number."""

    code: ClassVar[str] = "sms_error"


class SmsNotConfigured(SmsError):
    code: ClassVar[str] = "sms_not_configured"


class SmsInvalid(SmsError, ValueError):
    code: ClassVar[str] = "sms_invalid"


class SmsTemplateUnknown(SmsInvalid):
    code: ClassVar[str] = "sms_template_unknown"


class SmsConsentMissing(SmsError, PermissionError):
    """She has not agreed to be texted (or withdrew it); the attempt is audited."""

    code: ClassVar[str] = "sms_consent_required"

    def __init__(self, message: str, *, audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.audit_seq = audit_seq


class SmsNotFound(SmsError, LookupError):
    code: ClassVar[str] = "sms_not_found"


class SmsRejected(SmsError):
    """Twilio refused the request (4xx other than 429): nothing was sent."""

    code: ClassVar[str] = "sms_rejected"

    def __init__(self, status: int, twilio_code: int | None) -> None:
        super().__init__(f"Twilio refused the message (HTTP {status}, code {twilio_code})")
        self.status = status
        self.twilio_code = twilio_code


class SmsUnavailable(SmsError):
    """Twilio could not be reached or asked us to slow down: nothing was sent."""

    code: ClassVar[str] = "sms_unavailable"


# -- settings ----------------------------------------------------------------------------


class SmsTemplate(BaseModel):
    """One neutral text, as registered on the DLT portal, with ``{name}`` fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=_MAX_BODY)
    dlt_template_id: str

    @field_validator("dlt_template_id")
    @classmethod
    def _dlt_id(cls, value: str) -> str:
        if not _DLT_ID.fullmatch(value):
            raise ValueError("a DLT template id is 10-32 digits")
        return value

    @field_validator("text")
    @classmethod
    def _fields(cls, value: str) -> str:
        for _literal, name, spec, conversion in string.Formatter().parse(value):
            if name is None:
                continue
            if not _FIELD_NAME.fullmatch(name) or spec or conversion:
                raise ValueError("fields are plain {lower_case_names}")
        return value

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(
            name for _l, name, _s, _c in string.Formatter().parse(self.text) if name
        )


class SmsSettings(BaseModel):
    """The ``[sms]`` settings (see config/sms.toml). The auth token is not among them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    account_sid: str = ""
    #: A Messaging Service holding the DLT-registered sender; preferred over ``sender_id``.
    messaging_service_sid: str | None = None
    #: The DLT-registered header (sender id), used as ``From`` without a Messaging Service.
    sender_id: str | None = None
    #: The DLT principal entity id the sender and templates are registered under.
    dlt_entity_id: str = ""
    #: Also carry DltEntityId/DltTemplateId form fields on each request.
    send_dlt_parameters: bool = True
    #: Public URL of POST /api/sms/status, given to Twilio as StatusCallback.
    status_callback_url: str | None = None
    #: The scheme://host[:port] Twilio reaches us at, for checking signatures behind a
    #: proxy; None: the URL the request arrived with (see ``trust_forwarded_headers``).
    public_base_url: str | None = None
    #: Rebuild the URL from X-Forwarded-Proto/Host (only behind a proxy that sets them).
    trust_forwarded_headers: bool = False
    #: Twilio's API root; only tests point it elsewhere.
    api_base_url: str | None = None
    request_timeout: float = Field(15.0, gt=0, le=120)
    max_attempts: int = Field(3, ge=1, le=10)
    #: Allowance for clocks when looking for a message in Twilio's list after a crash.
    reconcile_skew_seconds: int = Field(300, ge=0, le=3600)
    forbidden_words: tuple[str, ...] = DEFAULT_FORBIDDEN_WORDS
    templates: dict[str, SmsTemplate] = Field(default_factory=dict)

    @field_validator("account_sid")
    @classmethod
    def _account(cls, value: str) -> str:
        if value and not (value.startswith("AC") and _TWILIO_SID.fullmatch(value)):
            raise ValueError("a Twilio account SID is AC followed by 32 hex digits")
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("MG") and _TWILIO_SID.fullmatch(value)):
            raise ValueError("a Messaging Service SID is MG followed by 32 hex digits")
        return value

    @field_validator("sender_id")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        # DLT headers for transactional/service texts are six letters.
        if value is not None and not re.fullmatch(r"[A-Za-z]{6}", value):
            raise ValueError("a DLT sender id (header) is six letters")
        return value

    @field_validator("dlt_entity_id")
    @classmethod
    def _entity(cls, value: str) -> str:
        if value and not _DLT_ID.fullmatch(value):
            raise ValueError("a DLT entity id is 10-32 digits")
        return value

    @field_validator("templates")
    @classmethod
    def _keys(cls, value: dict[str, SmsTemplate]) -> dict[str, SmsTemplate]:
        for key in value:
            if not re.fullmatch(rf"[a-z][a-z0-9_]{{0,{TEMPLATE_KEY_MAX - 1}}}", key):
                raise ValueError(f"template key {key!r}: lower_case, at most {TEMPLATE_KEY_MAX}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> SmsSettings:
        for key, template in self.templates.items():
            word = forbidden_word(template.text, self.forbidden_words)
            if word is not None:
                raise ValueError(f"template {key!r} says {word!r}: texts must stay neutral")
        if self.enabled:
            missing = [name for name, value in (
                ("account_sid", self.account_sid), ("dlt_entity_id", self.dlt_entity_id),
                ("status_callback_url", self.status_callback_url),
            ) if not value]
            if not self.messaging_service_sid and not self.sender_id:
                missing.append("messaging_service_sid or sender_id")
            if not self.templates:
                missing.append("templates")
            if missing:
                raise ValueError(f"SMS is enabled but {', '.join(missing)} is not set")
        return self

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> SmsSettings:
        """The ``[sms]`` table of a TOML file (config/sms.toml, or the main config)."""
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
        return cls.model_validate(data.get("sms", {}))


def auth_token_from_env(environ: Mapping[str, str] | None = None) -> SecretStr:
    env = os.environ if environ is None else environ
    token = env.get(AUTH_TOKEN_ENV, "").strip()
    if not token:
        raise SmsNotConfigured(f"SMS is enabled but {AUTH_TOKEN_ENV} is not set")
    return SecretStr(token)


def forbidden_word(text: str, words: Sequence[str]) -> str | None:
    """The first forbidden word ``text`` contains, or None."""
    for word in words:
        needle = re.escape(word.strip().casefold()).replace(r"\ ", r"\s+")
        if not needle:
            continue
        pattern = rf"(?<!\d){needle}(?!\d)" if word.strip().isdigit() else rf"\b{needle}"
        if re.search(pattern, text.casefold()):
            return word
    return None


def render(template: SmsTemplate, variables: Mapping[str, str],
           forbidden: Sequence[str] = DEFAULT_FORBIDDEN_WORDS) -> str:
    """The text to send; :class:`SmsInvalid` naming the field when a value does not fit."""
    given = set(variables)
    if given != template.fields:
        missing = sorted(template.fields - given)
        extra = sorted(given - template.fields)
        raise SmsInvalid(f"template fields: missing {missing}, unknown {extra}")
    for name, value in variables.items():
        if not isinstance(value, str) or not _VARIABLE_VALUE.fullmatch(value):
            raise SmsInvalid(f"field {name!r}: 1-32 letters, digits, spaces or . : / -")
        if scrub_text(value) != value:
            raise SmsInvalid(f"field {name!r} looks like a phone number")
    body = template.text.format_map(dict(variables))
    word = forbidden_word(body, forbidden)
    if word is not None:
        raise SmsInvalid(f"the text would say {word!r}; texts must stay neutral")
    return body


def body_digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# -- the gateway (Twilio) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentMessage:
    sid: str
    status: str
    error_code: int | None = None


class SmsGateway(Protocol):
    async def create(self, *, to: SecretNumber, body: str, dlt_template_id: str,
                     status_callback: str | None) -> SentMessage: ...

    async def find(self, *, to: SecretNumber, body_sha256: str, since: datetime,
                   exclude: frozenset[str]) -> SentMessage | None: ...

    async def close(self) -> None: ...


# Form fields the next Messages POST of this task carries besides the library's own.
_EXTRA_FORM: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "sms_extra_form", default=MappingProxyType({})
)
_WIRE_LOGGERS = ("twilio.http_client", "twilio.async_http_client")


def _drop(_record: logging.LogRecord) -> bool:
    return False


def mute_twilio_wire_logs() -> None:
    """Twilio's clients log each request's URL and query (a list's ``To=``): drop them all.

    A filter on the logger itself, not a level: logging configuration that lowers levels
    later (``--log-level DEBUG``) does not bring them back.
    """
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if _drop not in logger.filters:
            logger.addFilter(_drop)


def _muted_logger() -> logging.Logger:
    # Not registered with logging's manager, so no configuration can enable it.
    logger = logging.Logger("callcenter.followups.sms.wire", logging.CRITICAL + 1)
    logger.propagate = False
    logger.disabled = True
    logger.addFilter(_drop)
    return logger


class TwilioGateway:
    """Twilio's Messages API through twilio-python's asyncio HTTP client."""

    def __init__(self, settings: SmsSettings, auth_token: SecretStr) -> None:
        if not settings.account_sid:
            raise SmsNotConfigured("sms.account_sid is not set")
        self._settings = settings
        self._token = auth_token
        self._client: Any = None
        mute_twilio_wire_logs()

    def _twilio(self) -> Any:
        # Built on first use, inside the running loop: its aiohttp session belongs there.
        if self._client is None:
            import aiohttp
            from twilio.http.async_http_client import AsyncTwilioHttpClient
            from twilio.rest import Client

            timeout = self._settings.request_timeout

            class _HelplineHttp(AsyncTwilioHttpClient):
                # The library's own signature, timeout included.
                async def request(  # type: ignore[override]
                    self, method: str, url: str, params: dict[str, object] | None = None,
                    data: dict[str, object] | None = None,
                    headers: dict[str, str] | None = None,
                    auth: tuple[str, str] | None = None,
                    timeout: float | None = None,  # noqa: ASYNC109
                    allow_redirects: bool = False,
                ) -> Any:
                    extra = _EXTRA_FORM.get()
                    if extra and method.upper() == "POST" and data is not None:
                        data = {**data, **extra}
                    if auth is not None:
                        # aiohttp deprecates BasicAuth objects; the header is the same.
                        headers = {**(headers or {}),
                                   "Authorization": aiohttp.encode_basic_auth(*auth)}
                    return await super().request(
                        method, url, params=params, data=data, headers=headers, auth=None,
                        # None would mean "no timeout at all" to aiohttp.
                        timeout=timeout if timeout is not None else self.timeout,
                        allow_redirects=allow_redirects,
                    )

            http = _HelplineHttp(timeout=timeout, logger=_muted_logger())
            client = Client(self._settings.account_sid, self._token.get_secret_value(),
                            http_client=http)
            if self._settings.api_base_url:
                # Domain.base_url is where every Api URL is built from (tests' fake).
                client.api.base_url = self._settings.api_base_url.rstrip("/")
            self._client = client
        return self._client

    async def create(self, *, to: SecretNumber, body: str, dlt_template_id: str,
                     status_callback: str | None) -> SentMessage:
        from twilio.base import values
        from twilio.base.exceptions import TwilioRestException

        settings = self._settings
        extra: dict[str, str] = {}
        if settings.send_dlt_parameters:
            extra = {"DltEntityId": settings.dlt_entity_id, "DltTemplateId": dlt_template_id}
        token = _EXTRA_FORM.set(extra)
        try:
            message = await self._twilio().messages.create_async(
                to=to.e164,
                body=body,
                messaging_service_sid=settings.messaging_service_sid or values.unset,
                from_=(settings.sender_id or values.unset)
                if not settings.messaging_service_sid else values.unset,
                status_callback=status_callback or values.unset,
            )
        except TwilioRestException as exc:
            # exc.msg may quote her number: only the status and Twilio's code travel on.
            status = int(exc.status or 0)
            if status == 429:
                raise SmsUnavailable("Twilio asked to slow down (429)") from None
            if 400 <= status < 500:
                raise SmsRejected(status, exc.code) from None
            raise SmsError(f"Twilio answered HTTP {status}; the message may exist") from None
        except OSError as exc:
            if _connect_failed(exc):
                raise SmsUnavailable("Twilio could not be reached") from None
            raise
        finally:
            _EXTRA_FORM.reset(token)
        return SentMessage(str(message.sid), str(message.status or "queued"),
                           message.error_code)

    async def find(self, *, to: SecretNumber, body_sha256: str, since: datetime,
                   exclude: frozenset[str]) -> SentMessage | None:
        # Filtered by recipient on Twilio's side and by creation time here: a message
        # still queued has no date_sent, so Twilio's DateSent filter would hide it.
        listed = await self._twilio().messages.list_async(to=to.e164, limit=50)
        found: list[tuple[datetime, SentMessage]] = []
        for message in listed:
            created = message.date_created
            if message.sid in exclude or created is None or created < since:
                continue
            if body_digest(message.body or "") != body_sha256:
                continue
            found.append((created, SentMessage(str(message.sid), str(message.status),
                                               message.error_code)))
        return min(found, key=lambda pair: pair[0])[1] if found else None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()


def _connect_failed(exc: BaseException) -> bool:
    import aiohttp

    return isinstance(exc, aiohttp.ClientConnectorError)


# -- the service ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsStatusEntry:
    status: str
    source: str
    at: datetime
    error_code: int | None


@dataclass(frozen=True, slots=True)
class SmsView:
    id: int
    caller_identity_id: int
    case_id: int | None
    template_key: str
    dlt_template_id: str
    status: str
    twilio_sid: str | None
    error_code: int | None
    task_id: int | None
    requested_by: str
    requested_at: datetime
    history: tuple[SmsStatusEntry, ...] = ()

    @classmethod
    def of(cls, row: SmsMessage, history: Sequence[SmsStatusEvent] = ()) -> SmsView:
        return cls(
            row.id, row.caller_identity_id, row.case_id, row.template_key,
            row.dlt_template_id, row.status, row.twilio_sid, row.error_code, row.task_id,
            row.requested_by, aware(row.requested_at),
            tuple(SmsStatusEntry(e.status, e.source, aware(e.at), e.error_code)
                  for e in history),
        )


Clock = Callable[[], datetime]


def _status(text: str) -> SmsStatus | None:
    try:
        return SmsStatus(text.strip().lower())
    except ValueError:
        return None


class SmsService:
    """Requests, sends (as scheduler tasks), settles and tracks texts to callers."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        settings: SmsSettings,
        gateway: SmsGateway,
        *,
        auth_token: SecretStr | None = None,
        scheduler: Scheduler | None = None,
        audit: AuditLog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._auth_token = auth_token
        self._store = store
        self._vault = vault
        self.settings = settings
        self._gateway = gateway
        self._scheduler = scheduler
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))
        self._postgres = store.engine.dialect.name == "postgresql"

    def bind_scheduler(self, scheduler: Scheduler) -> None:
        """The scheduler is built with this service's handler, so it arrives afterwards."""
        self._scheduler = scheduler

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def signature_valid(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        """Whether ``signature`` (X-Twilio-Signature) is Twilio's for ``url`` and ``params``."""
        if self._auth_token is None or not signature:
            return False
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(self._auth_token.get_secret_value())
        return bool(validator.validate(url, dict(params), signature))

    # -- requesting -----------------------------------------------------------------

    async def request(
        self,
        identity_id: int,
        template_key: str,
        variables: Mapping[str, str],
        *,
        requested_by: str,
        case_id: int | None = None,
        due_at: datetime | None = None,
    ) -> SmsView:
        """Store a text to her and schedule its send; refused without her SMS consent."""
        if self._scheduler is None:
            raise SmsNotConfigured("SMS sending has no scheduler")
        actor = requested_by.strip()
        if not actor or len(actor) > ACTOR_MAX:
            raise SmsInvalid(f"requested_by must be a username (1-{ACTOR_MAX} characters)")
        template = self.settings.templates.get(template_key)
        if template is None:
            raise SmsTemplateUnknown(f"no SMS template {template_key!r}")
        body = render(template, variables, self.settings.forbidden_words)
        now = self._now()
        async with self._store.transaction() as session:
            identity = await session.get(CallerIdentity, identity_id)
            refusal: str | None = None
            if identity is None or identity.purpose != Purpose.CALLER.value:
                raise SmsNotFound("no such caller")
            if identity.sealed is None:
                refusal = "no_number"
            elif not await self._consented(session, identity_id, now):
                refusal = "no_consent"
            if refusal is None:
                row = SmsMessage(
                    caller_identity_id=identity_id, case_id=case_id,
                    template_key=template_key, dlt_template_id=template.dlt_template_id,
                    variables=dict(variables), body_sha256=body_digest(body),
                    status=SmsStatus.PENDING.value, requested_by=actor, requested_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                # The message and its task commit together: neither exists without the other.
                row.task_id = await self._scheduler.add(
                    session, SMS_TASK_KIND, {"sms_id": row.id}, due_at or now,
                    self.settings.max_attempts, case_id=case_id,
                )
                await _note(session, self._postgres, row.id, SmsStatus.PENDING, "local", now)
                if self._audit is not None:
                    await self._audit.append(
                        session, actor=actor, action="sms.request",
                        subject=f"identity:{identity_id}",
                        details={"sms_id": row.id, "template": template_key,
                                 "case_id": case_id},
                        at=now,
                    )
                sms_id = row.id
        if refusal is not None:
            seq = None
            if self._audit is not None:
                entry = await self._audit.record(
                    actor=actor, action="sms.refused", subject=f"identity:{identity_id}",
                    details={"reason": refusal, "template": template_key, "case_id": case_id},
                    at=now,
                )
                seq = entry.seq
            if refusal == "no_number":
                raise SmsInvalid("she withheld her number: there is nothing to text")
            raise SmsConsentMissing(
                "she has not agreed to be texted; ask her and record her consent first",
                audit_seq=seq,
            )
        self._scheduler.wake()
        return await self.get(sms_id)

    async def _consented(self, session: AsyncSession, identity_id: int, at: datetime) -> bool:
        found = await session.scalar(
            select(Consent.id).where(
                Consent.identity_id == identity_id,
                Consent.scope == SMS_CONSENT_SCOPE,
                Consent.given_at <= at,
                or_(Consent.withdrawn_at.is_(None), Consent.withdrawn_at > at),
            ).limit(1)
        )
        return found is not None

    async def get(self, sms_id: int) -> SmsView:
        async with self._store.session() as session:
            row = await session.get(SmsMessage, sms_id)
            if row is None:
                raise SmsNotFound("no such message")
            events = await session.scalars(
                select(SmsStatusEvent).where(SmsStatusEvent.message_id == sms_id)
                .order_by(SmsStatusEvent.id)
            )
            return SmsView.of(row, list(events))

    async def for_caller(self, identity_id: int, limit: int = 50) -> list[SmsView]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(SmsMessage).where(SmsMessage.caller_identity_id == identity_id)
                .order_by(SmsMessage.id.desc()).limit(limit)
            )
            return [SmsView.of(row) for row in rows]

    # -- sending (the scheduler's handler for kind "sms") -------------------------------

    async def run_task(self, ctx: TaskContext) -> str | None:
        sms_id = ctx.payload.get("sms_id")
        if not isinstance(sms_id, int) or isinstance(sms_id, bool):
            raise TaskFailed("sms_payload", outcome="invalid")
        now = self._now()
        async with self._store.session() as session:
            row = await session.get(SmsMessage, sms_id)
            if row is None:
                raise TaskFailed("sms_missing", outcome="missing")
            status = SmsStatus(row.status)
            if status is not SmsStatus.PENDING:
                return _task_outcome(status)
            identity = await session.get(CallerIdentity, row.caller_identity_id)
            consented = await self._consented(session, row.caller_identity_id, now)
            template = self.settings.templates.get(row.template_key)
            variables = dict(row.variables)
            sealed = identity.sealed if identity is not None else None
        if not consented:
            await self._finish_unsent(sms_id, "consent withdrawn", now)
            raise TaskFailed("sms_no_consent", outcome="consent_missing")
        if sealed is None:
            await self._finish_unsent(sms_id, "no number", now)
            raise TaskFailed("sms_no_number", outcome="no_number")
        if template is None:
            # The template was removed from the settings after the request.
            await self._finish_unsent(sms_id, "template gone", now)
            raise TaskFailed("sms_template_gone", outcome="template_gone")
        body = render(template, variables, self.settings.forbidden_words)
        number = self._vault.open(sealed, Purpose.CALLER)
        await ctx.before_call()
        await self._mark_submitting(ctx, sms_id)
        try:
            sent = await self._gateway.create(
                to=number, body=body, dlt_template_id=template.dlt_template_id,
                status_callback=self._callback_url(sms_id),
            )
        except SmsRejected as exc:
            await self._settle_row(sms_id, SmsStatus.REJECTED, "api", error_code=exc.twilio_code)
            raise TaskFailed(f"sms_rejected_{exc.twilio_code}", outcome="rejected") from None
        except SmsUnavailable as exc:
            # Nothing left us: the message is pending again, and the task is retried.
            await self._back_to_pending(sms_id)
            raise RetryTask("sms_unavailable") from exc
        # Anything else (timeout, 5xx, connection cut mid-request) leaves the task
        # 'dialling' and the message 'submitting': the settler finds out what happened.
        await self._record_sent(sms_id, sent, "api")
        return "sent"

    def _callback_url(self, sms_id: int) -> str | None:
        base = self.settings.status_callback_url
        if not base:
            return None
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}{CALLBACK_MESSAGE_PARAM}={sms_id}"

    async def _mark_submitting(self, ctx: TaskContext, sms_id: int) -> None:
        """Commit 'submitting' while this claim is still the task's current one.

        The claim check and the update are one transaction holding the task row (shared
        lock on PostgreSQL, the write lock on SQLite), so a settlement cannot see the
        message 'pending' and later find it was sent after all.
        """
        now = self._now()
        current = select(ScheduledTask.id).where(
            ScheduledTask.id == ctx.task_id,
            ScheduledTask.fence == ctx.fence,
            ScheduledTask.state == TaskState.DIALLING,
        )
        async with self._store.transaction() as session:
            if self._postgres and await session.scalar(current.with_for_update(read=True)) is None:
                ctx.lost = True
                raise LeaseLost(f"task {ctx.task_id}: claim {ctx.fence} was taken over")
            result = await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == sms_id, SmsMessage.status == SmsStatus.PENDING,
                       exists(current))
                .values(status=SmsStatus.SUBMITTING.value, submitting_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                ctx.lost = True
                raise LeaseLost(f"task {ctx.task_id}: claim {ctx.fence} was taken over")
            await _note(session, self._postgres, sms_id, SmsStatus.SUBMITTING, "local", now)

    async def _back_to_pending(self, sms_id: int) -> None:
        async with self._store.transaction() as session:
            await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == sms_id, SmsMessage.status == SmsStatus.SUBMITTING)
                .values(status=SmsStatus.PENDING.value, submitting_at=None,
                        updated_at=self._now())
            )

    async def _finish_unsent(self, sms_id: int, why: str, now: datetime) -> None:
        log.info("sms %s not sent: %s", sms_id, why)
        await self._settle_row(sms_id, SmsStatus.NOT_SENT, "local")

    async def _settle_row(self, sms_id: int, status: SmsStatus, source: str, *,
                          error_code: int | None = None, sid: str | None = None) -> bool:
        now = self._now()
        lower = [s.value for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if error_code is not None:
            values["error_code"] = error_code
        if sid is not None:
            values["twilio_sid"] = sid
        async with self._store.transaction() as session:
            result = await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == sms_id, SmsMessage.status.in_(lower))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await _note(session, self._postgres, sms_id, status, source, now, error_code)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _record_sent(self, sms_id: int, sent: SentMessage, source: str) -> None:
        status = _status(sent.status) or SmsStatus.QUEUED
        now = self._now()
        async with self._store.transaction() as session:
            # The SID is recorded whatever the status: a callback may already be ahead.
            await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == sms_id, SmsMessage.twilio_sid.is_(None))
                .values(twilio_sid=sent.sid, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            lower = [s.value for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
            await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == sms_id, SmsMessage.status.in_(lower))
                .values(status=status.value, error_code=sent.error_code, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            await _note(session, self._postgres, sms_id, status, source, now, sent.error_code)

    # -- settling after a crash ------------------------------------------------------

    async def settle(self, task_id: int, fence: int) -> Settlement | None:
        """What became of the text of a task whose worker died; None: not an SMS task."""
        async with self._store.session() as session:
            row = await session.scalar(select(SmsMessage).where(SmsMessage.task_id == task_id))
            if row is None:
                return None
            status = SmsStatus(row.status)
            sms_id = row.id
            identity = await session.get(CallerIdentity, row.caller_identity_id)
            sealed = identity.sealed if identity is not None else None
            digest = row.body_sha256
            since = aware(row.submitting_at or row.requested_at)
        if status is SmsStatus.PENDING:
            # 'submitting' is committed before any request, under the claim this
            # settlement has now fenced off: no request left for this message.
            return Settlement.NOT_PLACED
        if status is SmsStatus.UNCONFIRMED:
            return Settlement.UNKNOWN
        if status in (SmsStatus.NOT_SENT, SmsStatus.REJECTED):
            # Decided before the worker died; a re-run returns that decision, sends nothing.
            return Settlement.NOT_PLACED
        if status is not SmsStatus.SUBMITTING:
            return Settlement.PLACED
        if sealed is None:
            await self._settle_row(sms_id, SmsStatus.UNCONFIRMED, "reconcile")
            return Settlement.UNKNOWN
        async with self._store.session() as session:
            known = frozenset(
                sid for sid in await session.scalars(
                    select(SmsMessage.twilio_sid).where(
                        SmsMessage.caller_identity_id == row.caller_identity_id,
                        SmsMessage.twilio_sid.is_not(None),
                    )
                ) if sid
            )
        found = await self._gateway.find(
            to=self._vault.open(sealed, Purpose.CALLER), body_sha256=digest,
            since=since - timedelta(seconds=self.settings.reconcile_skew_seconds),
            exclude=known,
        )
        if found is not None:
            await self._record_sent(sms_id, found, "reconcile")
            log.info("sms %s: found at Twilio after a lost worker", sms_id)
            return Settlement.PLACED
        if await self._settle_row(sms_id, SmsStatus.UNCONFIRMED, "reconcile"):
            log.warning("sms %s: outcome unknown after a lost worker; marked unconfirmed",
                        sms_id)
            return Settlement.UNKNOWN
        # A status callback settled it meanwhile.
        return Settlement.PLACED

    # -- delivery status callbacks ---------------------------------------------------

    async def apply_callback(
        self, *, message_sid: str, status_text: str, error_code: int | None,
        sms_id: int | None,
    ) -> SmsView | None:
        """Apply a verified status callback; None when the message is not ours.

        Idempotent and monotonic: a repeat adds nothing, and a status ranked below the
        current one (``sent`` after ``delivered``) goes to the history only.
        """
        status = _status(status_text)
        if status is None or not _TWILIO_SID.fullmatch(message_sid):
            raise SmsInvalid("not a Twilio message status")
        now = self._now()
        async with self._store.transaction() as session:
            row_id = await session.scalar(
                select(SmsMessage.id).where(SmsMessage.twilio_sid == message_sid)
            )
            if row_id is None and sms_id is not None:
                # Its worker died before recording the SID: the signed URL names the
                # message, so the callback itself tells us it was sent.
                result = await session.execute(
                    update(SmsMessage)
                    .where(SmsMessage.id == sms_id, SmsMessage.twilio_sid.is_(None))
                    .values(twilio_sid=message_sid, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    row_id = sms_id
            if row_id is None:
                return None
            lower = [s.value for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
            values: dict[str, Any] = {"status": status.value, "updated_at": now}
            if error_code is not None:
                values["error_code"] = error_code
            await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == row_id, SmsMessage.status.in_(lower))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await _note(session, self._postgres, row_id, status, "callback", now, error_code)
        return await self.get(row_id)

    async def close(self) -> None:
        await self._gateway.close()


def _task_outcome(status: SmsStatus) -> str:
    if status in (SmsStatus.REJECTED, SmsStatus.NOT_SENT):
        raise TaskFailed(f"sms_{status.value}", outcome=status.value)
    if status in (SmsStatus.UNCONFIRMED, SmsStatus.SUBMITTING):
        # It may have been sent; a person decides, never a second send.
        raise TaskFailed("sms_unconfirmed", outcome="unconfirmed")
    return "sent"


async def _note(
    session: AsyncSession, postgres: bool, message_id: int, status: SmsStatus, source: str,
    at: datetime, error_code: int | None = None,
) -> None:
    """One history row per status seen; a repeat (or a concurrent twin) is a no-op."""
    values = {"message_id": message_id, "status": status.value, "source": source,
              "at": at, "error_code": error_code}
    insert = pg_insert if postgres else sqlite_insert
    await session.execute(
        insert(SmsStatusEvent).values(**values)
        .on_conflict_do_nothing(index_elements=["message_id", "status"])
    )


class SmsSettler:
    """The scheduler's settler: SMS tasks settled here, every other task by ``calls``."""

    def __init__(self, sms: SmsService, calls: CallSettler | None = None) -> None:
        self._sms = sms
        self._calls = calls

    async def settle(self, task_id: int, fence: int) -> Settlement:
        verdict = await self._sms.settle(task_id, fence)
        if verdict is not None:
            return verdict
        if self._calls is None:
            return Settlement.UNKNOWN
        return await self._calls.settle(task_id, fence)
