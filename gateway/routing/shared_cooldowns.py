"""Cooldowns kept in the shared store, so one replica's 429 keeps every replica away.

Writes go to the store at once (and to a local mirror, so this replica acts on its own 429 without
waiting). Reads are served from the mirror, which is refreshed from the store at most once every
`refresh` seconds: a request pays no store round trip unless the mirror is due, and then only one
request refreshes it while the others use what is known. Another replica's cooldown is therefore
seen within `refresh` seconds. A store that cannot be reached is treated as "nothing cooling down"
(fail open: routing must not stop because the store did), retried after one interval.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

from gateway.log_throttle import ThrottledWarning
from gateway.store import Store, StoreError

log = logging.getLogger("lockgate.routing")


class StoreCooldowns:
    def __init__(self, store: Store, refresh: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._refresh = refresh
        self._clock = clock
        self._mirror: dict[str, float] = {}
        self._latest = 0.0
        self._fetched_at = -math.inf
        self._fetching = False
        # A store outage would log these for every 429 and every refresh: once per interval, with a count.
        self._warn_share = ThrottledWarning(log)
        self._warn_read = ThrottledWarning(log)

    def _due(self, now: float) -> bool:
        return not self._fetching and now - self._fetched_at >= self._refresh

    async def start(self, deployment_id: str, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        if until > self._mirror.get(deployment_id, 0.0):
            self._mirror[deployment_id] = until
            self._latest = max(self._latest, until)
        try:
            await self._store.cooldown_set(deployment_id, until)
        except StoreError:
            self._warn_share("cannot share the cooldown of %s: the store is unavailable", deployment_id)

    async def active(self, deployment_ids: Iterable[str]) -> dict[str, float]:
        now = self._clock()
        if self._due(now):
            await self._fetch(now)
        mirror = self._mirror
        return {i: until for i in deployment_ids if (until := mirror.get(i, 0.0)) > now}

    def maybe_active(self) -> bool:
        now = self._clock()
        return self._latest > now or self._due(now)

    async def _fetch(self, now: float) -> None:
        self._fetching = True
        try:
            shared = await self._store.cooldowns(now)
        except StoreError:
            self._warn_read("cannot read shared cooldowns: the store is unavailable; using this replica's own")
            shared = {}
        finally:
            self._fetching = False
            self._fetched_at = now
        # Keep this replica's own cooldowns that the store may not show yet, then drop expired ones.
        merged = {i: u for i, u in self._mirror.items() if u > now}
        for deployment_id, until in shared.items():
            if until > merged.get(deployment_id, 0.0):
                merged[deployment_id] = until
        self._mirror = merged
        self._latest = max(merged.values(), default=0.0)
