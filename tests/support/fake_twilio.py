"""A loopback HTTP server standing in for Twilio's REST API (Messages only).

It speaks the wire format the ``twilio`` library expects: form-encoded POSTs to
``/2010-04-01/Accounts/{AccountSid}/Messages.json`` answered ``201`` with a Message JSON
(sid, status, ...), errors as Twilio's JSON error body, and the list endpoint with its
paging keys. Every request is recorded for the tests to assert on. It can also play the
other side of a status callback: POST a signed form to the StatusCallback URL, as Twilio
does.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

_API = "/2010-04-01/Accounts/{account}/Messages.json"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorization: str | None


@dataclass(slots=True)
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-auth-token-for-tests"
    requests: list[RecordedRequest] = field(default_factory=list)
    #: Messages it accepted, oldest first, as Twilio's JSON.
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: When set, the next create is refused with (HTTP status, Twilio error code).
    refuse_next: tuple[int, int] | None = None
    #: When cleared, a create is recorded and accepted but its answer waits for it: the
    #: sender may die with Twilio holding the message, as in a crash before the commit.
    answer_gate: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set each time a create was accepted (the test waits on it before "crashing").
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    #: Twilio's clock (date_created); tests share theirs with it.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def start(self) -> None:
        self.answer_gate.set()
        app = web.Application()
        path = _API.format(account="{account}")
        app.router.add_post(path, self._create)
        app.router.add_get(path, self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self.answer_gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def creates(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    # -- Twilio's side --------------------------------------------------------------

    def _authorised(self, request: web.Request, account: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return account == self.account_sid and request.headers.get(
            "Authorization"
        ) == f"Basic {expected}"

    async def _record(self, request: web.Request) -> RecordedRequest:
        form = {k: str(v) for k, v in (await request.post()).items()}
        recorded = RecordedRequest(
            request.method, request.path, dict(request.query), form,
            request.headers.get("Authorization"),
        )
        self.requests.append(recorded)
        return recorded

    async def _create(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if not self._authorised(request, request.match_info["account"]):
            return _error(401, 20003, "Authenticate")
        form = recorded.form
        if self.refuse_next is not None:
            status, code = self.refuse_next
            self.refuse_next = None
            return _error(status, code, "Refused by the fake")
        if not form.get("To"):
            return _error(400, 21604, "A 'To' phone number is required.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        now = self.clock()
        sid = "SM" + secrets.token_hex(16)
        service = form.get("MessagingServiceSid")
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": format_datetime(now, usegmt=True),
            "date_updated": format_datetime(now, usegmt=True),
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # With a Messaging Service Twilio answers "accepted", else "queued".
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{request.path[:-5]}/{sid}/Media.json"},
            "to": form["To"],
            "uri": f"{request.path[:-5]}/{sid}.json",
        }
        self.messages.append(message)
        self.accepted.set()
        await self.answer_gate.wait()
        return web.json_response(message, status=201)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if not self._authorised(request, request.match_info["account"]):
            return _error(401, 20003, "Authenticate")
        to = request.query.get("To")
        found = [m for m in reversed(self.messages) if to is None or m["to"] == to]
        size = int(request.query.get("PageSize", "50"))
        return web.json_response({
            "messages": found[:size],
            "end": max(len(found[:size]) - 1, 0),
            "first_page_uri": request.path_qs,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": request.path_qs,
        })

    # -- playing Twilio's status callback ------------------------------------------

    def signature(self, url: str, params: Mapping[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def callback_form(self, message: Mapping[str, Any], status: str,
                      error_code: int | None = None) -> dict[str, str]:
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": str(message.get("from") or ""),
            "MessageSid": str(message["sid"]),
            "MessageStatus": status,
            "SmsSid": str(message["sid"]),
            "SmsStatus": status,
            "To": str(message["to"]),
        }
        if message.get("messaging_service_sid"):
            form["MessagingServiceSid"] = str(message["messaging_service_sid"])
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        return form

    async def post_callback(
        self,
        url: str,
        form: Mapping[str, str],
        *,
        signed_url: str | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST ``form`` to ``url`` signed like Twilio (over ``signed_url`` if given)."""
        sent = dict(headers or {})
        sent["X-Twilio-Signature"] = (
            signature if signature is not None else self.signature(signed_url or url, form)
        )
        async with aiohttp.ClientSession() as session, session.post(
            url, data=dict(form), headers=sent
        ) as response:
            return response.status, await response.text()


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status},
        status=status,
    )
