"""Runs a request's attempts over its model group and fallback groups until one succeeds.

For each group of the chain (the request's model, then `fallbacks`), the router tries the group's
deployments in the order its strategy gives, skipping those whose breaker is open, that are cooling
down after a 429, that are at capacity (their `rpm`/`tpm`), or whose context window the prompt
cannot fit (`admission.py` decides who may be tried). A failure is classified by `classify` (one
table): the client's own fault ends the request at once (or, for a context-length or content-policy
error, moves it to that fallback chain); anything else moves on to the next fresh deployment at
once, then to the next group of the chain; only in the chain's last group, once no fresh deployment
is left, does it retry a failed one after a backoff (Retry-After first): failing over beats
waiting. Retries are at most `num_retries` per request and never wait past the deadline. When
nothing in the chain can be tried at all, the answer is an immediate 503 naming what is down, or a
429 when every deployment is merely at capacity (`outcome.py`).

Everything that happens is recorded on the request as values: `request.attempts`, and decisions
named `lockgate.retry`, `lockgate.fallback`, `lockgate.cooldown`, `lockgate.skipped` and
`lockgate.breaker.<state>`; breaker transitions also go to `breakers.listeners`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from gateway.config.runtime import Deployment, RuntimeConfig
from gateway.context import ApiRequest, Attempt, upstream_trace
from gateway.errors import (
    GatewayError,
    ModelNotFound,
    UpstreamFailure,
)
from gateway.log_throttle import ThrottledWarning
from gateway.providers import Providers
from gateway.providers.base import JsonReply, Provider, UpstreamCall
from gateway.routing import operations
from gateway.routing.admission import Admission, record_transition, skip
from gateway.routing.backoff import Backoff, pick_retry
from gateway.routing.breakers import Breakers, BreakerSettings
from gateway.routing.capacity import Capacity, Ticket
from gateway.routing.classify import Verdict, classify
from gateway.routing.cooldowns import Cooldowns, InMemoryCooldowns
from gateway.routing.outcome import Down, exhausted, with_attempts
from gateway.routing.strategies import DeploymentStats, order
from gateway.routing.streams import OpenStream, TrackedStream
from gateway.routing.windows import ContextWindows, TooLong, check_prompt

T = TypeVar("T")
log = logging.getLogger("lockgate.routing")
Chains = dict[str, tuple[str, ...]]

__all__ = ["OpenStream", "Routed", "Router"]


@dataclass(slots=True)
class Routed(Generic[T]):
    deployment: Deployment
    reply: T
    attempts: list[Attempt] = field(default_factory=list)


class _SwitchChain(Exception):
    """A context-length or content-policy error: continue on that fallback chain."""

    def __init__(self, kind: str, error: GatewayError) -> None:
        self.kind = kind
        self.error = error


class Router:
    def __init__(
        self,
        config: RuntimeConfig,
        providers: Providers,
        *,
        cooldowns: Cooldowns | None = None,
        breakers: Breakers | None = None,
        capacity: Capacity | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = config.router
        self._groups = config.groups
        self._fallbacks: Chains = dict(settings.fallbacks)
        self._window_fallbacks: Chains = dict(settings.context_window_fallbacks)
        self._policy_fallbacks: Chains = dict(settings.content_policy_fallbacks)
        self._strategy = settings.strategy
        self._strategies = dict(settings.group_strategies)
        self._num_retries = settings.num_retries
        self._cooldown_time = settings.cooldown_time
        self._backoff = Backoff(settings.retry_backoff, settings.max_backoff, settings.min_retry_wait)
        self._providers = providers
        self._random = rng or random.Random()
        self._warn_cooldown = ThrottledWarning(log)  # a store outage would log it for every 429
        self.cooldowns: Cooldowns = cooldowns or InMemoryCooldowns()
        self.breakers = breakers or Breakers(
            BreakerSettings(
                failure_threshold=settings.breaker_threshold,
                reset_timeout=settings.breaker_reset,
                enabled=settings.breakers_enabled,
                probe_timeout=settings.timeout,
            )
        )
        self.stats = DeploymentStats()
        self._admission = Admission(self.breakers, self.cooldowns, capacity)
        # Windows matter only where a prompt can be sent elsewhere for being too long.
        sized = {g for source, targets in settings.context_window_fallbacks for g in (source, *targets)}
        self._windows = ContextWindows(
            d for g in sized if g in self._groups for d in self._groups[g].deployments
        )

    def knows(self, model: str) -> bool:
        return model in self._groups

    def primary(self, model: str) -> Deployment:
        """The group's first deployment: names a request the gateway answered itself (a held reply)."""
        return self._groups[model].deployments[0]

    def chain(self, model: str) -> list[str]:
        """The request's group, then its fallback groups, in order."""
        if model not in self._groups:
            raise ModelNotFound(
                f"The model '{model}' does not exist on this gateway. GET /v1/models lists the available ones.",
                param="model",
            )
        return [model, *self._fallbacks.get(model, ())]

    async def chat(self, request: ApiRequest) -> Routed[JsonReply]:
        return await self._run(request, operations.chat)

    async def embeddings(self, request: ApiRequest) -> Routed[JsonReply]:
        return await self._run(request, operations.embeddings)

    async def stream(self, request: ApiRequest) -> Routed[OpenStream]:
        return await self._run(request, operations.open_stream)

    # ------------------------------------------------------------------ the attempt loop

    async def _run(
        self, request: ApiRequest, operation: Callable[[Provider, UpstreamCall], Awaitable[T]]
    ) -> Routed[T]:
        chain = self.chain(request.model)
        down: dict[str, Down] = {}
        switched: set[str] = set()
        too_long = self._prompt_tokens_over_window(request)
        if too_long is not None and too_long.skip_primary:
            # Straight to the context-window fallback: the small model is not called at all.
            chain = self._switch(request, "context_window", chain[0], switched, too_long.tokens)
        index = 0
        while index < len(chain):
            group = chain[index]
            try:
                last = index == len(chain) - 1
                routed = await self._run_group(request, group, operation, down, too_long, last)
            except _SwitchChain as switch:
                if switch.kind in switched:
                    raise switch.error from None  # the fallback chain hit the same wall
                chain = self._switch(request, switch.kind, group, switched, None)
                index = 0
                continue
            if routed is not None:
                return routed
            index += 1
            if index < len(chain):
                request.decide(
                    "lockgate.fallback", from_group=group, to_group=chain[index], reason="exhausted"
                )
        raise exhausted(request, down, too_long)

    def _switch(
        self, request: ApiRequest, kind: str, group: str, switched: set[str], tokens: int | None
    ) -> list[str]:
        chains = self._window_fallbacks if kind == "context_window" else self._policy_fallbacks
        targets = list(chains.get(request.model, ()))
        switched.add(kind)
        if targets:
            attrs: dict[str, str | int] = {"from_group": group, "to_group": targets[0], "reason": kind}
            if tokens is not None:
                attrs["estimated_prompt_tokens"] = tokens
            request.decide("lockgate.fallback", **attrs)
        return targets

    async def _run_group(
        self,
        request: ApiRequest,
        group: str,
        operation: Callable[[Provider, UpstreamCall], Awaitable[T]],
        down: dict[str, Down],
        too_long: TooLong | None,
        may_wait: bool,
    ) -> Routed[T] | None:
        loop = asyncio.get_running_loop()
        deployments = self._groups[group].deployments
        strategy = self._strategies.get(group, self._strategy)
        admit = self._admission
        # Deployments this request saw fail, with the failure; and those it must not retry.
        failed: dict[str, UpstreamFailure] = {}
        excluded: set[str] = set(too_long.small) if too_long is not None else set()
        retries = 0
        while True:
            remaining = request.deadline - loop.time()
            if remaining <= 0:
                return None
            cooling = await admit.cooling(deployments) if self.cooldowns.maybe_active() else {}
            # Not yet failed, not excluded, not cooling, and not already found down by this request.
            fresh: Sequence[Deployment] = deployments
            if failed or excluded or cooling or down:
                fresh = [
                    d
                    for d in deployments
                    if d.id not in failed
                    and d.id not in excluded
                    and d.id not in cooling
                    and d.id not in down
                ]
            for deployment_id, until in cooling.items():
                if deployment_id not in failed and deployment_id not in down:
                    skip(request, down, deployment_id, "cooling down after a rate limit", until)
            ordered = order(strategy, fresh, self.stats, self._random)
            deployment = admit.first(request, ordered, down)
            ticket: Ticket | None = None
            if deployment is not None and deployment.id in admit.limited:
                deployment, ticket = await admit.take_capacity(request, ordered, deployment, down)
            if deployment is None:
                if not may_wait or retries >= self._num_retries:
                    return None
                picked = pick_retry(
                    self._backoff, self._random, request, deployments, failed, excluded | admit.open_breakers(deployments),
                    cooling, retries + 1, loop,
                )
                if picked is None:
                    return None
                deployment, wait = picked
                retries += 1
                failure = failed[deployment.id]
                attrs: dict[str, str | int | float] = {
                    "deployment": deployment.id,
                    "retry": retries,
                    "wait_s": round(wait, 4),
                    "reason": classify(failure).reason,
                }
                if failure.retry_after is not None:
                    attrs["retry_after_s"] = failure.retry_after
                request.decide("lockgate.retry", **attrs)
                await asyncio.sleep(wait)
                remaining = request.deadline - loop.time()
                if remaining <= 0 or admit.first(request, [deployment], down) is None:
                    continue
                if deployment.id in admit.limited:
                    admitted, ticket = await admit.take_capacity(request, [deployment], deployment, down)
                    if admitted is None:
                        continue
            result = await self._attempt(request, deployment, operation, remaining, failed, excluded, ticket, loop)
            if result is not None:
                return result

    async def _attempt(
        self,
        request: ApiRequest,
        deployment: Deployment,
        operation: Callable[[Provider, UpstreamCall], Awaitable[T]],
        remaining: float,
        failed: dict[str, UpstreamFailure],
        excluded: set[str],
        ticket: Ticket | None,
        loop: asyncio.AbstractEventLoop,
    ) -> Routed[T] | None:
        span_id, traceparent = upstream_trace(request.trace)
        call = UpstreamCall(
            deployment=deployment,
            body=request.body,
            raw=request.raw,
            stream=request.stream,
            include_usage=request.include_usage,
            timeout=min(deployment.timeouts.total, remaining),
            traceparent=traceparent,
        )
        attempt = Attempt(deployment, time.time(), span_id=span_id)
        request.attempts.append(attempt)
        stats = self.stats
        stats.started(deployment.id)
        t0 = loop.time()
        try:
            reply = await operation(self._providers.for_deployment(deployment), call)
        except UpstreamFailure as failure:
            stats.ended(deployment.id)
            if ticket is not None:
                ticket.settle(None, served=False)
            attempt.duration, attempt.failure = loop.time() - t0, failure
            verdict = classify(failure)
            await self._failed(request, deployment, failure, verdict, attempt.duration, deployment.id in failed)
            if verdict.client_fault:
                self._client_fault(request, deployment, failure, verdict)
            failed[deployment.id] = failure
            if not verdict.retry_same:
                excluded.add(deployment.id)
            return None
        except BaseException:
            stats.ended(deployment.id)
            self.breakers.released(deployment.id)
            if ticket is not None:
                ticket.settle(None, served=True)
            raise
        attempt.duration = loop.time() - t0
        if isinstance(reply, OpenStream):
            tracked = cast(T, self._track(request, deployment, attempt, reply, t0, ticket, loop))
            return Routed(deployment, tracked, request.attempts)
        stats.ended(deployment.id)
        stats.observe(deployment.id, attempt.duration)
        attempt.summary = getattr(reply, "summary", None)
        if ticket is not None:
            ticket.settle(attempt.summary.usage if attempt.summary else None, served=True)
        self._succeeded(request, deployment)
        return Routed(deployment, reply, request.attempts)

    def _client_fault(
        self, request: ApiRequest, deployment: Deployment, failure: UpstreamFailure, verdict: Verdict
    ) -> None:
        if verdict.fallback is not None:
            chains = (
                self._window_fallbacks if verdict.fallback == "context_window" else self._policy_fallbacks
            )
            if request.model in chains:
                error = with_attempts(failure.to_client_error(deployment.id), request.attempts)
                raise _SwitchChain(verdict.fallback, error)
        raise with_attempts(failure.to_client_error(deployment.id), request.attempts) from None

    async def _failed(
        self,
        request: ApiRequest,
        deployment: Deployment,
        failure: UpstreamFailure,
        verdict: Verdict,
        elapsed: float,
        again: bool,
    ) -> None:
        """Record a failed attempt; `again`: this request had already failed on this deployment."""
        if verdict.cooldown:
            seconds = failure.retry_after if failure.retry_after is not None else self._cooldown_time
            try:
                await self.cooldowns.start(deployment.id, seconds)
            except Exception:  # same: the 429 is still handled for this request
                self._warn_cooldown("cannot record a cooldown for %s", deployment.id, exc_info=True)
            request.decide("lockgate.cooldown", deployment=deployment.id, seconds=round(seconds, 4))
        if failure.kind == "timeout":
            self.stats.observe(deployment.id, elapsed)  # a slow deployment must look slow to latency routing
        # A retry of the same request failing again is not new evidence against the deployment: counted,
        # one request that its upstream answers with a 500 every time (a malformed body a buggy server
        # chokes on) opened the breaker alone, after its third attempt, for every client (found by
        # sending random malformed requests). A half-open probe's failure still reopens it.
        if verdict.breaker and not (again and self.breakers.state(deployment.id) == "closed"):
            transition = self.breakers.failed(deployment.id, verdict.reason)
            if transition is not None:
                record_transition(request, transition)
        else:
            self.breakers.released(deployment.id)

    def _succeeded(self, request: ApiRequest, deployment: Deployment) -> None:
        transition = self.breakers.succeeded(deployment.id)
        if transition is not None:
            record_transition(request, transition)

    def _track(
        self,
        request: ApiRequest,
        deployment: Deployment,
        attempt: Attempt,
        opened: OpenStream,
        t0: float,
        ticket: Ticket | None,
        loop: asyncio.AbstractEventLoop,
    ) -> OpenStream:
        """Hand the stream on; its end reports to the breaker, the stats and the attempt."""
        summary = opened.summary
        attempt.summary = summary
        self.stats.observe(deployment.id, summary.time_to_first_chunk or attempt.duration)

        def on_end(failure: UpstreamFailure | None, abandoned: bool) -> None:
            self.stats.ended(deployment.id)
            attempt.duration = loop.time() - t0
            if ticket is not None:
                ticket.settle(summary.usage, served=True)
            if failure is not None:
                attempt.failure = failure
                verdict = classify(failure)
                request.decide("lockgate.stream.failed", deployment=deployment.id, reason=verdict.reason)
                transition = self.breakers.failed(deployment.id, verdict.reason) if verdict.breaker else None
                if transition is not None:
                    record_transition(request, transition)
            elif abandoned:
                request.decide("lockgate.stream.abandoned", deployment=deployment.id)
                self.breakers.released(deployment.id)
            else:
                self._succeeded(request, deployment)

        tracked = TrackedStream(opened.reply, opened.rest, on_end)
        return OpenStream(opened.first, aiter(tracked), tracked)

    # ------------------------------------------------------------------ context windows

    def _prompt_tokens_over_window(self, request: ApiRequest) -> TooLong | None:
        """Which deployments the prompt is too long for, if any (only where a fallback can take it)."""
        if request.model not in self._window_fallbacks or request.operation != "chat":
            return None
        chain = [request.model, *self._window_fallbacks[request.model]]
        return check_prompt(self._windows, self._groups, chain, request.raw, request.body)

