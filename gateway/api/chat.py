"""`POST /v1/chat/completions` (JSON and SSE streaming, tools, `stream_options`), and the request and
answer every chat-shaped endpoint shares (`translated` reads other APIs' shapes into it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import (
    expose,
    json_response,
    parse_object,
    read_body,
    request_id,
    require_model,
    routed_headers,
)
from gateway.api.hold_headers import hold_headers
from gateway.api.streaming import EventStreamResponse
from gateway.config.runtime import Principal
from gateway.context import ApiRequest
from gateway.errors import InvalidRequest
from gateway.pipeline import Pipeline
from gateway.providers.base import Summary

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ChatApi:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes

    async def create(self, request: Request) -> Response:
        principal = self._pipeline.authenticate(request.headers)
        raw = await read_body(request, self._limit)
        body = parse_object(raw)
        model = require_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty array of messages.", param="messages")
        stream = _flag(body.get("stream"), "stream")
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        return await answer_chat(self._pipeline, chat_request(request, principal, body, raw, model, stream, include_usage))


def chat_request(
    request: Request, principal: Principal, body: dict[str, Any], raw: bytes, model: str, stream: bool,
    include_usage: bool,
) -> ApiRequest:
    """The chat request every chat-shaped endpoint runs (chat completions, and the other APIs' shapes read
    into one), left where the telemetry middleware reads it. Session and user: the headers first."""
    api_request = ApiRequest(
        request_id=request_id(request),
        operation="chat",
        headers=request.headers,
        body=body,
        raw=raw,
        model=model,
        principal=principal,
        stream=stream,
        include_usage=include_usage,
        session_id=request.headers.get("x-lockgate-session-id"),
        user=request.headers.get("x-lockgate-user") or _str(body.get("user")),
    )
    expose(request, api_request)
    return api_request


async def answer_chat(
    pipeline: Pipeline,
    api_request: ApiRequest,
    as_json: Callable[[bytes], bytes] | None = None,
    as_events: Callable[[AsyncIterator[bytes], Summary | None], AsyncIterator[bytes]] | None = None,
) -> Response:
    """Run a chat request and answer it: the completion (rendered by `as_json`), or its event stream
    (rendered by `as_events`, given the serving provider's summary); as they are when not given."""
    if not api_request.stream:
        routed = await pipeline.chat(api_request)
        body = routed.reply.body if as_json is None else as_json(routed.reply.body)
        return json_response(body, {**routed_headers(routed, api_request), **hold_headers(api_request)})
    result = await pipeline.chat_stream(api_request)
    headers = {**SSE_HEADERS, **routed_headers(result.routed, api_request)}
    events = result.events
    if as_events is not None:
        served = result.routed.reply  # None when the policies answered (a held reply): nothing parsed
        events = as_events(events, served.summary if served is not None else None)
    # Not Starlette's StreamingResponse: see gateway/api/streaming.py for why (measured).
    return EventStreamResponse(events, headers, on_close=result.close)


def _flag(value: object, name: str) -> bool:
    """A boolean parameter the gateway acts on. Anything else is refused, as OpenAI refuses it: read
    as false here but forwarded as sent, `"stream": {"a": 1}` made the upstream stream an answer the
    gateway parsed as JSON, a bad response on every retry, and the deployment's breaker opened for
    every client (found by sending random malformed requests)."""
    if value is None or isinstance(value, bool):
        return value is True
    kind = {str: "a string", int: "an integer", float: "a number", list: "an array", dict: "an object"}.get(
        type(value), "something else")
    raise InvalidRequest(f"Invalid type for '{name}': expected a boolean, but got {kind} instead.", param=name)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
