"""What every endpoint does at the edge: read a bounded body, parse JSON, render replies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.context import SCOPE_KEY, TRACE_KEY, ApiRequest
from gateway.errors import ClientClosedRequest, InvalidRequest, MalformedJSON, PayloadTooLarge
from gateway.routing.router import Routed

JSON = "application/json"
STORE_INT_MAX = 2**63 - 1  # the largest integer both stores hold (SQLite refuses more)


def parse_count(text: str) -> int | None:
    """A non-negative integer in ASCII digits that the stores can hold, else None.

    Not `str.isdigit` alone: it accepts '²', which `int` refuses; and an id or version past 2**63 - 1
    reached SQLite, which refused it (both were 500s, found by sending random query parameters).
    """
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= STORE_INT_MAX else None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over `limit` bytes.

    A client that hangs up halfway through its body is not the gateway's error: it was logged as an
    unexpected one, with a traceback, once per such client (found by clients hanging up at random).
    """
    try:
        return await _read_body(request, limit)
    except ClientDisconnect:
        raise ClientClosedRequest("The client closed the connection before sending the whole request body.") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        size = parse_count(declared)
        if size is None:
            raise InvalidRequest("The Content-Length header is not a number.")
        if size > limit:
            raise _too_large(limit)
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this gateway accepts ({limit} bytes; see server.max_body_bytes)."
    )


def parse_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    return model


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]  # type: ignore[no-any-return]


def expose(request: Request, api_request: ApiRequest) -> None:
    """Leave the parsed request where the telemetry middleware reads it once the response is done."""
    state = request.scope["state"]
    state[SCOPE_KEY] = api_request
    api_request.trace = state.get(TRACE_KEY)


def routed_headers(routed: Routed[Any], request: ApiRequest | None = None) -> dict[str, str]:
    """Which deployment served the request and how many attempts it took; the key's rate limits."""
    headers = {
        "x-lockgate-deployment": routed.deployment.id,
        "x-lockgate-attempts": str(len(routed.attempts)),
    }
    if request is not None:
        if request.ratelimit_headers:
            headers.update(request.ratelimit_headers)
        if request.cost_micros is not None:  # known by now for JSON answers; a stream's comes too late
            headers["x-lockgate-cost-usd"] = f"{request.cost_micros / 1_000_000:.6f}"
    return headers


def json_response(body: bytes, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)
