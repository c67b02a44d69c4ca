"""Circuit breakers, one per deployment, in memory per replica. The only module importing aiobreaker.

aiobreaker keeps each breaker's state machine (consecutive failures open it; after the reset
timeout it goes half-open; a success closes it, a failure reopens it). Around it this module adds
what a gateway needs: the router asks `admit` before an attempt and reports the outcome after, so a
stream can report late; exactly one request is let through as the half-open probe; and every state
change is pushed, as a `BreakerTransition` value, to `listeners` (telemetry hooks in there), whether
or not a request is watching.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener, CircuitBreakerState

BreakerState = Literal["closed", "open", "half_open"]
_STATE_NAMES: dict[CircuitBreakerState, BreakerState] = {
    CircuitBreakerState.CLOSED: "closed",
    CircuitBreakerState.OPEN: "open",
    CircuitBreakerState.HALF_OPEN: "half_open",
}


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    enabled: bool = True
    # A half-open probe whose outcome never arrives (a lost request) is forgotten after this long.
    probe_timeout: float = 600.0


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    deployment_id: str
    old: BreakerState
    new: BreakerState
    # Epoch seconds.
    at: float
    # Consecutive failures counted when it happened, and the last failure's reason.
    failures: int
    reason: str


BreakerListener = Callable[[BreakerTransition], None]


@dataclass(frozen=True, slots=True)
class Admission:
    """May an attempt go to this deployment now?"""

    allowed: bool
    # This attempt is the half-open probe: its outcome closes or reopens the breaker.
    probe: bool = False
    # When refused: epoch seconds at which the deployment may be tried again.
    until: float = 0.0
    transition: BreakerTransition | None = None


ADMITTED = Admission(True)


class _Guard:
    """One deployment's breaker and the bookkeeping aiobreaker does not do."""

    __slots__ = ("breaker", "captured", "probe_since", "reason")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.probe_since: float | None = None
        self.reason = ""
        self.captured: BreakerTransition | None = None


class Breakers:
    """The registry: one breaker per deployment id, created on first use."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.listeners: list[BreakerListener] = []
        self._guards: dict[str, _Guard] = {}
        self._clock = clock
        self._timeout = timedelta(seconds=settings.reset_timeout)

    def _guard(self, deployment_id: str) -> _Guard:
        guard = self._guards.get(deployment_id)
        if guard is None:
            breaker = CircuitBreaker(
                fail_max=self.settings.failure_threshold,
                timeout_duration=self._timeout,
                name=deployment_id,
            )
            guard = _Guard(breaker)
            breaker.add_listener(_Relay(self, deployment_id, guard))
            self._guards[deployment_id] = guard
        return guard

    # ------------------------------------------------------------------ the router's calls

    def admit(self, deployment_id: str) -> Admission:
        if not self.settings.enabled:
            return ADMITTED
        guard = self._guards.get(deployment_id)
        if guard is None:
            return ADMITTED
        state = guard.breaker.current_state
        if state is CircuitBreakerState.CLOSED:
            return ADMITTED
        now = self._clock()
        if state is CircuitBreakerState.OPEN:
            remaining = _reopens_in(guard.breaker)
            if remaining > 0:
                return Admission(False, until=now + remaining)
            guard.captured = None
            guard.breaker.half_open()
            guard.probe_since = now
            return Admission(True, probe=True, transition=guard.captured)
        # Half-open: one probe at a time; the others keep away until it has answered.
        if guard.probe_since is not None and now - guard.probe_since < self.settings.probe_timeout:
            return Admission(False, until=now + min(self.settings.reset_timeout, 1.0))
        guard.probe_since = now
        return Admission(True, probe=True)

    def succeeded(self, deployment_id: str) -> BreakerTransition | None:
        guard = self._guards.get(deployment_id)
        if guard is None or not self.settings.enabled:
            return None
        breaker = guard.breaker
        state = breaker.current_state
        guard.probe_since = None
        if state is CircuitBreakerState.OPEN or (
            state is CircuitBreakerState.CLOSED and breaker.fail_counter == 0
        ):
            return None  # nothing to reset; or a late answer from before the breaker opened
        guard.captured = None
        breaker.call(_succeed)
        return guard.captured

    def failed(self, deployment_id: str, reason: str) -> BreakerTransition | None:
        if not self.settings.enabled:
            return None
        guard = self._guard(deployment_id)
        breaker = guard.breaker
        guard.probe_since = None
        if breaker.current_state is CircuitBreakerState.OPEN:
            return None  # already open: a late failure from before it opened changes nothing
        guard.reason = reason
        guard.captured = None
        try:
            breaker.call(_fail)
        except (_Failure, CircuitBreakerError):
            pass
        return guard.captured

    def released(self, deployment_id: str) -> None:
        """An attempt ended with no verdict on the deployment (client's fault, 429, cancelled)."""
        guard = self._guards.get(deployment_id)
        if guard is not None:
            guard.probe_since = None

    # ------------------------------------------------------------------ observing

    def state(self, deployment_id: str) -> BreakerState:
        guard = self._guards.get(deployment_id)
        if guard is None:
            return "closed"
        state = guard.breaker.current_state
        if state is CircuitBreakerState.OPEN and _reopens_in(guard.breaker) <= 0:
            return "half_open"  # due for its probe: the next request will make it so
        return _STATE_NAMES[state]

    def failures(self, deployment_id: str) -> int:
        guard = self._guards.get(deployment_id)
        return 0 if guard is None else int(guard.breaker.fail_counter)

    def _notify(self, transition: BreakerTransition, guard: _Guard) -> None:
        guard.captured = transition
        for listener in self.listeners:
            listener(transition)


class _Failure(Exception):
    """What the breaker is told a failed attempt raised."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Failure()


def _reopens_in(breaker: CircuitBreaker) -> float:
    opened_at: datetime | None = breaker._state_storage.opened_at
    if opened_at is None:
        return 0.0
    # aiobreaker stamps `opened_at` with utcnow(); compare in the same terms.
    now = datetime.utcnow()  # noqa: DTZ003
    return float((opened_at + breaker.timeout_duration - now).total_seconds())


class _Relay(CircuitBreakerListener):  # type: ignore[misc]
    """aiobreaker's listener: turns its state changes into `BreakerTransition` values."""

    def __init__(self, registry: Breakers, deployment_id: str, guard: _Guard) -> None:
        self._registry = registry
        self._id = deployment_id
        self._guard = guard

    def state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
        old_name = _STATE_NAMES[old.state] if old is not None else "closed"
        new_name = _STATE_NAMES[new.state]
        if old_name == new_name:
            return
        transition = BreakerTransition(
            deployment_id=self._id,
            old=old_name,
            new=new_name,
            at=self._registry._clock(),
            failures=int(breaker.fail_counter),
            reason=self._guard.reason,
        )
        self._registry._notify(transition, self._guard)
