"""The cases API: RBAC on every case route for every role (her own case and another's),
the consent-gated reveal and its audit rows, no number in any answer but the reveal,
a CSV of tokens only, blocks, audit verification and the OpenAPI document.

Real accounts and cases services on a migrated store (SQLite, and PostgreSQL when one is
available), the app on loopback TCP.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from callcenter.cases.models import AuditEntry
from callcenter.cases.service import CaseChanges
from callcenter.store import Store
from callcenter.web import app as web_app
from callcenter.web.cases_http import ROUTES
from callcenter.web.openapi import documented_routes
from tests.support.cases_web import (
    NEW_HARASSER,
    OVERRIDE_REASON,
    CasesWorld,
    leaked_numbers,
    national_digits,
    serve_cases,
)
from tests.support.web import sign_in

CASES_ROUTE = ("callcenter.web.cases_http", "cases")


@pytest.fixture
async def world(
    migrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CasesWorld]:
    if CASES_ROUTE not in web_app.EXTRA_ROUTES:
        monkeypatch.setattr(web_app, "EXTRA_ROUTES", (*web_app.EXTRA_ROUTES, CASES_ROUTE))
    async with serve_cases(migrated_store) as world:
        yield world


async def signed_in(world: CasesWorld, username: str) -> dict[str, str]:
    return {"X-CSRF-Token": await sign_in(world.client, username)}


async def reveal_rows(world: CasesWorld) -> list[dict[str, Any]]:
    return [
        {"actor": e.actor, "subject": e.subject, **e.details}
        for e in reversed(await world.audit.entries(action="identity.reveal"))
    ]


# -- the RBAC matrix ------------------------------------------------------------------------
#
# Who signs in, and whose case she works on: an agent and a counsellor on the case of a
# call they answered ("own", assigned to them) and on another agent's; a supervisor and an
# admin on asha's.
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


NOBODY_BUT_SUPERVISING = expect(403, 403, 403, 403, 200, 200)
ONLY_ADMIN = expect(403, 403, 403, 403, 403, 200)

# (method, path template, body, exact status per subject). Placeholders: {ref} the case,
# {consent} its consent id, {token} its caller's token. Rows run in this order on a fresh
# world per role, so each row sees the state the rows above it left.
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/api/cases", None, NOBODY_BUT_SUPERVISING),
    ("GET", "/api/cases?status=open&district=lucknow", None, NOBODY_BUT_SUPERVISING),
    ("GET", "/api/cases/export.csv", None, NOBODY_BUT_SUPERVISING),
    ("GET", "/api/cases/{ref}", None, expect(200, 403, 200, 403, 200, 200)),
    ("PATCH", "/api/cases/{ref}", {"description": "She now also gets calls at work"},
     expect(200, 403, 200, 403, 200, 200)),
    ("PATCH", "/api/cases/{ref}", {"status": "in-progress", "reason": "police informed"},
     expect(403, 403, 403, 403, 200, 200)),
    ("PATCH", "/api/cases/{ref}", {"assigned_to": "bela"},
     expect(403, 403, 403, 403, 200, 200)),
    ("POST", "/api/cases/{ref}/notes", {"text": "Called back; she is safe at her aunt's"},
     expect(201, 403, 201, 403, 201, 201)),
    ("POST", "/api/cases/{ref}/actions", {"kind": "fir-advised"},
     expect(201, 403, 201, 403, 201, 201)),
    ("POST", "/api/cases/{ref}/harassers", {"number": NEW_HARASSER},
     expect(201, 403, 201, 403, 201, 201)),
    ("POST", "/api/cases/{ref}/consent", {"scope": "police"},
     expect(201, 403, 201, 403, 201, 403)),
    ("DELETE", "/api/cases/{ref}/consent/{consent}", None,
     expect(200, 403, 200, 403, 200, 403)),
    ("POST", "/api/cases/{ref}/reveal", {"purpose": "police", "override_reason": OVERRIDE_REASON},
     expect(403, 403, 403, 403, 200, 403)),
    ("POST", "/api/callers/{token}/block", {"days": 7, "reason": "Abusive calls every night"},
     expect(403, 403, 403, 403, 201, 403)),
    ("GET", "/api/audit/verify", None, ONLY_ADMIN),
]


def _path(template: str, world: CasesWorld, whose: str) -> str:
    case = world.seeded[whose]
    return template.format(ref=case.reference, consent=case.consent_id,
                           token=case.caller_token)


@pytest.mark.parametrize("role", ["agent", "counsellor", "supervisor", "admin"])
async def test_rbac_matrix(world: CasesWorld, role: str) -> None:
    client = world.client
    for method, template, body, _expected in MATRIX:
        anonymous = await client.request(method, _path(template, world, "asha"), json=body)
        assert anonymous.status == 401, (method, template)
    # Another agent's case first: refused everywhere, it leaves her own case as it was.
    for subject in sorted(s for s, r in ROLE_OF_SUBJECT.items() if r == role):
        await _run_matrix(world, subject)


async def _run_matrix(world: CasesWorld, subject: str) -> None:
    username, whose = SUBJECTS[subject]
    client = world.client
    csrf = await signed_in(world, username)
    for method, template, body, expected in MATRIX:
        response = await client.request(
            method, _path(template, world, whose), json=body, headers=csrf
        )
        text = await response.text()
        assert response.status == expected[subject], (subject, method, template, text)
        if response.status == 403:
            code = (await response.json())["error"]["code"]
            assert code == "forbidden", (subject, method, template, code)
        if template.endswith("/reveal") and response.status == 200:
            # The positive control of the privacy check below: a leak would be seen.
            assert leaked_numbers(text) == [world.seeded[whose].number]
        else:
            assert leaked_numbers(text) == [], (subject, method, template)


async def test_matrix_covers_every_case_route(world: CasesWorld) -> None:
    declared = {
        (method, path) for method, path, spec in documented_routes(world.client.app.router)
        if spec.roles is not None
    }
    ours = {(method, path.replace(r":\d{1,18}", "")) for method, path in ROUTES}
    assert ours <= declared
    covered = {(m, p.split("?")[0].replace("{ref}", "{reference}")
                .replace("{consent}", "{consent_id}")) for m, p, _, _ in MATRIX}
    assert covered == ours


async def test_assignment_opens_the_case_to_the_new_agent(world: CasesWorld) -> None:
    reference = world.seeded["bela"].reference
    csrf = await signed_in(world, "asha")
    assert (await world.client.get(f"/api/cases/{reference}")).status == 403
    await world.cases.update(reference, CaseChanges(assigned_to="asha"), "deepa")
    response = await world.client.get(f"/api/cases/{reference}")
    assert response.status == 200
    body = await response.json()
    assert body["assigned_to"] == "asha"
    # Assigned, not on the call: she may work on it but not speak for the caller.
    consent = await world.client.post(f"/api/cases/{reference}/consent",
                                      json={"scope": "police"}, headers=csrf)
    assert consent.status == 403


# -- the case file ------------------------------------------------------------------------


async def test_case_file_shows_tokens_timeline_and_consents(world: CasesWorld) -> None:
    case = world.seeded["asha"]
    await signed_in(world, "asha")
    body = await (await world.client.get(f"/api/cases/{case.reference}")).json()
    assert body["reference"] == case.reference
    assert body["caller_token"] == case.caller_token
    assert body["calls"] == [{"node": "up-east", "linkedid": "1795327929.1"}]
    [harasser] = body["harassers"]
    assert harasser["token"].startswith("H-")
    # The same man is named in all three seeded complaints: flagged.
    assert harasser["complaint_count"] == 3 and harasser["repeat"] is True
    assert [(e["kind"], e["what"]) for e in body["timeline"]] == [
        ("status", "open"), ("action", "counselling")
    ]
    assert [(c["id"], c["scope"], c["active"]) for c in body["consents"]] == [
        (case.consent_id, "family", True)
    ]


async def test_status_changes_follow_the_transitions(world: CasesWorld) -> None:
    reference = world.seeded["asha"].reference
    csrf = await signed_in(world, "deepa")
    path = f"/api/cases/{reference}"
    moved = await world.client.patch(path, json={"status": "resolved", "reason": "FIR filed"},
                                     headers=csrf)
    assert moved.status == 200
    body = await moved.json()
    assert body["status"] == "resolved"
    assert body["timeline"][-1]["text"] == "FIR filed"
    # Resolved -> referred is not a transition; nothing else in the request is applied.
    refused = await world.client.patch(path, json={"status": "referred", "district": "Agra"},
                                       headers=csrf)
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "invalid_transition"
    after = await (await world.client.get(path)).json()
    assert after["status"] == "resolved" and after["district"] == "Lucknow"


async def test_actions_and_notes_land_in_the_timeline(world: CasesWorld) -> None:
    reference = world.seeded["asha"].reference
    csrf = await signed_in(world, "asha")
    action = await world.client.post(f"/api/cases/{reference}/actions",
                                     json={"kind": "referred", "note": "Mahila thana Hazratganj"},
                                     headers=csrf)
    assert action.status == 201
    assert (await action.json())["what"] == "referred"
    # Her note names the harasser's number in prose: it is scrubbed before it is stored.
    note = await world.client.post(f"/api/cases/{reference}/notes",
                                   json={"text": f"He called from {NEW_HARASSER} again"},
                                   headers=csrf)
    assert note.status == 201
    assert leaked_numbers(await note.text()) == []
    body = await (await world.client.get(f"/api/cases/{reference}")).json()
    assert body["status"] == "referred"  # a referral moves the case
    assert body["timeline"][-1]["kind"] == "note"


async def test_harasser_number_goes_to_the_vault_only(world: CasesWorld) -> None:
    reference = world.seeded["asha"].reference
    csrf = await signed_in(world, "asha")
    response = await world.client.post(f"/api/cases/{reference}/harassers",
                                       json={"number": NEW_HARASSER}, headers=csrf)
    assert response.status == 201
    body = await response.json()
    assert set(body) == {"token", "complaint_count", "repeat"}
    assert body["token"].startswith("H-")
    assert body["complaint_count"] == 1 and body["repeat"] is False
    # A mistyped number is refused without being repeated back.
    typo = await world.client.post(f"/api/cases/{reference}/harassers",
                                   json={"number": "98765 4321"}, headers=csrf)
    assert typo.status == 422
    assert (await typo.json())["error"]["code"] == "invalid_request"
    assert "4321" not in await typo.text()


async def test_refusals_have_stable_codes(world: CasesWorld) -> None:
    csrf = await signed_in(world, "deepa")
    reference = world.seeded["asha"].reference
    wrong_check_digit = reference[:-1] + str((int(reference[-1]) + 1) % 10)
    for path in ("/api/cases/20269999990", f"/api/cases/{wrong_check_digit}"):
        missing = await world.client.get(path)
        assert missing.status == 404, path
        assert (await missing.json())["error"]["code"] == "case_not_found"
    for body in ({}, {"status": "lost"}, {"reason": "no status"}, {"risk": "extreme"},
                 {"assignee": "bela"}):
        bad = await world.client.patch(f"/api/cases/{reference}", json=body, headers=csrf)
        assert bad.status == 422, body
        assert (await bad.json())["error"]["code"] == "invalid_request"
    bad_filter = await world.client.get("/api/cases?from=yesterday")
    assert bad_filter.status == 422
    assert (await bad_filter.json())["error"]["details"][0]["field"] == "from"
    unknown = await world.client.delete(f"/api/cases/{reference}/consent/999999",
                                        headers=csrf)
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "consent_not_found"
    # Another case's consent cannot be withdrawn through this one.
    elsewhere = world.seeded["bela"].consent_id
    other = await world.client.delete(f"/api/cases/{reference}/consent/{elsewhere}",
                                      headers=csrf)
    assert other.status == 404


async def test_search_filters(world: CasesWorld) -> None:
    await signed_in(world, "deepa")
    seeded = world.seeded
    await world.cases.change_status(seeded["bela"].reference, "in-progress", "deepa")

    async def found(query: str) -> list[str]:
        response = await world.client.get(f"/api/cases{query}")
        assert response.status == 200, await response.text()
        return [c["reference"] for c in (await response.json())["cases"]]

    everyone = await found("")
    assert sorted(everyone) == sorted(c.reference for c in seeded.values())
    assert await found("?status=in-progress") == [seeded["bela"].reference]
    assert await found(f"?token={seeded['chitra'].caller_token.lower()}") == [
        seeded["chitra"].reference
    ]
    assert await found("?from=2020-01-01&to=2020-12-31") == []
    assert len(await found("?limit=1")) == 1


# -- consent and the reveal ---------------------------------------------------------------


async def test_reveal_without_consent_is_refused_and_audited(world: CasesWorld) -> None:
    case = world.seeded["asha"]
    csrf = await signed_in(world, "deepa")
    response = await world.client.post(f"/api/cases/{case.reference}/reveal",
                                       json={"purpose": "police"}, headers=csrf)
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "consent_required"
    assert leaked_numbers(await response.text()) == []
    [row] = await reveal_rows(world)
    assert row["granted"] is False and row["refused"] == "reveal_no_consent"
    assert row["actor"] == "deepa" and row["subject"] == f"identity:{case.identity_id}"
    assert body["error"]["details"][0]["audit_seq"] is not None


async def test_reveal_with_her_consent(world: CasesWorld) -> None:
    case = world.seeded["asha"]
    csrf = await signed_in(world, "asha")
    given = await world.client.post(f"/api/cases/{case.reference}/consent",
                                    json={"scope": "department", "department": "Cyber Cell"},
                                    headers=csrf)
    assert given.status == 201
    consent_id = (await given.json())["id"]

    csrf = await signed_in(world, "deepa")
    path = f"/api/cases/{case.reference}/reveal"
    response = await world.client.post(
        path, json={"purpose": "department", "department": "cyber cell"}, headers=csrf
    )
    assert response.status == 200
    assert response.headers["Cache-Control"].startswith("no-store")
    body = await response.json()
    assert national_digits(body["number"]) == national_digits(case.number)
    assert body["basis"] == "consent" and body["caller_token"] == case.caller_token
    row = (await reveal_rows(world))[-1]
    assert row["granted"] is True and row["basis"] == "consent"
    assert row["consent_id"] == consent_id

    # Withdrawn, it covers nothing: the next reveal is refused, and audited.
    withdrawn = await world.client.delete(
        f"/api/cases/{case.reference}/consent/{consent_id}", headers=csrf
    )
    assert withdrawn.status == 200 and (await withdrawn.json())["active"] is False
    again = await world.client.post(
        path, json={"purpose": "department", "department": "Cyber Cell"}, headers=csrf
    )
    assert again.status == 403
    assert (await again.json())["error"]["code"] == "consent_required"
    assert [r["granted"] for r in await reveal_rows(world)] == [True, False]


async def test_emergency_override_needs_a_written_reason(world: CasesWorld) -> None:
    case = world.seeded["asha"]
    csrf = await signed_in(world, "deepa")
    path = f"/api/cases/{case.reference}/reveal"
    short = await world.client.post(path, json={"purpose": "police", "override_reason": "urgent"},
                                    headers=csrf)
    assert short.status == 422
    assert (await short.json())["error"]["code"] == "invalid_request"
    granted = await world.client.post(
        path, json={"purpose": "police", "override_reason": OVERRIDE_REASON}, headers=csrf
    )
    assert granted.status == 200
    assert (await granted.json())["basis"] == "override"
    refused, allowed = await reveal_rows(world)
    assert refused["granted"] is False
    assert refused["refused"] == "reveal_override_reason_too_short"
    assert allowed["granted"] is True and allowed["basis"] == "override"
    assert allowed["override_reason"] == OVERRIDE_REASON


async def test_an_agents_reveal_attempt_is_refused_and_audited(world: CasesWorld) -> None:
    case = world.seeded["asha"]
    for username in ("asha", "esha"):  # her own case's agent, and an admin
        csrf = await signed_in(world, username)
        response = await world.client.post(
            f"/api/cases/{case.reference}/reveal",
            json={"purpose": "police", "override_reason": OVERRIDE_REASON}, headers=csrf,
        )
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"
    rows = await reveal_rows(world)
    assert [(r["actor"], r["granted"], r["refused"]) for r in rows] == [
        ("asha", False, "reveal_not_supervisor"), ("esha", False, "reveal_not_supervisor")
    ]


# -- export, blocks, audit ----------------------------------------------------------------


async def test_csv_export_carries_tokens_only_and_is_audited(world: CasesWorld) -> None:
    await signed_in(world, "deepa")
    response = await world.client.get("/api/cases/export.csv?district=Lucknow")
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = await response.text()
    assert leaked_numbers(text) == []
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["caller_token"] for r in rows} == {c.caller_token for c in world.seeded.values()}
    assert all(r["harasser_tokens"].startswith("H-") for r in rows)
    assert "description" not in rows[0]
    [entry] = await world.audit.entries(action="cases.export")
    assert entry.actor == "deepa" and entry.details["rows"] == 3
    assert entry.details["filter"] == {"district": "Lucknow"}


async def test_block_a_caller_by_token(world: CasesWorld) -> None:
    case = world.seeded["bela"]
    csrf = await signed_in(world, "deepa")
    path = f"/api/callers/{case.caller_token}/block"
    response = await world.client.post(
        path, json={"days": 30, "reason": "Abusive calls every night"}, headers=csrf
    )
    assert response.status == 201
    body = await response.json()
    assert body["token"] == case.caller_token and body["blocked_by"] == "deepa"
    assert await world.cases.is_blocked(case.identity_id)
    [entry] = await world.audit.entries(action="caller.block")
    assert entry.subject == f"identity:{case.identity_id}"

    too_long = await world.client.post(path, json={"days": 365, "reason": "Abusive calls"},
                                       headers=csrf)
    assert too_long.status == 422
    nobody = await world.client.post("/api/callers/T-00000000/block",
                                     json={"days": 1, "reason": "Abusive calls"}, headers=csrf)
    assert nobody.status == 404
    assert (await nobody.json())["error"]["code"] == "caller_not_found"


async def test_audit_verify_finds_a_rewritten_row(world: CasesWorld) -> None:
    await signed_in(world, "esha")
    clean = await (await world.client.get("/api/audit/verify")).json()
    # The seeded consents are rows 1..3.
    assert clean["ok"] is True and clean["head_seq"] == 3 and clean["first_bad_seq"] is None
    async with world.store.transaction() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(actor="someone-else")
        )
    broken = await (await world.client.get("/api/audit/verify")).json()
    assert broken["ok"] is False and broken["first_bad_seq"] == 2
    assert {p["code"] for p in broken["problems"]} == {"altered"}


async def test_openapi_documents_the_case_routes(world: CasesWorld) -> None:
    document = await (await world.client.get("/api/openapi.json")).json()
    paths = document["paths"]
    for method, path in ROUTES:
        documented = path.replace(r":\d{1,18}", "")
        assert method.lower() in paths[documented], (method, path)
    reveal = paths["/api/cases/{reference}/reveal"]["post"]
    assert reveal["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RevealRequest"
    )
    assert paths["/api/cases"]["get"]["x-roles"] == ["admin", "supervisor"]
    assert paths["/api/audit/verify"]["get"]["x-roles"] == ["admin"]
    assert paths["/api/callers/{token}/block"]["post"]["x-roles"] == ["supervisor"]
    for name in ("CaseOut", "CaseList", "RevealOut", "ConsentOut", "HarasserOut",
                 "AuditVerifyOut", "CaseUpdateRequest"):
        assert name in document["components"]["schemas"], name
    # The document itself names no route's example number.
    assert leaked_numbers(await (await world.client.get("/api/openapi.json")).text()) == []
