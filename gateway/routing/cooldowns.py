"""Rate-limit cooldowns: a deployment that answered 429 sits out for its Retry-After.

The router talks to a `Cooldowns` through a tiny async interface so a shared implementation (the
store's, backed by Redis) can make every replica respect one replica's 429. Times are wall-clock
seconds since the epoch, because a shared store spans processes whose loop clocks differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol


class Cooldowns(Protocol):
    async def start(self, deployment_id: str, seconds: float) -> None:
        """Take the deployment out of rotation for `seconds` (extends, never shortens, a cooldown)."""
        ...

    async def active(self, deployment_ids: Iterable[str]) -> dict[str, float]:
        """Of these deployments, those cooling down now, with the epoch time each one ends."""
        ...

    def maybe_active(self) -> bool:
        """Cheap, no I/O: False promises that no deployment is cooling down right now.

        The router asks this first so that a request pays no store round trip while nothing is
        cooling down. A shared implementation keeps a local hint (e.g. the latest end time it has
        seen, refreshed by pub/sub) or returns True when it cannot promise anything.
        """
        ...


class InMemoryCooldowns:
    """One replica's cooldowns, in a dict. `clock` is injectable for tests of expiry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, float] = {}
        self._latest = 0.0
        self._clock = clock

    async def start(self, deployment_id: str, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        if until > self._until.get(deployment_id, 0.0):
            self._until[deployment_id] = until
            self._latest = max(self._latest, until)

    async def active(self, deployment_ids: Iterable[str]) -> dict[str, float]:
        now = self._clock()
        found: dict[str, float] = {}
        for deployment_id in deployment_ids:
            until = self._until.get(deployment_id)
            if until is None:
                continue
            if until > now:
                found[deployment_id] = until
            else:
                del self._until[deployment_id]
        return found

    def maybe_active(self) -> bool:
        return self._latest > self._clock()
