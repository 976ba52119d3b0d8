"""The referrals and harasser-actions API: RBAC on every route for every role (her own
case and another's), the overdue list over HTTP and on the wallboard's live feed, clear
refusals, and no number in any answer.

Real cases, referral and harasser services and a real scheduler on a migrated store (SQLite
and PostgreSQL), the app on loopback TCP, time from an injected clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from callcenter.bus import InProcessBus
from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import ConsentService
from callcenter.cases.search import CaseSearch
from callcenter.cases.service import CaseService
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.config import PROJECT_ROOT
from callcenter.followups import Scheduler
from callcenter.followups.harasser import HarasserActionService
from callcenter.followups.referrals import ReferralService, load_directory
from callcenter.store import Store
from callcenter.web import app as web_app
from callcenter.web.app import make_app
from callcenter.web.deps import StoreCallLookup, WebDeps
from callcenter.web.keys import FANOUT
from callcenter.web.openapi import documented_routes
from callcenter.web.referrals_http import ROUTES, ReferralDesk
from tests.support.browser import CHROMIUM_ARGS, require_chromium
from tests.support.cases_web import CALLERS, SeededCase, _seed, leaked_numbers
from tests.support.web import (
    PASSWORD,
    MemoryAgentDirectory,
    add_staff,
    cheap_accounts,
    receive_until,
    sign_in,
    web_options,
)

T0 = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
ROUTE = ("callcenter.web.referrals_http", "referrals")
CASES_ROUTE = ("callcenter.web.cases_http", "cases")


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    client: TestClient[aiohttp.web.Request, aiohttp.web.Application]
    clock: FakeClock
    referrals: ReferralService
    harassers: HarasserActionService
    scheduler: Scheduler
    seeded: dict[str, SeededCase]
    #: by the seeded case's agent: her case's referral (to the One Stop Centre)...
    referral_of: dict[str, int]
    #: ...and the action against its harasser, owned by her
    action_of: dict[str, int]
    harasser_token: str

    @property
    def origin(self) -> str:
        return f"http://{self.client.server.host}:{self.client.server.port}"


@pytest.fixture
async def world(migrated_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    for route in (CASES_ROUTE, ROUTE):
        if route not in web_app.EXTRA_ROUTES:
            monkeypatch.setattr(web_app, "EXTRA_ROUTES", (*web_app.EXTRA_ROUTES, route))
    store = migrated_store
    clock = FakeClock()
    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    audit = AuditLog(store)
    cases = CaseService(store, vault, audit, clock=clock)
    consent = ConsentService(store, vault, audit)
    accounts = cheap_accounts(store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    seeded = await _seed(store, vault, cases, consent)
    async with InProcessBus() as bus:
        referrals = ReferralService(store, load_directory(PROJECT_ROOT / "config" /
                                                          "referrals.toml"),
                                    cases, bus=bus, clock=clock)
        scheduler = Scheduler(store, "app-1", referrals.handlers(), clock)
        referrals.bind_tasks(scheduler)
        harassers = HarasserActionService(store, referrals, clock=clock)
        referral_of: dict[str, int] = {}
        action_of: dict[str, int] = {}
        token = ""
        for agent, case in seeded.items():
            referral_of[agent] = (await referrals.refer(
                case.reference, "osc-lucknow", "Needs a safe place to stay", "deepa")).id
            token = (await cases.get_by_reference(case.reference)).harassers[0].token
            action_of[agent] = (await harassers.propose(case.reference, token, agent,
                                                        "deepa")).id
        deps = WebDeps(
            accounts=accounts, agents=directory, calls=StoreCallLookup(store), bus=bus,
            cases=cases, consent=consent, search=CaseSearch(store, audit), audit=audit,
            referrals=ReferralDesk(referrals, harassers), store=store,
            options=web_options(login_limit_per_address=1000, login_limit_per_user=1000),
            registry=CollectorRegistry(),
        )
        client = TestClient(TestServer(make_app(deps), host="127.0.0.1"),
                            cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        try:
            yield World(client, clock, referrals, harassers, scheduler, seeded, referral_of,
                        action_of, token)
        finally:
            await client.close()


async def signed_in(world: World, username: str) -> dict[str, str]:
    return {"X-CSRF-Token": await sign_in(world.client, username)}


# -- the RBAC matrix ------------------------------------------------------------------------

SUBJECTS: dict[str, tuple[str, str]] = {
    "agent:own": ("asha", "asha"),
    "agent:other": ("asha", "bela"),
    "counsellor:own": ("chitra", "chitra"),
    "counsellor:other": ("chitra", "asha"),
    "supervisor": ("deepa", "asha"),
    "admin": ("esha", "asha"),
}
ROLE_OF_SUBJECT = {subject: subject.split(":")[0] for subject in SUBJECTS}


def expect(agent_own: int, agent_other: int, counsellor_own: int, counsellor_other: int,
           supervisor: int, admin: int) -> dict[str, int]:
    return dict(zip(SUBJECTS, (agent_own, agent_other, counsellor_own, counsellor_other,
                               supervisor, admin), strict=True))


ONLY_SUPERVISOR = expect(403, 403, 403, 403, 200, 403)
SUPERVISING = expect(403, 403, 403, 403, 200, 200)
HER_CASE = expect(200, 403, 200, 403, 200, 200)

# (method, path template, body, status per subject), run in this order on a fresh world per
# role. Placeholders: {ref} the case, {referral} its referral, {action} its harasser
# action (owned by the agent who took its call), {token} its harasser's token.
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/api/referral-units", None, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/api/referrals/overdue", None, SUPERVISING),
    ("GET", "/api/cases/{ref}/referrals", None, HER_CASE),
    ("GET", "/api/referrals/{referral}", None, HER_CASE),
    ("GET", "/api/harasser-actions/mine", None, expect(200, 200, 200, 200, 200, 403)),
    ("GET", "/api/harasser-actions/overdue", None, SUPERVISING),
    ("POST", "/api/harasser-actions/{action}/outcome", {"outcome": "done"},
     expect(200, 403, 200, 403, 200, 403)),
    ("POST", "/api/referrals/{referral}/escalate", None, ONLY_SUPERVISOR),
    ("POST", "/api/referrals/{referral}/acknowledge", {"acknowledged_by": "SI Rekha, OSC"},
     expect(200, 403, 200, 403, 200, 403)),
    ("POST", "/api/referrals/{referral}/in-progress", None,
     expect(200, 403, 200, 403, 200, 403)),
    ("POST", "/api/referrals/{referral}/close", {"note": "She is safe"}, ONLY_SUPERVISOR),
    ("POST", "/api/cases/{ref}/referrals", {"unit": "wcd-lucknow-dpo", "reason": "Support"},
     expect(403, 403, 403, 403, 201, 403)),
    # His level-2 action was done above: this one is level 3, an FIR at a station of hers.
    ("POST", "/api/cases/{ref}/harasser-actions",
     {"harasser_token": "{token}", "owner": "asha", "unit": "ps-lucknow-hazratganj-whd"},
     expect(403, 403, 403, 403, 201, 403)),
]


def _fill(template: str, world: World, whose: str) -> str:
    return template.format(ref=world.seeded[whose].reference, referral=world.referral_of[whose],
                           action=world.action_of[whose], token=world.harasser_token)


def _body(body: dict[str, Any] | None, world: World, whose: str) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: _fill(v, world, whose) if isinstance(v, str) else v for k, v in body.items()}


@pytest.mark.parametrize("role", ["agent", "counsellor", "supervisor", "admin"])
async def test_rbac_matrix(world: World, role: str) -> None:
    for method, template, body, _expected in MATRIX:
        anonymous = await world.client.request(
            method, _fill(template, world, "asha"), json=_body(body, world, "asha"))
        assert anonymous.status == 401, (method, template)
    # Another's case first: refused everywhere, it leaves her own case as it was.
    for subject in sorted(s for s, r in ROLE_OF_SUBJECT.items() if r == role):
        username, whose = SUBJECTS[subject]
        csrf = await signed_in(world, username)
        for method, template, body, expected in MATRIX:
            response = await world.client.request(
                method, _fill(template, world, whose), json=_body(body, world, whose),
                headers=csrf,
            )
            text = await response.text()
            assert response.status == expected[subject], (subject, method, template, text)
            if response.status == 403:
                assert (await response.json())["error"]["code"] == "forbidden"
            assert leaked_numbers(text) == [], (subject, method, template)


async def test_matrix_covers_every_route(world: World) -> None:
    declared = {
        (method, path) for method, path, spec in documented_routes(world.client.app.router)
        if spec.roles is not None
    }
    ours = {(m, p.replace(r":\d{1,9}", "")) for m, p in ROUTES}
    assert ours <= declared
    covered = {
        (m, p.replace("{ref}", "{reference}").replace("{referral}", "{referral_id}")
         .replace("{action}", "{action_id}"))
        for m, p, _, _ in MATRIX
    }
    assert covered == ours


# -- the acceptance: overdue over HTTP and on the wallboard ----------------------------------


async def test_a_referral_past_its_deadline_is_escalated_and_shown_as_overdue(
    world: World,
) -> None:
    await signed_in(world, "deepa")
    assert (await (await world.client.get("/api/referrals/overdue")).json()) == {
        "referrals": []}
    world.clock.now = T0 + timedelta(hours=24, minutes=5)  # One Stop Centre: 24 hours
    assert await world.scheduler.run_due() == 3
    assert await world.scheduler.run_due() == 0, "escalated once: the next deadline is later"

    body = await (await world.client.get("/api/referrals/overdue")).json()
    overdue = {r["id"]: r for r in body["referrals"]}
    assert set(overdue) == set(world.referral_of.values())
    mine = overdue[world.referral_of["asha"]]
    assert mine["status"] == "escalated" and mine["escalation_level"] == 1
    assert mine["overdue"] is True
    assert mine["case_reference"] == world.seeded["asha"].reference
    assert datetime.fromisoformat(mine["deadline_at"]) == T0 + timedelta(hours=24)

    ws = await world.client.ws_connect("/ws/wallboard", origin=world.origin)
    try:
        hello, _ = await receive_until(ws, lambda m: m["type"] == "wallboard")
    finally:
        await ws.close()
    shown = {r["id"]: r for r in hello["overdue_referrals"]}
    assert set(shown) == set(world.referral_of.values())
    assert shown[mine["id"]]["escalation_level"] == 1
    assert shown[mine["id"]]["overdue_minutes"] == 5
    assert leaked_numbers(str(hello)) == []

    # The unit answers: off the list, on the next payload too.
    csrf = await signed_in(world, "asha")
    acknowledged = await world.client.post(
        f"/api/referrals/{mine['id']}/acknowledge",
        json={"acknowledged_by": "SI Rekha, OSC"}, headers=csrf)
    assert acknowledged.status == 200
    assert (await acknowledged.json())["overdue"] is False
    payload = world.client.app[FANOUT].wallboard()
    assert mine["id"] not in {r["id"] for r in payload["overdue_referrals"]}


# -- refusals and the case's view -------------------------------------------------------------


async def test_refusals_are_clear(world: World) -> None:
    csrf = await signed_in(world, "deepa")
    reference = world.seeded["asha"].reference
    bad_unit = await world.client.post(f"/api/cases/{reference}/referrals",
                                       json={"unit": "fire-brigade", "reason": "x"},
                                       headers=csrf)
    assert bad_unit.status == 422
    assert (await bad_unit.json())["error"]["details"][0]["field"] == "unit"
    again = await world.client.post(f"/api/cases/{reference}/referrals",
                                    json={"unit": "osc-lucknow", "reason": "again"},
                                    headers=csrf)
    assert again.status == 409
    missing = await world.client.get("/api/referrals/999999")
    assert (missing.status, (await missing.json())["error"]["code"]) == (
        404, "referral_not_found")
    no_case = await world.client.get("/api/cases/20269999999/referrals")
    assert no_case.status == 404
    fir = await world.client.post(
        f"/api/cases/{reference}/harasser-actions",
        json={"harasser_token": world.harasser_token, "owner": "bela", "level": 3},
        headers=csrf)
    assert fir.status == 201, "asha's action is still open, so this is the same one"
    assert (await fir.json())["id"] == world.action_of["asha"]
    unknown_field = await world.client.post(
        f"/api/referrals/{world.referral_of['asha']}/close", json={"reason": "x"},
        headers=csrf)
    assert unknown_field.status == 422


async def test_the_case_view_lists_its_referrals_and_actions_with_tokens_only(
    world: World,
) -> None:
    csrf = await signed_in(world, "asha")
    reference = world.seeded["asha"].reference
    outcome = await world.client.post(
        f"/api/harasser-actions/{world.action_of['asha']}/outcome",
        json={"outcome": "unreachable", "note": f"Rang {CALLERS['bela']} by mistake"},
        headers=csrf)
    assert outcome.status == 200
    body = await (await world.client.get(f"/api/cases/{reference}/referrals")).json()
    [referral] = body["referrals"]
    assert referral["unit"] == "osc-lucknow" and referral["status"] == "open"
    [action] = body["harasser_actions"]
    assert action["harasser_token"] == world.harasser_token
    # Named in all three seeded complaints: he starts at level 2.
    assert (action["level"], action["kind"], action["status"]) == (
        2, "family-counselling", "unreachable")
    assert leaked_numbers(str(body)) == []
    mine = await (await world.client.get("/api/harasser-actions/mine")).json()
    assert mine == {"harasser_actions": []}, "recorded: no longer on her list"


# -- the wallboard page ---------------------------------------------------------------------


@pytest.mark.parametrize("migrated_store", ["sqlite"], indirect=True)
async def test_the_wallboard_page_lists_overdue_referrals(world: World, tmp_path: Path) -> None:
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    world.clock.now = T0 + timedelta(hours=25)
    await world.scheduler.run_due()
    await world.referrals.close(world.referral_of["bela"], "deepa", "Done by phone")
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"{world.origin}/login")
            await page.fill("#username", "deepa")
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url("**/wallboard")
            await page.wait_for_selector("#overdue-referral-rows tr th")
            # Read in one evaluation: the wallboard re-renders the table every second, and
            # a row read while being replaced has no layout (its innerText loses the tabs).
            rows = await page.locator("#overdue-referral-rows tr").evaluate_all(
                "rows => rows.map(r => [...r.cells].map(c => c.textContent).join('\\t'))"
            )
            await page.screenshot(path=str(tmp_path / "wallboard.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []
    shown = sorted(rows)
    expected = sorted(world.seeded[agent].reference for agent in ("asha", "chitra"))
    assert [row.split("\t")[0] for row in shown] == expected
    assert all("One Stop Centre, Lucknow" in row and "1:00:00" in row and "level 1" in row
               for row in shown), shown
