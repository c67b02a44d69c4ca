"""Runs a request's attempts over its model group and fallback groups, in order, until one succeeds.

Returns what happened as values (`Attempt`s) for the telemetry and the response headers. A failure
that is the client's own fault ends the request at once; any other moves on to the next deployment.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.config.runtime import Deployment, RuntimeConfig
from gateway.context import ApiRequest, Attempt
from gateway.errors import GatewayError, ModelNotFound, ServiceUnavailable, UpstreamFailure
from gateway.providers import Providers
from gateway.providers.base import JsonReply, Provider, StreamReply, Summary, UpstreamCall

T = TypeVar("T")


@dataclass(slots=True)
class Routed(Generic[T]):
    deployment: Deployment
    reply: T
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(slots=True)
class OpenStream:
    """A stream whose first event has arrived: nothing has reached the client yet."""

    first: bytes
    rest: AsyncIterator[bytes]
    reply: StreamReply

    @property
    def summary(self) -> Summary:
        return self.reply.summary


class Router:
    def __init__(self, config: RuntimeConfig, providers: Providers, rng: random.Random | None = None) -> None:
        self._groups = config.groups
        self._fallbacks = dict(config.router.fallbacks)
        self._providers = providers
        self._random = rng or random.Random()

    def knows(self, model: str) -> bool:
        return model in self._groups

    def chain(self, model: str) -> list[str]:
        """The request's group, then its fallback groups, in order."""
        if model not in self._groups:
            raise ModelNotFound(
                f"The model '{model}' does not exist on this gateway. GET /v1/models lists the available ones.",
                param="model",
            )
        return [model, *self._fallbacks.get(model, ())]

    def order(self, group: str) -> list[Deployment]:
        """The group's deployments in weighted-random order (LiteLLM's simple-shuffle)."""
        deployments = list(self._groups[group].deployments)
        if len(deployments) < 2:
            return deployments
        ordered = []
        while deployments:
            pick = self._random.choices(range(len(deployments)), weights=[d.weight for d in deployments])[0]
            ordered.append(deployments.pop(pick))
        return ordered

    async def chat(self, request: ApiRequest) -> Routed[JsonReply]:
        return await self._run(request, lambda provider, call: provider.chat(call))

    async def embeddings(self, request: ApiRequest) -> Routed[JsonReply]:
        return await self._run(request, lambda provider, call: provider.embeddings(call))

    async def stream(self, request: ApiRequest) -> Routed[OpenStream]:
        return await self._run(request, _open_stream)

    async def _run(
        self, request: ApiRequest, operation: Callable[[Provider, UpstreamCall], Awaitable[T]]
    ) -> Routed[T]:
        loop = asyncio.get_running_loop()
        attempts = request.attempts
        for group in self.chain(request.model):
            for deployment in self.order(group):
                remaining = request.deadline - loop.time()
                if remaining <= 0:
                    break
                call = UpstreamCall(
                    deployment=deployment,
                    body=request.body,
                    raw=request.raw,
                    stream=request.stream,
                    include_usage=request.include_usage,
                    timeout=min(deployment.timeouts.total, remaining),
                )
                attempt = Attempt(deployment, time.time())
                attempts.append(attempt)
                t0 = loop.time()
                try:
                    reply = await operation(self._providers.for_deployment(deployment), call)
                except UpstreamFailure as failure:
                    attempt.duration, attempt.failure = loop.time() - t0, failure
                    if failure.is_client_fault:
                        raise _with_attempts(failure.to_client_error(deployment.id), attempts) from None
                    continue
                attempt.duration = loop.time() - t0
                attempt.summary = getattr(reply, "summary", None)
                return Routed(deployment, reply, attempts)
        raise _with_attempts(_exhausted(request.model, attempts), attempts)


async def _open_stream(provider: Provider, call: UpstreamCall) -> OpenStream:
    reply = await provider.chat_stream(call)
    events = aiter(reply)
    try:
        first = await anext(events)
    except StopAsyncIteration:
        await reply.aclose()
        raise UpstreamFailure("stream_cut", "the stream ended before its first event") from None
    except BaseException:
        await reply.aclose()
        raise
    return OpenStream(first, events, reply)


def _exhausted(model: str, attempts: list[Attempt]) -> GatewayError:
    if not attempts:
        return ServiceUnavailable(f"No deployment of '{model}' could be tried before the request's deadline.")
    last = attempts[-1]
    assert last.failure is not None
    tried = ", ".join(f"{a.deployment.id} ({a.failure.kind if a.failure else 'ok'})" for a in attempts)
    error = last.failure.to_client_error(last.deployment.id)
    error.message = f"All {len(attempts)} attempts for '{model}' failed [{tried}]. Last: {error.message}"
    return error


def _with_attempts(error: GatewayError, attempts: list[Attempt]) -> GatewayError:
    error.headers["x-lockgate-attempts"] = str(len(attempts))
    return error
