"""Which deployment of a group may be tried now: breakers, shared cooldowns and capacity.

The router hands over a group's candidates in its strategy's order; `first` returns the first one its
breaker lets through, and `take_capacity` makes sure it has room this minute (one store call, only
for deployments with `rpm`/`tpm`), moving on down the order when it has not. Every deployment passed
over is noted in the request's `down` map (what the client is told if nothing is left) and as a
`lockgate.skipped` decision; breaker transitions become `lockgate.breaker.<state>` decisions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from gateway.config.runtime import Deployment
from gateway.context import ApiRequest
from gateway.log_throttle import ThrottledWarning
from gateway.routing.breakers import Breakers, BreakerTransition
from gateway.routing.capacity import Capacity, Full, Ticket
from gateway.routing.cooldowns import Cooldowns
from gateway.routing.outcome import Down

log = logging.getLogger("lockgate.routing")


class Admission:
    def __init__(self, breakers: Breakers, cooldowns: Cooldowns, capacity: Capacity | None) -> None:
        self._breakers = breakers
        self._cooldowns = cooldowns
        self._capacity = capacity
        # Deployments with rpm/tpm: only these cost a store call per attempt. Without a store, none.
        self.limited = capacity.limited if capacity is not None else frozenset()
        self._warn_cooldowns = ThrottledWarning(log)  # a store outage would log it for every request

    async def cooling(self, deployments: Sequence[Deployment]) -> dict[str, float]:
        try:
            return await self._cooldowns.active([d.id for d in deployments])
        except Exception:  # a shared store that is down must not take routing down with it
            self._warn_cooldowns("cooldowns unavailable; routing as if nothing were cooling down", exc_info=True)
            return {}

    def open_breakers(self, deployments: Sequence[Deployment]) -> set[str]:
        return {d.id for d in deployments if self._breakers.state(d.id) == "open"}

    def first(self, request: ApiRequest, candidates: Sequence[Deployment], down: dict[str, Down]) -> Deployment | None:
        """The first candidate whose breaker lets an attempt through; the others are noted as down."""
        breakers = self._breakers
        for deployment in candidates:
            admission = breakers.admit(deployment.id)
            if admission.transition is not None:
                record_transition(request, admission.transition)
            if admission.allowed:
                return deployment
            reason = "circuit breaker open" if breakers.state(deployment.id) == "open" else "probe in flight"
            skip(request, down, deployment.id, reason, admission.until)
        return None

    async def take_capacity(
        self, request: ApiRequest, candidates: Sequence[Deployment], admitted: Deployment, down: dict[str, Down]
    ) -> tuple[Deployment | None, Ticket | None]:
        """`admitted` (by its breaker) if it has room this minute, else the next candidate that does."""
        assert self._capacity is not None
        deployment: Deployment | None = admitted
        while deployment is not None:
            if deployment.id not in self.limited:
                return deployment, None
            try:
                taken = await self._capacity.take(request, deployment)
            except BaseException:  # cancelled while asking the store: the breaker's probe slot is free again
                self._breakers.released(deployment.id)
                raise
            if not isinstance(taken, Full):
                return deployment, taken
            self._breakers.released(deployment.id)  # admitted, but not attempted: a probe slot is free again
            skip(request, down, deployment.id, taken.reason, taken.until, at_capacity=True)
            rest = candidates[next(i for i, d in enumerate(candidates) if d is deployment) + 1 :]
            deployment = self.first(request, rest, down)
        return None, None


def skip(
    request: ApiRequest, down: dict[str, Down], deployment_id: str, reason: str, until: float, at_capacity: bool = False
) -> None:
    down[deployment_id] = Down(reason, until, at_capacity)
    request.decide("lockgate.skipped", deployment=deployment_id, reason=reason, retry_in_s=round(until - time.time(), 3))


def record_transition(request: ApiRequest, transition: BreakerTransition) -> None:
    request.decide(
        f"lockgate.breaker.{transition.new}",
        deployment=transition.deployment_id,
        previous=transition.old,
        failures=transition.failures,
        reason=transition.reason,
    )
