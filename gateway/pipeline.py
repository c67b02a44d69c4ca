"""A request's life, in order, as plain awaits. The stage order lives here and nothing else.

    authenticate -> check model access -> (pre-call policies) -> (reserve budget)
      -> route: attempts, fallbacks -> provider call -> (settle budget) -> (post-call policies)

Stages in brackets arrive with their issues; each is one call here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.config.runtime import Principal
from gateway.context import ApiRequest
from gateway.errors import UpstreamFailure, stream_error_event
from gateway.providers.base import JsonReply
from gateway.routing.deadline import request_timeout
from gateway.routing.router import OpenStream, Routed, Router


@dataclass(slots=True)
class StreamResult:
    routed: Routed[OpenStream]
    events: AsyncIterator[bytes]


class Pipeline:
    def __init__(self, authenticator: Authenticator, router: Router, request_timeout: float) -> None:
        self._auth = authenticator
        self._router = router
        self._timeout = request_timeout

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """First stage, run by the API before the body is even read."""
        return self._auth.authenticate(headers)

    def _admit(self, request: ApiRequest) -> None:
        assert request.principal is not None, "authenticate() runs first"
        self._router.chain(request.model)  # unknown model: 404 before anything else happens
        self._auth.check_model(request.principal, request.model)
        request.deadline = asyncio.get_running_loop().time() + request_timeout(request.headers, self._timeout)

    async def chat(self, request: ApiRequest) -> Routed[JsonReply]:
        self._admit(request)
        return await self._router.chat(request)

    async def embeddings(self, request: ApiRequest) -> Routed[JsonReply]:
        self._admit(request)
        return await self._router.embeddings(request)

    async def chat_stream(self, request: ApiRequest) -> StreamResult:
        self._admit(request)
        routed = await self._router.stream(request)
        return StreamResult(routed, self._relay(routed))

    async def _relay(self, routed: Routed[OpenStream]) -> AsyncIterator[bytes]:
        """The client's events. Past the first byte a failure is an error event, never a clean end."""
        stream = routed.reply
        try:
            yield stream.first
            async for event in stream.rest:
                yield event
        except UpstreamFailure as failure:
            routed.attempts[-1].failure = failure  # recorded for the trace: the served attempt broke
            yield stream_error_event(failure.to_client_error(routed.deployment.id))
        finally:
            await stream.reply.aclose()
