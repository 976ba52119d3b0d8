"""SMS through Twilio (issue 7, item 6): neutral templates, consent, exactly-once sending,
signed delivery callbacks.

Twilio is a real loopback HTTP server (tests/support/fake_twilio.py) that the twilio
library talks to; the store is a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.bus import InProcessBus
from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import ConsentService
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import AuditEntry, Consent
from callcenter.cases.service import CaseService
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.config import PROJECT_ROOT
from callcenter.followups import Backoff, LeaseLost, ScheduledTask, Scheduler, TaskState
from callcenter.followups.sms import (
    SMS_TASK_KIND,
    SmsConsentMissing,
    SmsInvalid,
    SmsService,
    SmsSettings,
    SmsSettler,
    SmsTemplate,
    TwilioGateway,
    render,
)
from callcenter.followups.sms_models import SmsMessage, SmsStatus, SmsStatusEvent
from callcenter.store import Store, load_models
from callcenter.web.app import make_app
from callcenter.web.deps import StoreCallLookup, WebDeps
from tests.support.cases_web import CALLERS, leaked_numbers
from tests.support.cases_web import _seed as seed_cases
from tests.support.fake_twilio import FakeTwilio
from tests.support.web import (
    MemoryAgentDirectory,
    StatsStub,
    add_staff,
    cheap_accounts,
    sign_in,
    web_options,
)

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
HER_NUMBER = CALLERS["asha"]
HER_E164 = "+919876543210"
SERVICE_SID = "MG" + "a" * 32
ENTITY_ID = "1101234567890123456"
TEMPLATE_ID = "1107160000000012345"
CALLBACK_URL = "https://helpline.example/api/sms/status"


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def sms_settings(fake: FakeTwilio, **changes: Any) -> SmsSettings:
    data: dict[str, Any] = {
        "enabled": True,
        "account_sid": fake.account_sid,
        "messaging_service_sid": SERVICE_SID,
        "dlt_entity_id": ENTITY_ID,
        "status_callback_url": CALLBACK_URL,
        "api_base_url": fake.base_url,
        "request_timeout": 5,
        "templates": {
            "appointment": {
                "text": "Your appointment reference {code} is confirmed.",
                "dlt_template_id": TEMPLATE_ID,
            },
        },
    }
    data.update(changes)
    return SmsSettings.model_validate(data)


class World:
    def __init__(self, store: Store, fake: FakeTwilio, clock: FakeClock,
                 settings: SmsSettings) -> None:
        self.store = store
        self.fake = fake
        self.clock = clock
        self.vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        self.audit = AuditLog(store, clock=clock)
        self.settings = settings
        self.services: list[SmsService] = []
        self.identity_id = 0

    def service(self, settings: SmsSettings | None = None) -> SmsService:
        chosen = settings or self.settings
        service = SmsService(
            self.store, self.vault, chosen,
            TwilioGateway(chosen, SecretStr(self.fake.auth_token)),
            auth_token=SecretStr(self.fake.auth_token), audit=self.audit, clock=self.clock,
        )
        self.services.append(service)
        return service

    def scheduler(self, service: SmsService, instance: str) -> Scheduler:
        scheduler = Scheduler(
            self.store, instance, {SMS_TASK_KIND: service.run_task}, self.clock,
            settler=SmsSettler(service), lease=LEASE,
            backoff=Backoff(base=timedelta(minutes=1)),
        )
        service.bind_scheduler(scheduler)
        return scheduler

    async def caller(self, number: str = HER_NUMBER) -> int:
        entry = self.vault.admit_caller_id(number)
        return await IdentityStore(self.store).remember(entry, at=self.clock())

    async def consent(self, identity_id: int, scope: str = "sms") -> int:
        async with self.store.transaction() as session:
            row = Consent(identity_id=identity_id, scope=scope, recorded_by="asha",
                          given_at=self.clock() - timedelta(minutes=5))
            session.add(row)
            await session.flush()
            return row.id

    async def withdraw(self, consent_id: int) -> None:
        async with self.store.transaction() as session:
            row = await session.get(Consent, consent_id)
            assert row is not None
            row.withdrawn_at, row.withdrawn_by = self.clock(), "asha"

    async def message(self, sms_id: int) -> SmsMessage:
        async with self.store.session() as session:
            row = await session.get(SmsMessage, sms_id)
        assert row is not None
        return row

    async def task(self, task_id: int) -> ScheduledTask:
        async with self.store.session() as session:
            row = await session.get(ScheduledTask, task_id)
        assert row is not None
        return row

    async def history(self, sms_id: int) -> list[tuple[str, str]]:
        async with self.store.session() as session:
            rows = await session.scalars(
                select(SmsStatusEvent).where(SmsStatusEvent.message_id == sms_id)
                .order_by(SmsStatusEvent.id)
            )
            return [(r.status, r.source) for r in rows]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    server = FakeTwilio()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def world(migrated_store: Store, fake: FakeTwilio) -> AsyncIterator[World]:
    clock = FakeClock()
    fake.clock = clock
    built = World(migrated_store, fake, clock, sms_settings(fake))
    built.identity_id = await built.caller()
    try:
        yield built
    finally:
        for service in built.services:
            await service.close()


# -- templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Call 1090 if you need us again.",
    "Your harassment complaint {code} is registered.",
    "The POLICE will call you about {code}.",
    "Reference {code}: your help line appointment.",
])
def test_a_template_naming_the_helplines_subject_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="neutral"):
        SmsSettings.model_validate(
            {"templates": {"t": {"text": text, "dlt_template_id": TEMPLATE_ID}}}
        )


def test_a_neutral_template_renders_and_its_values_are_checked() -> None:
    template = SmsTemplate(text="Your appointment reference {code} is confirmed.",
                           dlt_template_id=TEMPLATE_ID)
    assert render(template, {"code": "4821-AB"}) == (
        "Your appointment reference 4821-AB is confirmed."
    )
    # A value carrying what a template may not say, or a number, never reaches her phone.
    with pytest.raises(SmsInvalid, match="police"):
        render(template, {"code": "police"})
    with pytest.raises(SmsInvalid, match="phone number"):
        render(template, {"code": "98765 43210"})
    with pytest.raises(SmsInvalid, match="missing"):
        render(template, {})
    with pytest.raises(ValidationError, match="DLT template id"):
        SmsTemplate(text="Hello.", dlt_template_id="12")


def test_enabled_settings_need_the_dlt_entity_and_a_sender() -> None:
    with pytest.raises(ValidationError, match="dlt_entity_id.*messaging_service_sid or sender"):
        SmsSettings.model_validate({
            "enabled": True, "account_sid": "AC" + "1" * 32,
            "status_callback_url": CALLBACK_URL,
            "templates": {"t": {"text": "Hello.", "dlt_template_id": TEMPLATE_ID}},
        })


# -- consent -----------------------------------------------------------------------------


async def test_without_sms_consent_the_text_is_refused_and_audited(world: World) -> None:
    service = world.service()
    world.scheduler(service, "app-1")
    # A consent to share her number with the police is not a consent to be texted.
    await world.consent(world.identity_id, scope="police")

    with pytest.raises(SmsConsentMissing) as refused:
        await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                              requested_by="asha")

    async with world.store.session() as session:
        messages = await session.scalar(select(func.count()).select_from(SmsMessage))
        tasks = await session.scalar(select(func.count()).select_from(ScheduledTask))
        audit = (await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "sms.refused")
        )).all()
    assert (messages, tasks) == (0, 0)
    assert len(audit) == 1 and audit[0].seq == refused.value.audit_seq
    assert audit[0].subject == f"identity:{world.identity_id}"
    assert world.fake.requests == []


async def test_consent_withdrawn_before_the_send_stops_it(world: World) -> None:
    service = world.service()
    scheduler = world.scheduler(service, "app-1")
    consent = await world.consent(world.identity_id)
    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")
    await world.withdraw(consent)

    await scheduler.run_due()

    assert world.fake.creates == []
    assert (await world.message(view.id)).status == SmsStatus.NOT_SENT
    assert view.task_id is not None
    task = await world.task(view.task_id)
    assert (task.state, task.outcome) == (TaskState.FAILED, "consent_missing")


# -- sending -----------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["messaging_service", "sender_id"])
async def test_the_request_twilio_receives(world: World, sender: str) -> None:
    settings = world.settings
    if sender == "sender_id":
        settings = sms_settings(world.fake, messaging_service_sid=None, sender_id="APTCNF")
    service = world.service(settings)
    scheduler = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)

    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")
    assert world.fake.requests == []  # stored and scheduled, not sent yet
    await scheduler.run_due()

    (create,) = world.fake.creates
    form = create.form
    assert create.path == f"/2010-04-01/Accounts/{world.fake.account_sid}/Messages.json"
    assert form["To"] == HER_E164
    assert form["Body"] == "Your appointment reference 4821-AB is confirmed."
    assert form["DltEntityId"] == ENTITY_ID
    assert form["DltTemplateId"] == TEMPLATE_ID
    callback = urlsplit(form["StatusCallback"])
    assert callback._replace(query="").geturl() == CALLBACK_URL
    assert parse_qs(callback.query) == {"sms": [str(view.id)]}
    if sender == "messaging_service":
        assert form["MessagingServiceSid"] == SERVICE_SID and "From" not in form
    else:
        assert form["From"] == "APTCNF" and "MessagingServiceSid" not in form

    row = await world.message(view.id)
    accepted = world.fake.messages[0]
    assert row.twilio_sid == accepted["sid"]
    assert row.status == accepted["status"]
    assert view.task_id is not None
    task = await world.task(view.task_id)
    assert (task.state, task.outcome) == (TaskState.DONE, "sent")
    # Nothing in the row is her number: the recipient is the identity row.
    values = " ".join(str(v) for v in row.__dict__.values())
    assert "9876543210" not in values


async def test_a_refusal_by_twilio_is_final_and_not_retried(world: World) -> None:
    service = world.service()
    scheduler = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    world.fake.refuse_next = (400, 21211)
    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")

    await scheduler.run_due()
    world.clock.advance(timedelta(hours=2))
    await scheduler.run_due()

    assert len(world.fake.creates) == 1
    row = await world.message(view.id)
    assert (row.status, row.error_code, row.twilio_sid) == (SmsStatus.REJECTED, 21211, None)
    assert view.task_id is not None
    assert (await world.task(view.task_id)).outcome == "rejected"


async def test_her_number_reaches_no_log_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    service = world.service()
    scheduler = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    # The wire loggers of the library too, even when someone turns DEBUG on for them.
    for name in ("twilio", "twilio.http_client", "twilio.async_http_client"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                     requested_by="asha")
        await scheduler.run_due()
        # A settlement's list request carries To= in its query string.
        gateway = TwilioGateway(world.settings, SecretStr(world.fake.auth_token))
        found = await gateway.find(
            to=world.vault.normalise(HER_NUMBER),
            body_sha256=(await world.message(view.id)).body_sha256,
            since=T0 - timedelta(hours=1), exclude=frozenset(),
        )
        await gateway.close()
        assert found is not None and found.sid == world.fake.messages[0]["sid"]
        world.fake.refuse_next = (400, 21211)
        await service.request(world.identity_id, "appointment", {"code": "77-X"},
                              requested_by="asha")
        await scheduler.run_due()
        # What the library's synchronous client would log, and a control line.
        logging.getLogger("twilio.http_client").info("GET Request: %s?To=%s", "u", HER_E164)
        logging.getLogger("callcenter.followups.sms").info("control line")
    assert any(r.method == "GET" and r.query.get("To") == HER_E164 for r in world.fake.requests)
    assert "control line" in caplog.text, "capture must work for this test to mean anything"
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "9876543210" not in text and "98765 43210" not in text


# -- exactly once across crashes ---------------------------------------------------------


async def test_a_crash_after_twilio_accepted_is_settled_without_a_second_send(
    world: World,
) -> None:
    first = world.service()
    doomed = world.scheduler(first, "app-1")
    await world.consent(world.identity_id)
    view = await first.request(world.identity_id, "appointment", {"code": "4821-AB"},
                               requested_by="asha")
    # Twilio takes the message, but its answer never reaches the instance: it dies first.
    world.fake.answer_gate.clear()
    running = asyncio.create_task(doomed.run_due())
    await asyncio.wait_for(world.fake.accepted.wait(), 10)
    await doomed.kill()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    world.fake.answer_gate.set()
    row = await world.message(view.id)
    assert (row.status, row.twilio_sid) == (SmsStatus.SUBMITTING, None)

    world.clock.advance(LEASE + timedelta(seconds=1))
    second = world.service()
    survivor = world.scheduler(second, "app-2")
    await survivor.run_due()
    world.clock.advance(timedelta(hours=3))
    await survivor.run_due()

    assert len(world.fake.creates) == 1, "Twilio got the message twice"
    row = await world.message(view.id)
    assert row.twilio_sid == world.fake.messages[0]["sid"]
    assert row.status == SmsStatus.ACCEPTED
    assert ("accepted", "reconcile") in await world.history(view.id)
    assert view.task_id is not None
    task = await world.task(view.task_id)
    assert (task.state, task.outcome) == (TaskState.DONE, "placed")


async def test_a_crash_before_the_request_sends_it_once_and_fences_the_old_worker(
    world: World,
) -> None:
    service = world.service()
    doomed = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")
    # The old worker committed 'dialling' and then stalled before marking the message.
    (stale,) = await doomed.claim(1)
    await stale.before_call()

    world.clock.advance(LEASE + timedelta(seconds=1))
    survivor = world.scheduler(world.service(), "app-2")
    await survivor.run_due()  # settles: nothing left for this message -> retried later
    assert world.fake.creates == []
    assert view.task_id is not None
    assert (await world.task(view.task_id)).state == TaskState.PENDING

    # The stalled worker wakes up: its claim is gone, so it sends nothing.
    with pytest.raises(LeaseLost):
        await service.run_task(stale)
    world.clock.advance(timedelta(hours=1))
    await survivor.run_due()

    assert len(world.fake.creates) == 1
    task = await world.task(view.task_id)
    assert (task.state, task.outcome) == (TaskState.DONE, "sent")


async def test_an_unknown_outcome_not_found_at_twilio_is_unconfirmed_until_a_callback(
    world: World,
) -> None:
    service = world.service()
    scheduler = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")
    world.fake.refuse_next = (500, 20500)  # a 5xx: it may or may not exist

    await scheduler.run_due()
    world.clock.advance(timedelta(seconds=1))
    await scheduler.run_due()  # the task gave its lease up: settled now, not re-sent
    world.clock.advance(timedelta(hours=3))
    await scheduler.run_due()

    assert len(world.fake.creates) == 1
    assert (await world.message(view.id)).status == SmsStatus.UNCONFIRMED
    assert view.task_id is not None
    task = await world.task(view.task_id)
    assert (task.state, task.outcome) == (TaskState.FAILED, "unconfirmed")

    # Twilio's signed callback names our message: it was sent after all.
    settled = await service.apply_callback(
        message_sid="SM" + "b" * 32, status_text="delivered", error_code=None, sms_id=view.id
    )
    assert settled is not None
    assert (settled.status, settled.twilio_sid) == ("delivered", "SM" + "b" * 32)


# -- delivery status callbacks over HTTP --------------------------------------------------


class CallbackWorld:
    def __init__(self, world: World, service: SmsService, client: TestClient[Any, Any],
                 sms_id: int) -> None:
        self.world = world
        self.service = service
        self.client = client
        self.sms_id = sms_id

    @property
    def url(self) -> str:
        return str(self.client.make_url(f"/api/sms/status?sms={self.sms_id}"))

    @property
    def message(self) -> dict[str, Any]:
        return self.world.fake.messages[0]

    async def post(self, status: str, *, signed_form: dict[str, str] | None = None,
                   signed_url: str | None = None, **kwargs: Any) -> int:
        form = self.world.fake.callback_form(self.message, status)
        signature = self.world.fake.signature(signed_url or self.url, signed_form or form)
        code, _text = await self.world.fake.post_callback(
            self.url, form, signature=signature, **kwargs
        )
        return code


async def _callback_world(
    world: World, settings: SmsSettings
) -> AsyncIterator[CallbackWorld]:
    service = world.service(settings)
    scheduler = world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    view = await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                                 requested_by="asha")
    await scheduler.run_due()
    deps = WebDeps(
        accounts=cheap_accounts(world.store), agents=MemoryAgentDirectory(),
        calls=StoreCallLookup(world.store), bus=InProcessBus(), stats=StatsStub(),
        pbx_links=dict, store=world.store, options=web_options(),
        registry=CollectorRegistry(), sms=service,
    )
    client = TestClient(TestServer(make_app(deps), host="127.0.0.1"))
    await client.start_server()
    try:
        yield CallbackWorld(world, service, client, view.id)
    finally:
        await client.close()


@pytest.fixture
async def callbacks(world: World) -> AsyncIterator[CallbackWorld]:
    async for built in _callback_world(world, world.settings):
        yield built


async def test_a_signed_callback_updates_the_status(callbacks: CallbackWorld) -> None:
    assert await callbacks.post("sent") == 204
    assert (await callbacks.world.message(callbacks.sms_id)).status == SmsStatus.SENT


async def test_a_callback_with_a_wrong_or_tampered_signature_is_refused(
    callbacks: CallbackWorld,
) -> None:
    world = callbacks.world
    form = world.fake.callback_form(callbacks.message, "delivered")
    forged = "A" * 27 + "="
    code, text = await world.fake.post_callback(callbacks.url, form, signature=forged)
    assert code == 403 and "signature_invalid" in text
    code, _ = await world.fake.post_callback(callbacks.url, form, signature="")
    assert code == 403
    # Signed for "delivered", posted as "failed": the signature covers the form.
    assert await callbacks.post("failed", signed_form=form) == 403
    # Signed for another message's URL: the query is covered too.
    assert await callbacks.post(
        "delivered", signed_url=callbacks.url.replace(f"sms={callbacks.sms_id}", "sms=999")
    ) == 403
    row = await world.message(callbacks.sms_id)
    assert row.status == SmsStatus.ACCEPTED
    assert ("delivered", "callback") not in await world.history(callbacks.sms_id)


async def test_out_of_order_and_repeated_callbacks_never_move_a_status_back(
    callbacks: CallbackWorld,
) -> None:
    assert await callbacks.post("delivered") == 204
    assert await callbacks.post("sent") == 204  # late, overtaken
    assert await callbacks.post("queued") == 204
    assert await callbacks.post("delivered") == 204  # Twilio retried
    row = await callbacks.world.message(callbacks.sms_id)
    assert row.status == SmsStatus.DELIVERED
    history = await callbacks.world.history(callbacks.sms_id)
    assert history.count(("delivered", "callback")) == 1
    assert ("sent", "callback") in history


async def test_behind_a_proxy_the_public_url_is_what_is_signed(world: World) -> None:
    settings = sms_settings(world.fake, public_base_url="https://helpline.example")
    async for built in _callback_world(world, settings):
        public = f"https://helpline.example/api/sms/status?sms={built.sms_id}"
        # Signed over the URL Twilio used (the proxy's), accepted; over ours, refused.
        assert await built.post("sent", signed_url=public) == 204
        assert await built.post("delivered") == 403
        row = await world.message(built.sms_id)
        assert row.status == SmsStatus.SENT


async def test_only_the_callback_route_goes_without_a_session(
    callbacks: CallbackWorld,
) -> None:
    async with aiohttp.ClientSession() as session, session.get(
        str(callbacks.client.make_url(f"/api/sms/{callbacks.sms_id}"))
    ) as response:
        assert response.status == 401
    document = await (await callbacks.client.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert paths["/api/sms/status"]["post"]["security"] == []
    assert paths["/api/cases/{reference}/sms"]["post"]["security"] == [
        {"session": [], "csrf": []}
    ]




# -- texting from a case over HTTP -------------------------------------------------------


async def test_texting_from_a_case_needs_her_consent_and_the_case(
    migrated_store: Store, fake: FakeTwilio
) -> None:
    store = migrated_store
    clock = FakeClock(datetime.now(UTC))
    fake.clock = clock
    world = World(store, fake, clock, sms_settings(fake))
    cases = CaseService(store, world.vault, world.audit)
    consent = ConsentService(store, world.vault, world.audit)
    accounts = cheap_accounts(store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    seeded = await seed_cases(store, world.vault, cases, consent)
    service = world.service()
    scheduler = world.scheduler(service, "app-1")
    deps = WebDeps(
        accounts=accounts, agents=directory, calls=StoreCallLookup(store), bus=InProcessBus(),
        cases=cases, consent=consent, audit=world.audit, store=store, sms=service,
        options=web_options(login_limit_per_address=1000, login_limit_per_user=1000),
        registry=CollectorRegistry(),
    )
    client = TestClient(TestServer(make_app(deps), host="127.0.0.1"),
                        cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        hers = seeded["asha"]
        path = f"/api/cases/{hers.reference}/sms"
        body = {"template": "appointment", "variables": {"code": "4821-AB"}}
        asha = {"X-CSRF-Token": await sign_in(client, "asha")}

        # Her case has a consent for her family, none to be texted.
        refused = await client.post(path, json=body, headers=asha)
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "consent_required"

        await world.consent(hers.identity_id)
        accepted = await client.post(path, json=body, headers=asha)
        text = await accepted.text()
        assert accepted.status == 202, text
        assert leaked_numbers(text) == []
        sms_id = (await accepted.json())["id"]

        # Another agent's case is not hers to text from.
        bela = {"X-CSRF-Token": await sign_in(client, "bela")}
        other = await client.post(path, json=body, headers=bela)
        assert other.status == 403
        assert (await client.get(f"/api/sms/{sms_id}", headers=bela)).status == 403

        await scheduler.run_due()
        asha = {"X-CSRF-Token": await sign_in(client, "asha")}
        shown = await client.get(f"/api/sms/{sms_id}", headers=asha)
        view = await shown.json()
        assert view["status"] == "accepted" and view["twilio_sid"] == fake.messages[0]["sid"]
        assert leaked_numbers(await shown.text()) == []
        assert [c.form["To"] for c in fake.creates] == [HER_E164]
    finally:
        await client.close()
        await service.close()


def test_the_shipped_sms_config_loads_and_every_template_is_neutral() -> None:
    settings = SmsSettings.from_toml(PROJECT_ROOT / "config" / "sms.toml")
    assert settings.templates
    for template in settings.templates.values():
        variables = {name: "4821-AB" for name in template.fields}
        assert render(template, variables, settings.forbidden_words)


class BrokenAudit(AuditLog):
    async def append(self, session: AsyncSession, **kwargs: Any) -> Any:
        raise RuntimeError("the audit log is away")


async def test_a_request_whose_audit_row_fails_leaves_no_message_and_no_task(
    world: World,
) -> None:
    service = world.service()
    world.scheduler(service, "app-1")
    await world.consent(world.identity_id)
    service._audit = BrokenAudit(world.store, clock=world.clock)

    with pytest.raises(RuntimeError):
        await service.request(world.identity_id, "appointment", {"code": "4821-AB"},
                              requested_by="asha")

    async with world.store.session() as session:
        messages = await session.scalar(select(func.count()).select_from(SmsMessage))
        tasks = await session.scalar(select(func.count()).select_from(ScheduledTask))
    assert (messages, tasks) == (0, 0)


async def test_migration_0009_matches_the_models_and_goes_down_and_up(
    migrated_store: Store,
) -> None:
    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), load_models())

    async with migrated_store.engine.connect() as connection:
        assert await connection.run_sync(diff) == []
    await migrated_store.downgrade("0008")
    async with migrated_store.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
    assert "sms_message" not in tables and "sms_status_event" not in tables
    await migrated_store.migrate()
    async with migrated_store.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_the_consent_table_takes_the_sms_scope_and_nothing_else(world: World) -> None:
    await world.consent(world.identity_id, scope="sms")
    with pytest.raises(IntegrityError):
        await world.consent(world.identity_id, scope="texting")
