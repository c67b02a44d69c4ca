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
from gateway.budgets.gate import BudgetGate, Hold
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
    def __init__(
        self, authenticator: Authenticator, router: Router, request_timeout: float, budgets: BudgetGate | None = None
    ) -> None:
        self._auth = authenticator
        self._router = router
        self._timeout = request_timeout
        self._budgets = budgets

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """First stage, run by the API before the body is even read."""
        return self._auth.authenticate(headers)

    def _admit(self, request: ApiRequest) -> None:
        assert request.principal is not None, "authenticate() runs first"
        self._router.chain(request.model)  # unknown model: 404 before anything else happens
        self._auth.check_model(request.principal, request.model)
        request.deadline = asyncio.get_running_loop().time() + request_timeout(request.headers, self._timeout)

    async def _reserve(self, request: ApiRequest) -> Hold | None:
        """Budgets and rate limits: an upper bound of the cost is reserved before routing."""
        return await self._budgets.reserve(request) if self._budgets is not None else None

    async def _settle(self, request: ApiRequest, hold: Hold | None, routed: Routed[JsonReply] | None) -> None:
        if self._budgets is not None and hold is not None:
            usage = routed.reply.summary.usage if routed is not None else None
            await self._budgets.settle(request, hold, routed.deployment if routed else None, usage)

    async def chat(self, request: ApiRequest) -> Routed[JsonReply]:
        self._admit(request)
        hold = await self._reserve(request)
        try:
            routed = await self._router.chat(request)
        except BaseException:
            await self._settle(request, hold, None)  # nothing served: release the reservation
            raise
        await self._settle(request, hold, routed)
        return routed

    async def embeddings(self, request: ApiRequest) -> Routed[JsonReply]:
        self._admit(request)
        hold = await self._reserve(request)
        try:
            routed = await self._router.embeddings(request)
        except BaseException:
            await self._settle(request, hold, None)
            raise
        await self._settle(request, hold, routed)
        return routed

    async def chat_stream(self, request: ApiRequest) -> StreamResult:
        self._admit(request)
        hold = await self._reserve(request)
        try:
            routed = await self._router.stream(request)
        except BaseException:
            await self._settle(request, hold, None)
            raise
        return StreamResult(routed, self._relay(routed, request, hold))

    async def _relay(
        self, routed: Routed[OpenStream], request: ApiRequest | None = None, hold: Hold | None = None
    ) -> AsyncIterator[bytes]:
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
            if self._budgets is not None and hold is not None and request is not None:
                # Settle what was used (a cut stream without usage: the reservation). Shielded so a
                # client that hangs up cannot cancel the settlement half way.
                settle = self._budgets.settle(request, hold, routed.deployment, stream.summary.usage)
                await asyncio.shield(asyncio.ensure_future(settle))
