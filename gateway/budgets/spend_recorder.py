"""Spend with nothing to enforce, recorded off the request path in batches.

A request under no budget and no rate limit still belongs in the spend report. Writing its ledger
entry inside the request cost a store transaction per request (measured with bench/run.py: about a
third of the gateway's streaming throughput on SQLite). Entries are buffered here and written in one
round trip per `interval`; a report flushes first, so what it shows is never behind this replica.
On a crash, at most one interval of report entries is lost; budgets never depend on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.log_throttle import ThrottledWarning
from gateway.store.base import JsonDict, LedgerAppend, Store, StoreUnavailable

log = logging.getLogger("lockgate.budgets")

# Entries kept while the store is unreachable; past this the oldest are dropped (and counted).
_MAX_PENDING = 50_000


class SpendRecorder:
    def __init__(self, store: Store, interval: float = 0.25) -> None:
        self._store = store
        self._interval = interval
        self._pending: list[LedgerAppend] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._warn_waiting = ThrottledWarning(log)  # an outage would log it at every flush (4 a second)

    def add(self, reservation_id: str, meta: JsonDict, charged: dict[str, int], now: float) -> None:
        """Queue one entry; never waits."""
        self._pending.append((reservation_id, meta, charged, now))
        if len(self._pending) > _MAX_PENDING:
            overflow = len(self._pending) - _MAX_PENDING
            del self._pending[:overflow]
            self.dropped += overflow

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def flush(self) -> None:
        """Write everything queued so far; on a store error the entries stay queued for the next try."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._store.ledger_append_many(batch)
            except StoreUnavailable as exc:
                self._pending[:0] = batch
                self._warn_waiting("spend ledger: %d entries wait for the store: %s", len(batch), exc)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
