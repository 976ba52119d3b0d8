"""Recording routes: playback under RBAC, the list of a call's recordings, and the PBXs' ingest.

Playback streams the decrypted audio only after :class:`RecordingStore` has decided and
audited; the ingest endpoint is for the PBXs' upload hook, authenticated by the PBX's own
ingest token (``Authorization: Bearer``), not by a user's session.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from callcenter.cases.recordings import (
    PlaybackRefused,
    RecordingCorrupt,
    RecordingInfo,
    RecordingNotFound,
    RecordingRejected,
    RecordingStore,
    RecordingTooLarge,
)

from .auth import session_of
from .body import json_response
from .errors import WebError, forbidden, not_found
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api

log = logging.getLogger(__name__)

INGEST_CHUNK = 64 * 1024
#: Headers the upload hook sends with the audio.
FORMAT_HEADER = "X-Recording-Format"
CHECKSUM_HEADER = "X-Content-SHA256"


class RecordingOut(BaseModel):
    id: str
    node: str
    linkedid: str
    format: str
    content_type: str
    size_bytes: int
    received_at: datetime
    url: str

    @classmethod
    def of(cls, info: RecordingInfo) -> RecordingOut:
        return cls(
            id=info.id, node=info.node, linkedid=info.linkedid, format=info.format,
            content_type=info.content_type, size_bytes=info.size_bytes,
            received_at=info.received_at, url=f"/api/recordings/{info.id}",
        )


class RecordingList(BaseModel):
    recordings: list[RecordingOut]


class IngestOut(BaseModel):
    id: str
    #: False: this file was already stored (the hook retried an upload that had arrived).
    created: bool


def _recordings(request: web.Request) -> RecordingStore:
    recordings = request.app[DEPS].recordings
    if recordings is None:
        raise WebError(503, "recordings_not_configured",
                       "Recordings are not configured on this server.")
    return recordings  # type: ignore[no-any-return]


@api("Listen to a recording: the agent who answered the call, or a supervisor; audited",
     roles=ALL_ROLES, tags=["recordings"], content_type="audio/wav", errors=[404])
async def play(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    recordings = _recordings(request)
    try:
        info = await recordings.authorize_playback(
            request.match_info["recording_id"], actor=session.username, role=session.role,
            endpoint=session.endpoint,
        )
    except RecordingNotFound:
        raise not_found("No such recording.") from None
    except PlaybackRefused as exc:
        raise forbidden(str(exc)) from None
    audio = recordings.plaintext(info)
    try:
        # The first chunk before the headers: a file that does not decrypt is a clean
        # error response, not a broken stream.
        first = await anext(audio, b"")
    except RecordingCorrupt as exc:
        log.error("recording %s cannot be played: %s", info.id, exc)
        raise WebError(500, exc.code, "This recording cannot be played; tell an admin.") from None
    response = web.StreamResponse(
        headers={
            "Content-Type": info.content_type,
            "Content-Disposition": f'inline; filename="{info.id}.{info.format.lower()}"',
            # Never in a shared or browser cache: the next person at this desk is not her.
            "Cache-Control": "no-store, private",
        }
    )
    response.content_length = info.size_bytes
    await response.prepare(request)
    try:
        await response.write(first)
        async for chunk in audio:
            await response.write(chunk)
    except RecordingCorrupt as exc:
        # Headers are gone: the only honest signal left is to cut the connection.
        log.error("recording %s failed mid-stream: %s", info.id, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await audio.aclose()
    await response.write_eof()
    return response


@api("The recordings of one call; an agent sees only calls she answered", roles=ALL_ROLES,
     response=RecordingList, tags=["recordings"], errors=[404])
async def call_recordings(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    recordings = _recordings(request)
    found = await recordings.for_call(request.match_info["node"], request.match_info["linkedid"])
    if session.role not in SUPERVISORS:
        found = [
            info for info in found
            if recordings.may_play(info, role=session.role, endpoint=session.endpoint)
        ]
    return json_response(RecordingList(recordings=[RecordingOut.of(i) for i in found]))


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@api("Upload a finished recording (the PBX's hook, with its ingest token); idempotent",
     roles=None, csrf=False, response=IngestOut, status=201, tags=["recordings"],
     errors=[200, 401, 411, 413, 422, 503])
async def ingest(request: web.Request) -> web.StreamResponse:
    recordings = _recordings(request)
    node = request.match_info["node"]
    token = _bearer(request)
    if token is None or not recordings.check_ingest_token(node, token):
        # One answer for every failure: a missing, wrong or other node's token.
        raise WebError(401, "ingest_unauthorized",
                       "Send this PBX's ingest token as 'Authorization: Bearer ...'.",
                       headers={"WWW-Authenticate": 'Bearer realm="recordings"'})
    if request.content_length is None:
        raise WebError(411, "length_required", "Send the file with a Content-Length.")
    if request.content_length > recordings.max_bytes:
        raise WebError(413, RecordingTooLarge.code, "The recording is too large.")

    async def body() -> Any:
        async for chunk in request.content.iter_chunked(INGEST_CHUNK):
            yield chunk

    try:
        result = await recordings.ingest(
            node, request.match_info["linkedid"], request.headers.get(FORMAT_HEADER, ""),
            body(), content_sha256=request.headers.get(CHECKSUM_HEADER, ""),
        )
    except RecordingTooLarge as exc:
        raise WebError(413, exc.code, str(exc)) from None
    except RecordingRejected as exc:
        raise WebError(422, exc.code, str(exc)) from None
    return json_response(
        IngestOut(id=result.recording.id, created=result.created),
        status=201 if result.created else 200,
    )


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/recordings/{recording_id:[a-z]+}", play, allow_head=False)
    router.add_get("/api/calls/{node}/{linkedid}/recordings", call_recordings, allow_head=False)
    router.add_put("/api/recordings/ingest/{node}/{linkedid}", ingest)
