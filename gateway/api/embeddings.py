"""`POST /v1/embeddings`."""

from __future__ import annotations

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
from gateway.context import ApiRequest
from gateway.errors import InvalidRequest
from gateway.pipeline import Pipeline


class EmbeddingsApi:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._limit = max_body_bytes

    async def create(self, request: Request) -> Response:
        principal = self._pipeline.authenticate(request.headers)
        raw = await read_body(request, self._limit)
        body = parse_object(raw)
        model = require_model(body)
        if body.get("input") in (None, "", []):
            raise InvalidRequest("'input' must be a non-empty string or array.", param="input")
        api_request = ApiRequest(
            request_id=request_id(request),
            operation="embeddings",
            headers=request.headers,
            body=body,
            raw=raw,
            model=model,
            principal=principal,
            session_id=request.headers.get("x-lockgate-session-id"),
        )
        expose(request, api_request)
        routed = await self._pipeline.embeddings(api_request)
        return json_response(routed.reply.body, routed_headers(routed, api_request))
