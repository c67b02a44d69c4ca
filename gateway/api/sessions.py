"""The SDK's session API: durable, versioned session state and the tool events agents report.

    GET    /v1/lockgate/sessions/{id}/state            every key: {"state": {key: {"value", "version"}}}
    GET    /v1/lockgate/sessions/{id}/state/{key}      one key ({"value": null, "version": 0} if absent)
    PUT    /v1/lockgate/sessions/{id}/state/{key}      {"value": ..., "version": <the version it is based on>}
    DELETE /v1/lockgate/sessions/{id}/state/{key}?version=N
    POST   /v1/lockgate/sessions/{id}/events           {"events": [{"type": "tool_call", ...}]}
    GET    /v1/lockgate/sessions/{id}/events?limit=N
    GET    /v1/lockgate/sessions/{id}/approvals[?status=pending|decided]   this session's holds
    GET    /v1/lockgate/sessions/{id}/approvals/{approval_id}

The approvals views let an agent (with its own key, not the master key) list and wait on the holds
of its own session; deciding stays with reviewers on the admin API.

A write based on a stale version is refused with 409 `state_conflict` and the current version in
`x-lockgate-state-version`; nothing is overwritten. Any key the gateway accepts may use the API.
The state lives in the gateway's store (see `gateway/sessions/service.py`), so it survives restarts
and is shared by replicas on one Redis.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import STORE_INT_MAX, json_response, parse_count, parse_object, read_body
from gateway.errors import InvalidRequest, NotFound, StateConflict
from gateway.pipeline import Pipeline
from gateway.policies.approvals import Approvals
from gateway.sessions.service import Sessions, VersionMismatch

PREFIX = "/v1/lockgate/sessions/{session_id}"
MAX_ID = 256
MAX_EVENTS_PER_CALL = 100
MAX_EVENT_BYTES = 16384
EVENT_TYPES = frozenset({"tool_call"})
VERSION_HEADER = "x-lockgate-state-version"


def owned(owner: str, session: str) -> str:
    """The storage name of `owner`'s session: length-prefixed, so no two (owner, session) pairs meet."""
    return f"{len(owner)}:{owner}:{session}"


