"""The cases API under test: the app on loopback TCP with the real cases services on a
migrated store, real accounts, and one case per member of staff who takes calls.

Each case is opened from a call its agent answered, with a caller number only the test
knows (:data:`CALLERS`), a named harasser, and one consent (scope ``family``) recorded
by a supervisor, so reveals for ``police`` start out without consent.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from callcenter.bus import InProcessBus
from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import ConsentService
from callcenter.cases.identities import IdentityStore
from callcenter.cases.search import CaseSearch
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Store
from callcenter.web.app import make_app
from callcenter.web.deps import StoreCallLookup, WebDeps
from tests.support.web import (
    STAFF,
    MemoryAgentDirectory,
    WebWorld,
    add_staff,
    cheap_accounts,
    web_options,
)

#: Who took the call of each seeded case -> her caller's number (as the carrier sent it).
CALLERS: dict[str, str] = {
    "asha": "+91 98765 43210",
    "bela": "+91 91234 56789",
    "chitra": "+91 99887 76655",
}
#: A harasser's number an agent types; the same man in every seeded case.
HARASSER = "+91 99999 12345"
#: A second harasser, typed through the API in tests.
NEW_HARASSER = "+91 97531 86420"
#: Every number a test uses: none of them may appear in a response but a reveal.
TEST_NUMBERS: tuple[str, ...] = (*CALLERS.values(), HARASSER, NEW_HARASSER)

OVERRIDE_REASON = "She says he is outside her door now; 112 needs her number to find her."


def national_digits(number: str) -> str:
    """The ten digits a person would dial in India (what a leak would look like)."""
    return re.sub(r"\D", "", number)[-10:]


def leaked_numbers(text: str, numbers: Iterable[str] = TEST_NUMBERS) -> list[str]:
    """The test numbers found in ``text`` once everything but its digits is stripped."""
    digits = re.sub(r"\D", "", text)
    return [n for n in numbers if national_digits(n) in digits]


@dataclass(frozen=True)
class SeededCase:
    reference: str
    caller_token: str
    identity_id: int
    #: The supervisor-recorded ``family`` consent of her case.
    consent_id: int
    number: str


@dataclass
class CasesWorld:
    web: WebWorld
    store: Store
    vault: Vault
    cases: CaseService
    consent: ConsentService
    search: CaseSearch
    audit: AuditLog
    #: by the username of the agent who took the call
    seeded: dict[str, SeededCase]

    @property
    def client(self) -> TestClient[aiohttp.web.Request, aiohttp.web.Application]:
        return self.web.client


async def _seed(store: Store, vault: Vault, cases: CaseService,
                consent: ConsentService) -> dict[str, SeededCase]:
    seeded: dict[str, SeededCase] = {}
    identities = IdentityStore(store)
    for n, (username, number) in enumerate(CALLERS.items(), start=1):
        identity = await identities.remember(vault.admit_caller_id(number))
        token = vault.token_for(number).code
        async with store.transaction() as session:
            record = CallRecord(
                node="up-east", linkedid=f"1795327929.{n}", caller_identity_id=identity,
                caller_token=token, category="stalking", risk="high", language="hi",
                started_at=datetime(2026, 3, 2, 9, 50 + n, tzinfo=UTC),
                agent_interface=STAFF[username][1], outcome="answered",
            )
            session.add(record)
        view = await cases.create_from_wrapup(
            record,
            WrapUpForm(description="He follows her from the bus stop", district="Lucknow",
                       harasser_numbers=[HARASSER], actions=["counselling"]),
            username,
        )
        given = await consent.record_consent(identity, "family", recorded_by="deepa",
                                             case_id=view.summary.id)
        assert view.summary.caller_token == token
        seeded[username] = SeededCase(view.summary.reference, token, identity, given.id,
                                      number)
    return seeded


@asynccontextmanager
async def serve_cases(store: Store) -> AsyncIterator[CasesWorld]:
    """The world on ``store`` (migrated). Needs ``callcenter.web.cases_http`` in
    ``callcenter.web.app.EXTRA_ROUTES`` under the ``cases`` field."""
    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    audit = AuditLog(store)
    cases = CaseService(store, vault, audit)
    consent = ConsentService(store, vault, audit)
    search = CaseSearch(store, audit)
    accounts = cheap_accounts(store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    seeded = await _seed(store, vault, cases, consent)
    async with InProcessBus() as bus:
        deps = WebDeps(
            accounts=accounts, agents=directory, calls=StoreCallLookup(store), bus=bus,
            cases=cases, consent=consent, search=search, audit=audit, store=store,
            options=web_options(login_limit_per_address=1000, login_limit_per_user=1000),
            registry=CollectorRegistry(),
        )
        client = TestClient(TestServer(make_app(deps), host="127.0.0.1"),
                            cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        try:
            yield CasesWorld(
                web=WebWorld(client=client, deps=deps, directory=directory), store=store,
                vault=vault, cases=cases, consent=consent, search=search, audit=audit,
                seeded=seeded,
            )
        finally:
            await client.close()
