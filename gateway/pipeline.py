"""A request's life, in order, as plain awaits. The stage order lives here and nothing else.

    authenticate -> check model access -> pre-call policies (deny, redact, pause, re-attach to a hold)
      -> reserve budget and rate limits -> route: attempts, fallbacks, breakers -> provider call
      -> settle budget -> post-call policies / hold for approval -> respond

Every stage records what it decided on the `ApiRequest`; the telemetry layer turns that into spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.auth import Authenticator
from gateway.budgets.gate import BudgetGate, Hold
from gateway.config.runtime import Principal
from gateway.context import ApiRequest
from gateway.errors import UpstreamFailure, stream_error_event
from gateway.policies.stage import PolicyStage
from gateway.providers.base import JsonReply, Summary
from gateway.routing.deadline import request_timeout
from gateway.routing.router import OpenStream, Routed, Router
from gateway.shielded import shielded

T = TypeVar("T")


async def _nothing_to_close() -> None:
    return None


@dataclass(slots=True)
class StreamResult:
    routed: Routed[OpenStream] | Routed[None]
    events: AsyncIterator[bytes]
    # Releases the upstream and settles the budget; idempotent. The response calls it when it ends,
    # so a client that leaves before the first event is relayed still frees what the stream holds.
    close: Callable[[], Awaitable[None]] = _nothing_to_close


class _StreamEnd:
    """Runs a served stream's cleanup exactly once, from whichever side ends first."""

    __slots__ = ("_budgets", "_done", "_hold", "_request", "_routed")

    def __init__(self, routed: Routed[OpenStream], request: ApiRequest, budgets: BudgetGate | None, hold: Hold | None):
        self._routed, self._request, self._budgets, self._hold = routed, request, budgets, hold
        self._done = False

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        stream = self._routed.reply
        try:
            await stream.reply.aclose()
        finally:
            if self._budgets is not None and self._hold is not None:
                # Settle what was used (a cut stream without usage: the reservation). Shielded so a
                # client that hangs up cannot cancel the settlement half way.
                usage = stream.summary.usage
                await shielded(self._budgets.settle(self._request, self._hold, self._routed.deployment, usage))


class Pipeline:
    def __init__(
        self,
        authenticator: Authenticator,
        router: Router,
        request_timeout: float,
        budgets: BudgetGate | None = None,
        policies: PolicyStage | None = None,
    ) -> None:
        self._auth = authenticator
        self._router = router
        self._timeout = request_timeout
        self._budgets = budgets
        self._policies = policies

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
        if self._policies is not None:
            early = await self._policies.before_call(request)
            if early is not None:
                return self._answered(request, JsonReply(await early.json(), Summary()))
        hold = await self._reserve(request)
        try:
            routed = await self._router.chat(request)
        except BaseException:
            await self._settle(request, hold, None)  # nothing served: release the reservation
            raise
        await self._settle(request, hold, routed)
        if self._policies is not None:
            routed.reply = await self._policies.after_json(request, routed.reply, routed.deployment.id)
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
        if self._policies is not None:
            early = await self._policies.before_call(request)
            if early is not None:
                return StreamResult(self._answered(request, None), early.stream())
        hold = await self._reserve(request)
        try:
            routed = await self._router.stream(request)
        except BaseException:
            await self._settle(request, hold, None)
            raise
        end = _StreamEnd(routed, request, self._budgets, hold)
        events = self._relay(routed, end)
        if self._policies is not None:
            events = self._policies.filter_stream(request, events, routed.deployment.id, routed.reply.summary)
        return StreamResult(routed, events, end)

    def _answered(self, request: ApiRequest, reply: T) -> Routed[T]:
        """A request the policies answered without a model call (a held response, a pause): 0 attempts."""
        return Routed(self._router.primary(request.model), reply, [])

    async def _relay(self, routed: Routed[OpenStream], end: _StreamEnd) -> AsyncIterator[bytes]:
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
            await end()
