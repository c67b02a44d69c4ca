"""How many holds await a reviewer's decision, counted from the store for the `lockgate.approval.pending` gauge.

Holds are made and decided on any replica, so the count comes from the store (the approvals it
lists as pending, expiring overdue ones on the way), not from what this replica saw. It is read at
most once per `min_interval` seconds however often it is asked: by a background loop every
`interval` seconds (for OTLP export) and before each Prometheus scrape (so a scrape is current).
Every replica reports the same store-wide figure: aggregate it with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.policies.approvals import LIST_SCAN, Approvals
from gateway.store import StoreError

log = logging.getLogger("lockgate.approvals")



class PendingHolds:
    def __init__(self, approvals: Approvals, publish: Callable[[int], None], min_interval: float = 1.0) -> None:
        self._approvals = approvals
        self._publish = publish
        self._min_interval = min_interval
        self._read_at = -1e9
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Count the pending holds and publish the figure, unless it was read less than `min_interval` ago."""
        async with self._lock:  # concurrent scrapes share one read
            loop = asyncio.get_running_loop()
            if loop.time() - self._read_at < self._min_interval:
                return
            try:
                pending = await self._approvals.list("pending", limit=LIST_SCAN)
            except StoreError as exc:  # the gauge keeps its last figure; the store's trouble is reported elsewhere
                log.debug("cannot count pending holds: %s", exc)
                return
            self._read_at = loop.time()
            self._publish(len(pending))

    def start(self, interval: float) -> None:
        """Refresh every `interval` seconds in the background until `aclose`."""

        async def run() -> None:
            while True:
                await self.refresh()
                await asyncio.sleep(interval)

        self._task = asyncio.create_task(run(), name="lockgate-pending-holds")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
