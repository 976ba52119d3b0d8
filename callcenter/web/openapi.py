"""Route metadata, and the OpenAPI 3.1 document built from the live route table.

A handler is declared with :func:`api`: summary, who may call it, its body and response
types. The same declaration drives three things, so they cannot drift apart: the RBAC
check (``callcenter.web.auth``), the request parsing (``callcenter.web.http.read_body``)
and the document served at ``/api/openapi.json``, built by walking ``app.router``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from .schemas import ErrorResponse

Handler = TypeVar("Handler", bound=Callable[..., Any])

ALL_ROLES = frozenset({"agent", "counsellor", "supervisor", "admin"})
SUPERVISORS = frozenset({"supervisor", "admin"})

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")

_ERROR_TEXT = {
    400: "Malformed request (e.g. body is not JSON)",
    401: "Not signed in",
    403: "Role, CSRF token or origin refused",
    404: "Not found",
    409: "Refused in the agent's current state",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Body does not match the schema",
    429: "Too many attempts; see Retry-After",
    503: "Not ready",
}


@dataclass(frozen=True, slots=True)
class ApiSpec:
    summary: str
    #: Roles allowed; None: no sign-in needed.
    roles: frozenset[str] | None
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()
    #: A WebSocket endpoint: documented, but an upgrade rather than a JSON exchange.
    websocket: bool = False
    #: Whether a state-changing call needs X-CSRF-Token (only sign-in does not: no session yet).
    csrf: bool = True


def api(
    summary: str,
    *,
    roles: Iterable[str] | None,
    body: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    tags: Iterable[str] = (),
    content_type: str = "application/json",
    errors: Iterable[int] = (),
    websocket: bool = False,
    csrf: bool = True,
) -> Callable[[Handler], Handler]:
    spec = ApiSpec(
        summary=summary,
        roles=frozenset(roles) if roles is not None else None,
        body=body,
        response=response,
        status=status,
        tags=tuple(tags),
        content_type=content_type,
        errors=tuple(errors),
        websocket=websocket,
        csrf=csrf,
    )

    def mark(handler: Handler) -> Handler:
        handler.__api__ = spec  # type: ignore[attr-defined]
        return handler

    return mark


def spec_of(handler: Any) -> ApiSpec | None:
    return getattr(handler, "__api__", None)


def documented_routes(router: web.UrlDispatcher) -> list[tuple[str, str, ApiSpec]]:
    """(method, path template, spec) of every declared route, HEAD and static left out."""
    found: list[tuple[str, str, ApiSpec]] = []
    for route in router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        spec = spec_of(route.handler)
        if spec is None:
            continue
        found.append((route.method, route.resource.canonical, spec))
    return found


def build_openapi(
    router: web.UrlDispatcher, *, title: str, version: str, cookie_name: str
) -> dict[str, Any]:
    routes = documented_routes(router)
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = [
        ("error", "serialization", TypeAdapter(ErrorResponse))
    ]
    for method, path, spec in routes:
        if spec.body is not None:
            inputs.append(((method, path, "body"), "validation", TypeAdapter(spec.body)))
        if spec.response is not None:
            inputs.append(((method, path, "response"), "serialization", TypeAdapter(spec.response)))
    refs, definitions = TypeAdapter.json_schemas(
        inputs, ref_template="#/components/schemas/{model}"
    )

    def schema(key: Any, mode: str) -> dict[str, Any]:
        return refs[(key, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for method, path, spec in routes:
        operation: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": spec.summary,
            "tags": list(spec.tags),
            "x-roles": sorted(spec.roles) if spec.roles is not None else [],
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(path)
        ]
        if parameters:
            operation["parameters"] = parameters
        if spec.roles is not None:
            security: dict[str, list[str]] = {"session": []}
            if spec.csrf and method in {"POST", "PUT", "PATCH", "DELETE"}:
                security["csrf"] = []
            operation["security"] = [security]
        else:
            operation["security"] = []
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": schema((method, path, "body"), "validation")}
                },
            }
        responses: dict[str, Any] = {}
        if spec.websocket:
            responses["101"] = {"description": "Switching to a WebSocket (JSON text messages)"}
        else:
            ok: dict[str, Any] = {"description": "OK"}
            if spec.response is not None:
                ok["content"] = {
                    spec.content_type: {
                        "schema": schema((method, path, "response"), "serialization")
                    }
                }
            elif spec.content_type != "application/json":
                ok["content"] = {spec.content_type: {"schema": {"type": "string"}}}
            responses[str(spec.status)] = ok
        codes = set(spec.errors)
        if spec.roles is not None:
            codes |= {401, 403}
        if spec.body is not None:
            codes |= {400, 413, 415, 422}
        for code in sorted(codes):
            responses[str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": schema("error", "serialization")}},
            }
        operation["responses"] = responses
        paths.setdefault(path, {})[method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Agent console, wallboard and session API of the 1090 helpline. "
            "Errors are {\"error\": {\"code\", \"message\"}} with a stable code.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": cookie_name},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", _PARAM.sub(r"by_\1", path)) if w]
    return "_".join([method.lower(), *words]) or method.lower()
