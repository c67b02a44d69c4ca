"""`POST /v1/messages`: Anthropic's Messages API in, through the same pipeline as a chat completion.

The request is read into a chat body (`anthropic_request`), runs every stage a chat completion runs
(routing and fallbacks, budgets, policies, holds, traces: the operation is `chat`), and its answer is
turned back into Anthropic's shape (`anthropic_reply`). Errors before the first byte are rendered in
Anthropic's error shape by the app's handlers (`errors.ANTHROPIC_PATHS`).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.anthropic_reply import message_body, message_events
from gateway.api.anthropic_request import chat_body
from gateway.api.chat import SSE_HEADERS
from gateway.api.common import expose, json_response, parse_object, read_body, request_id, routed_headers
from gateway.api.hold_headers import hold_headers
from gateway.api.streaming import EventStreamResponse
from gateway.context import ApiRequest
from gateway.pipeline import Pipeline


class MessagesApi:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes

    async def create(self, request: Request) -> Response:
        principal = self._pipeline.authenticate(request.headers)
        anthropic_body = parse_object(await read_body(request, self._limit))
        body = chat_body(anthropic_body)
        model: str = body["model"]
        stream = body.get("stream") is True
        api_request = ApiRequest(
            request_id=request_id(request),
            operation="chat",
            headers=request.headers,
            body=body,
            raw=orjson.dumps(body),
            model=model,
            principal=principal,
            stream=stream,
            include_usage=stream,  # asked for in the body: the closing message_delta reports it
            session_id=request.headers.get("x-lockgate-session-id"),
            user=request.headers.get("x-lockgate-user") or body.get("user"),
        )
        expose(request, api_request)
        if not stream:
            routed = await self._pipeline.chat(api_request)
            headers = {**routed_headers(routed, api_request), **hold_headers(api_request)}
            return json_response(message_body(routed.reply.body, model), headers)
        result = await self._pipeline.chat_stream(api_request)
        headers = {**SSE_HEADERS, **routed_headers(result.routed, api_request)}
        return EventStreamResponse(message_events(result.events, model), headers, on_close=result.close)