def _name(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID or not value.isprintable():
        raise InvalidRequest(f"The {what} must be 1 to {MAX_ID} printable characters.", param=what)
    return value


def _conflict(key: str, expected: int, current: int) -> StateConflict:
    what = "does not exist" if current == 0 else f"is at version {current}"
    return StateConflict(
        f"Session state key '{key}' {what}, but this write was based on version {expected}: "
        "another writer changed it. Nothing was overwritten; read it again and retry.",
        param="version",
        headers={VERSION_HEADER: str(current)},
    )


Endpoint = Callable[[Request], Awaitable[Response]]


class SessionsApi:
    def __init__(
        self, pipeline: Pipeline, sessions: Sessions, max_body_bytes: int, approvals: Approvals | None = None
    ) -> None:
        self._pipeline = pipeline
        self._sessions = sessions
        self._limit = max_body_bytes
        self._approvals = approvals

    def install(self, app: Any) -> None:
        def add(path: str, endpoint: Endpoint, methods: list[str]) -> None:
            app.router.add_route(path, endpoint, methods=methods)

        add(f"{PREFIX}/state", self.get_all, methods=["GET"])
        add(f"{PREFIX}/state/{{key:path}}", self.get_key, methods=["GET"])
        add(f"{PREFIX}/state/{{key:path}}", self.put_key, methods=["PUT"])
        add(f"{PREFIX}/state/{{key:path}}", self.delete_key, methods=["DELETE"])
        add(f"{PREFIX}/events", self.post_events, methods=["POST"])
        add(f"{PREFIX}/events", self.get_events, methods=["GET"])
        if self._approvals is not None:
            add(f"{PREFIX}/approvals", self.list_approvals, methods=["GET"])
            add(f"{PREFIX}/approvals/{{approval_id}}", self.get_approval, methods=["GET"])

    def _session(self, request: Request) -> str:
        """The caller's session, as stored: sessions belong to the key that uses them, so one key
        can never read or overwrite another key's state or events under the same session id."""
        principal = self._pipeline.authenticate(request.headers)
        return owned(principal.identity, _name(request.path_params["session_id"], "session_id"))

    async def get_all(self, request: Request) -> Response:
        session = self._session(request)
        state = await self._sessions.state(session)
        return json_response(orjson.dumps({"session_id": request.path_params["session_id"], "state": state}))

    async def get_key(self, request: Request) -> Response:
        session = self._session(request)
        key = _name(request.path_params["key"], "key")
        value, version = await self._sessions.get(session, key)
        return json_response(orjson.dumps({"key": key, "value": value, "version": version}))

    async def put_key(self, request: Request) -> Response:
        session = self._session(request)
        key = _name(request.path_params["key"], "key")
        body = parse_object(await read_body(request, self._limit))
        if "value" not in body:
            raise InvalidRequest("Send the new value as {\"value\": ..., \"version\": N}.", param="value")
        expected = _version(body.get("version"))
        try:
            version = await self._sessions.put(session, key, body["value"], expected)
        except VersionMismatch as mismatch:
            raise _conflict(key, expected, mismatch.current) from None
        return json_response(orjson.dumps({"key": key, "version": version}))

    async def delete_key(self, request: Request) -> Response:
        session = self._session(request)
        key = _name(request.path_params["key"], "key")
        raw = request.query_params.get("version")
        expected = _version(raw if raw is None else parse_count(raw))
        try:
            await self._sessions.delete(session, key, expected)
        except VersionMismatch as mismatch:
            raise _conflict(key, expected, mismatch.current) from None
        return json_response(orjson.dumps({"key": key, "deleted": True}))

    async def post_events(self, request: Request) -> Response:
        principal = self._pipeline.authenticate(request.headers)
        session = owned(principal.identity, _name(request.path_params["session_id"], "session_id"))
        body = parse_object(await read_body(request, self._limit))
        events = body.get("events")
        if not isinstance(events, list) or not events or len(events) > MAX_EVENTS_PER_CALL:
            raise InvalidRequest(f"'events' must be an array of 1 to {MAX_EVENTS_PER_CALL} events.", param="events")
        now = int(time.time() * 1000)
        checked = [_event(event, i, now, principal.name) for i, event in enumerate(events)]
        await self._sessions.add_events(session, principal.name, checked)
        return json_response(orjson.dumps({"accepted": len(checked)}), status=202)

    async def get_events(self, request: Request) -> Response:
        session = self._session(request)
        limit = parse_count(request.query_params.get("limit", "100"))
        if limit is None or not 1 <= limit <= 1000:
            raise InvalidRequest("'limit' must be a number from 1 to 1000.", param="limit")
        events = await self._sessions.events(session, limit)
        return json_response(orjson.dumps({"data": events}))

    def _approval_owner(self, request: Request) -> tuple[str, str]:
        """(session id, key name) an approval must carry to be this caller's."""
        principal = self._pipeline.authenticate(request.headers)
        return _name(request.path_params["session_id"], "session_id"), principal.name

    def _mine(self, value: dict[str, Any], owner: tuple[str, str]) -> bool:
        return (value.get("session_id"), value.get("key")) == owner

    async def list_approvals(self, request: Request) -> Response:
        owner = self._approval_owner(request)
        status = request.query_params.get("status")
        if status not in (None, "pending", "decided"):
            raise InvalidRequest("status must be 'pending' or 'decided'.", param="status")
        assert self._approvals is not None
        found = [a.public() for a in await self._approvals.list(status) if self._mine(a.value, owner)]
        return json_response(orjson.dumps({"object": "list", "data": found}))

    async def get_approval(self, request: Request) -> Response:
        owner = self._approval_owner(request)
        assert self._approvals is not None
        approval_id = request.path_params["approval_id"]
        approval = await self._approvals.get(approval_id)
        # Another session's (or key's) approval is as unknown to this caller as one that does not exist.
        if approval is None or not self._mine(approval.value, owner):
            raise NotFound(f"Session '{owner[0]}' has no approval '{approval_id}'.")
        return json_response(orjson.dumps(approval.public()))


def _version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= STORE_INT_MAX:
        raise InvalidRequest(
            "'version' must be the version the write is based on: 0 for a new key, else the version last read.",
            param="version",
        )
    return value


def _event(event: object, index: int, now: int, principal: str) -> dict[str, Any]:
    param = f"events[{index}]"
    if not isinstance(event, dict):
        raise InvalidRequest(f"{param} must be an object.", param=param)
    if not isinstance(event.get("type"), str) or event["type"] not in EVENT_TYPES:  # a set: an object type raised
        raise InvalidRequest(f"{param}.type must be one of: {', '.join(sorted(EVENT_TYPES))}.", param=param)
    name = event.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_ID:
        raise InvalidRequest(f"{param}.name must be the tool's name.", param=param)
    if event.get("status") not in ("ok", "error"):
        raise InvalidRequest(f"{param}.status must be 'ok' or 'error'.", param=param)
    checked = {**event, "received_at": now, "principal": principal}
    if len(orjson.dumps(checked)) > MAX_EVENT_BYTES:
        raise InvalidRequest(f"{param} is larger than {MAX_EVENT_BYTES} bytes.", param=param)
    return checked
