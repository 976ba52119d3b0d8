"""The REST API: RBAC on every route, her own calls, commands, hostile input, OpenAPI,
health and metrics. Real accounts on SQLite, the app on loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from callcenter.bus import InProcessBus
from callcenter.store import Store
from callcenter.web.openapi import documented_routes, spec_of
from tests.support.web import (
    STAFF,
    MemoryAgentDirectory,
    StatsStub,
    WebWorld,
    WrapUpInbox,
    add_call,
    add_staff,
    card,
    cheap_accounts,
    serve,
    sign_in,
    web_options,
)

SNAPSHOT = {
    "node": "up-east",
    "pbx_time": 1732261000.0,
    "day": "2026-11-22",
    "time_zone": "Asia/Kolkata",
    "overall": {"queue": None, "waiting": 2},
    "queues": [
        {
            "queue": "wpl-general-hi", "waiting": 2, "longest_wait": 31.0,
            "offered": 10, "answered": 7, "abandoned": 2, "overflowed": 1, "lost": 0,
            "service_level": 0.75, "abandon_rate": 0.2,
        }
    ],
    "agents": [],
    "abandoned_calls": [
        {"caller": "T-AAAA11", "call_id": "1.1", "queue": "wpl-general-hi", "wait": 40,
         "position": 1, "original_position": 1, "at": 1732260000.0, "at_local": "09:30"},
    ],
    "abandoned_calls_dropped": 0,
}


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'web.sqlite3'}")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def inbox() -> WrapUpInbox:
    return WrapUpInbox()


@pytest.fixture
async def world(sqlite_store: Store, inbox: WrapUpInbox) -> AsyncIterator[WebWorld]:
    accounts = cheap_accounts(sqlite_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    await add_call(sqlite_store, "up-east", "1732261000.10", "PJSIP/agent1001",
                   category="stalking")
    await add_call(sqlite_store, "up-east", "1732261500.20", "PJSIP/agent1002")
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=directory,
        stats=StatsStub({"up-east": SNAPSHOT}), wrapup_sink=inbox,
        pbx_links={"up-east": "up"},
        options=web_options(login_limit_per_address=100),
    ) as world:
        yield world


# -- RBAC matrix ----------------------------------------------------------------------

AGENTS = {"agent", "counsellor"}
SUPERVISING = {"supervisor", "admin"}
EVERYONE = AGENTS | SUPERVISING

# (method, path, body, roles allowed). Commands that the directory may refuse for her
# state still pass RBAC: anything but 401/403 counts as "allowed".
MATRIX: list[tuple[str, str, dict[str, object] | None, set[str]]] = [
    ("GET", "/api/session", None, EVERYONE),
    ("GET", "/api/me", None, EVERYONE),
    ("POST", "/api/me/login-queues", None, EVERYONE),
    ("POST", "/api/me/pause", {"reason": "break"}, EVERYONE),
    ("POST", "/api/me/unpause", None, EVERYONE),
    ("POST", "/api/me/wrapup", {"category": "stalking", "notes": ""}, EVERYONE),
    ("POST", "/api/me/logout", None, EVERYONE),
    ("GET", "/api/me/calls", None, EVERYONE),
    ("GET", "/api/agents", None, SUPERVISING),
    ("GET", "/api/queues", None, SUPERVISING),
    ("GET", "/api/abandoned", None, SUPERVISING),
    ("GET", "/api/calls/up-east/1732261000.10", None, {"supervisor", "admin"} | {"agent"}),
    ("DELETE", "/api/session", None, EVERYONE),
]
USER_OF_ROLE = {role: name for name, (role, _) in STAFF.items() if name != "bela"}


@pytest.mark.parametrize("role", sorted(EVERYONE))
async def test_rbac_matrix(world: WebWorld, role: str) -> None:
    client = world.client
    for method, path, body, _allowed in MATRIX:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status == 401, (method, path)
        assert (await anonymous.json())["error"]["code"] == "unauthenticated"

    csrf = await sign_in(client, USER_OF_ROLE[role])
    for method, path, body, allowed in MATRIX:
        response = await client.request(
            method, path, json=body, headers={"X-CSRF-Token": csrf}
        )
        if role in allowed:
            assert response.status not in (401, 403), (role, method, path, response.status)
        else:
            assert response.status == 403, (role, method, path, response.status)
            assert (await response.json())["error"]["code"] == "forbidden"


async def test_matrix_names_every_api_route(world: WebWorld) -> None:
    covered = {(m, p.replace("up-east/1732261000.10", "{node}/{linkedid}"))
               for m, p, _, _ in MATRIX}
    declared = {(m, p) for m, p, spec in documented_routes(world.client.app.router)
                if spec.roles is not None}
    assert declared - {("GET", "/ws/console"), ("GET", "/ws/wallboard")} == covered


async def test_agent_reads_her_call_but_not_anothers(world: WebWorld) -> None:
    client = world.client
    await sign_in(client, "asha")
    mine = await client.get("/api/calls/up-east/1732261000.10")
    assert mine.status == 200
    body = await mine.json()
    assert body["caller_token"] == "T-7KQ2M9"
    assert body["flags"] == ["silent", "danger"]
    theirs = await client.get("/api/calls/up-east/1732261500.20")
    assert theirs.status == 403
    assert (await theirs.json())["error"]["code"] == "forbidden"
    missing = await client.get("/api/calls/up-east/0.0")
    assert missing.status == 404


async def test_supervisor_reads_every_call(world: WebWorld) -> None:
    await sign_in(world.client, "deepa")
    for linkedid in ("1732261000.10", "1732261500.20"):
        assert (await world.client.get(f"/api/calls/up-east/{linkedid}")).status == 200


async def test_her_recent_calls_are_hers_only(world: WebWorld) -> None:
    await sign_in(world.client, "bela")
    body = await (await world.client.get("/api/me/calls")).json()
    assert [c["linkedid"] for c in body["calls"]] == ["1732261500.20"]


async def test_console_commands_change_her_state(world: WebWorld) -> None:
    client = world.client
    csrf = {"X-CSRF-Token": await sign_in(client, "asha")}
    me = await (await client.get("/api/me")).json()
    assert me["agent"]["state"] == "logged_out"
    assert "break" in me["pause_reasons"]

    response = await client.post("/api/me/login-queues", headers=csrf)
    assert (await response.json())["agent"]["state"] == "available"
    response = await client.post("/api/me/pause", json={"reason": "meal"}, headers=csrf)
    assert (await response.json())["agent"]["reason"] == "meal"

    refused = await client.post("/api/me/pause", json={"reason": "cricket"}, headers=csrf)
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "unknown_pause_reason"

    response = await client.post("/api/me/unpause", headers=csrf)
    assert (await response.json())["agent"]["state"] == "available"
    response = await client.post("/api/me/logout", headers=csrf)
    assert (await response.json())["agent"]["state"] == "logged_out"


async def test_wrapup_hands_the_form_on_and_ends_wrap_up(
    world: WebWorld, inbox: WrapUpInbox
) -> None:
    view = world.directory.view("asha")
    assert view is not None
    world.directory.set_view(replace(view, state="wrap_up", reason="wrapup", call=card()))
    csrf = {"X-CSRF-Token": await sign_in(world.client, "asha")}
    response = await world.client.post(
        "/api/me/wrapup",
        json={"category": "stalking", "notes": "referred to the local help desk",
              "node": "up-east", "linkedid": "1732261000.10"},
        headers=csrf,
    )
    assert response.status == 200
    assert (await response.json())["agent"]["state"] == "available"
    [(username, form)] = inbox.forms
    assert username == "asha"
    assert form.category == "stalking" and form.linkedid == "1732261000.10"

    again = await world.client.post(
        "/api/me/wrapup", json={"category": "stalking"}, headers=csrf
    )
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "invalid_transition"


async def test_supervisor_views(world: WebWorld) -> None:
    await sign_in(world.client, "deepa")
    agents = await (await world.client.get("/api/agents")).json()
    assert [a["username"] for a in agents["agents"]] == sorted(STAFF)
    queues = await (await world.client.get("/api/queues")).json()
    assert queues["nodes"][0]["queues"][0]["waiting"] == 2
    abandoned = await (await world.client.get("/api/abandoned")).json()
    assert abandoned["calls"][0]["caller"] == "T-AAAA11"
    assert abandoned["calls"][0]["node"] == "up-east"


# -- hostile input -----------------------------------------------------------------------


async def test_malformed_json(world: WebWorld) -> None:
    csrf = await sign_in(world.client, "asha")
    response = await world.client.post(
        "/api/me/pause", data=b'{"reason": "break"',
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "malformed_json"


async def test_unknown_fields_rejected_without_echoing_input(world: WebWorld) -> None:
    csrf = await sign_in(world.client, "asha")
    response = await world.client.post(
        "/api/me/pause", json={"reason": "break", "reson": "secret-value"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "invalid_request"
    assert "reson" in body["error"]["message"]
    assert "secret-value" not in await response.text()

    login = await world.client.post(
        "/api/session", json={"username": "asha", "password": "hunter2hunter2", "admin": True}
    )
    assert login.status == 422
    assert "hunter2" not in await login.text()


async def test_wrong_types_and_unknown_category(world: WebWorld) -> None:
    csrf = {"X-CSRF-Token": await sign_in(world.client, "asha")}
    for body in ([], "break", {"reason": 5}, {"reason": ""}):
        response = await world.client.post("/api/me/pause", json=body, headers=csrf)
        assert response.status == 422, body
    response = await world.client.post(
        "/api/me/wrapup", json={"category": "gossip"}, headers=csrf
    )
    assert response.status == 422


async def test_oversized_body_refused(world: WebWorld) -> None:
    csrf = await sign_in(world.client, "asha")
    response = await world.client.post(
        "/api/me/wrapup", data=b'{"category": "other", "notes": "' + b"x" * 200_000 + b'"}',
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"


async def test_command_without_parameters_refuses_a_body(world: WebWorld) -> None:
    csrf = await sign_in(world.client, "asha")
    response = await world.client.post(
        "/api/me/login-queues", json={"queues": ["all"]}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 422


async def test_unknown_route_and_method(world: WebWorld) -> None:
    response = await world.client.get("/api/nothing")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    response = await world.client.put("/api/session")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


# -- OpenAPI, health, metrics, pages -------------------------------------------------------


async def test_openapi_document_covers_every_route(world: WebWorld) -> None:
    response = await world.client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    schemas = document["components"]["schemas"]
    for name in ("AgentView", "CallCard", "QueueStatsSnapshot", "LoginRequest",
                 "ErrorResponse", "WrapUpRequest"):
        assert name in schemas, name

    app_routes = {
        (route.method.lower(), route.resource.canonical)
        for route in world.client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
        and not route.resource.canonical.startswith("/static")
    }
    documented = {
        (method, path) for path, operations in document["paths"].items()
        for method in operations
    }
    assert app_routes == documented
    for route in world.client.app.router.routes():
        if route.resource is not None and not route.resource.canonical.startswith("/static"):
            assert spec_of(route.handler) is not None, route

    operation_ids = []
    for path, operations in document["paths"].items():
        for operation in operations.values():
            operation_ids.append(operation["operationId"])
            assert operation["summary"]
            assert operation["responses"]
            for response in operation["responses"].values():
                for content in response.get("content", {}).values():
                    ref = content["schema"].get("$ref")
                    if ref:
                        assert ref.removeprefix("#/components/schemas/") in schemas
            if "{" in path:
                names = {p["name"] for p in operation["parameters"]}
                assert names == {"node", "linkedid"}
    assert len(operation_ids) == len(set(operation_ids))
    login = document["paths"]["/api/session"]["post"]
    assert login["security"] == []
    assert "429" in login["responses"]
    assert document["paths"]["/api/agents"]["get"]["x-roles"] == ["admin", "supervisor"]


async def test_health_reports_database_and_pbx(world: WebWorld) -> None:
    response = await world.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {
        "live": True, "ready": True, "database": "ok", "pbx": {"up-east": "up"}
    }


async def test_health_not_ready_when_database_is_gone(sqlite_store: Store) -> None:
    # Nothing listens on port 1 of the loopback: the connection is refused at once.
    gone = Store.from_url("postgresql+asyncpg://nobody@127.0.0.1:1/callcenter")
    try:
        async with InProcessBus() as bus, serve(
            store=sqlite_store, bus=bus, accounts=cheap_accounts(sqlite_store),
            directory=MemoryAgentDirectory(), health_store=gone,
        ) as world:
            response = await world.client.get("/healthz")
            assert response.status == 503
            body = await response.json()
            assert body["database"] == "unreachable" and body["live"] is True
    finally:
        await gone.close()


async def test_metrics_from_the_app_registry(world: WebWorld) -> None:
    response = await world.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'callcenter_queue_waiting_callers{node="up-east",queue="wpl-general-hi"} 2.0' in text
    assert 'callcenter_agents{state="logged_out"} 5.0' in text
    assert "callcenter_ami_event_lag_seconds" in text


async def test_metrics_behind_a_scrape_token(sqlite_store: Store) -> None:
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=cheap_accounts(sqlite_store),
        directory=MemoryAgentDirectory(), options=web_options(metrics_token="s3cret-scrape"),
    ) as world:
        refused = await world.client.get("/metrics")
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "metrics_token_required"
        wrong = await world.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await world.client.get(
            "/metrics", headers={"Authorization": "Bearer s3cret-scrape"}
        )
        assert right.status == 200 and "callcenter_agents" in await right.text()


async def test_pages_send_unsigned_visitors_to_login(world: WebWorld) -> None:
    client = world.client
    response = await client.get("/console", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login"
    assert (await client.get("/login")).status == 200
    await sign_in(client, "asha")
    assert (await client.get("/console")).status == 200
    assert (await client.get("/wallboard")).status == 403
