"""Endpoints for other APIs' chat shapes: `POST /v1/messages` (Anthropic) and `POST /v1/responses` (OpenAI).

Each is a `Dialect`: how its request becomes a chat body, and how the chat answer is rendered back
(JSON, or a stream of that API's events). Between the two the request is an ordinary chat request:
it runs every stage a chat completion runs (routing and fallbacks, budgets, policies, holds, traces:
the operation is `chat`), with the same headers on the answer. Errors before the first byte are
rendered in the dialect's error shape by the app's handlers (`errors.ANTHROPIC_PATHS`; the Responses
API shares OpenAI's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import anthropic_request, responses_request
from gateway.api.anthropic_reply import message_body, message_events
from gateway.api.chat import answer_chat, chat_request
from gateway.api.common import parse_object, read_body
from gateway.api.responses_reply import ResponseShape, response_body, response_events
from gateway.pipeline import Pipeline
from gateway.providers.base import Summary

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dialect:
    # The dialect's request (parsed JSON) as a chat body; InvalidRequest naming the field when it cannot be.
    chat_body: Callable[[Body], Body]
    # The chat completion's bytes as the dialect's answer, given the dialect's request and the model asked for.
    answer: Callable[[bytes, Body, str], bytes]
    # The chat stream's SSE blocks as the dialect's event stream (with the serving provider's summary).
    events: Callable[[AsyncIterator[bytes], Body, str, Summary | None], AsyncIterator[bytes]]


ANTHROPIC_MESSAGES = Dialect(
    anthropic_request.chat_body,
    lambda completion, _, model: message_body(completion, model),
    lambda chunks, _, model, summary: message_events(chunks, model, summary),
)
OPENAI_RESPONSES = Dialect(
    responses_request.chat_body,
    lambda completion, request, model: response_body(completion, ResponseShape(request, model)),
    lambda chunks, request, model, summary: response_events(chunks, ResponseShape(request, model), summary),
)


class TranslatedChatApi:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int, dialect: Dialect) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes
        self._dialect = dialect

    async def create(self, request: Request) -> Response:
        principal = self._pipeline.authenticate(request.headers)
        given = parse_object(await read_body(request, self._limit))
        body = self._dialect.chat_body(given)
        model: str = body["model"]
        stream = body.get("stream") is True
        # Usage is asked for in the body when streaming: the dialect's closing event reports it.
        api_request = chat_request(request, principal, body, orjson.dumps(body), model, stream, include_usage=stream)
        dialect = self._dialect
        return await answer_chat(
            self._pipeline, api_request,
            lambda completion: dialect.answer(completion, given, model),
            lambda events, summary: dialect.events(events, given, model, summary),
        )
