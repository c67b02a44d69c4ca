"""Records audit entries and reads, filters and verifies them.

Recording never fails the action it describes when the store is down only if the caller says so:
admin actions are refused when they cannot be audited (their change would be in the same store
anyway), while hot-path events (budget refusals, policy denials and holds, session tool events) are
recorded off the request path and a failure is logged, never raised.

Hot-path entries wait in one bounded queue that a single writer drains in batches, one store round
trip per batch (`Store.audit_append_many`). One task and one append per entry, as before, let a
refusal storm (an agent retrying a capped key in a loop) pile up thousands of waiting tasks, each
serialised behind the chain's lock: memory grew without bound and the log fell seconds behind
(bench/soak.py). Past `max_pending` entries, new ones are dropped, counted and logged: the request
path never waits for the audit log, and a storm cannot exhaust the gateway's memory. Entries the
caller marks `fold` (refusals, denials) are folded when they repeat (`folding.py`), so a storm cannot
exhaust the store's either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict
from typing import Any

from gateway.audit.folding import RepeatFolder
from gateway.log_throttle import ThrottledWarning
from gateway.store import AuditEntry, AuditRecord, Store, StoreUnavailable
from gateway.store.chain import PRUNED, ChainWalk, Verdict

log = logging.getLogger("lockgate.audit")

PAGE = 1_000  # entries read or deleted per store call
PRUNE_PAGES = 100  # a retention pass looks at most this many pages ahead (the next pass goes on)


class AuditTrail:
    def __init__(self, store: Store, max_pending: int = 10_000, batch: int = 500, fold_window: float = 0.0) -> None:
        self._store = store
        self._folder = RepeatFolder(fold_window, self._queue)
        self._pending: deque[AuditEntry] = deque()
        self._max_pending = max_pending
        self._batch = batch
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0  # entries never written: the queue was full, or the store failed
        self._warn_lost = ThrottledWarning(log)  # a storm would otherwise log a line per entry

    async def record(
        self, actor: str, action: str, target: str, reason: str = "", details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> AuditRecord:
        """Append now (awaited); `at`: when it happened, if earlier than now."""
        return await self._store.audit_append(actor, action, target, reason, details or {}, time.time() if at is None else at)

    def record_later(
        self, actor: str, action: str, target: str, reason: str = "", details: dict[str, Any] | None = None,
        at: float | None = None, fold: bool = False,
    ) -> None:
        """Record off the request path, in order; a full queue or a store failure is logged, never raised.

        `at`: when it happened (epoch seconds), if earlier than now: a request's verdicts are queued
        when the request ends, which for a held response is after the reviewer's decision.
        `fold`: repeats of this entry within the fold window are counted into one entry (`folding.py`).
        """
        entry = (actor, action, target, reason, details or {}, time.time() if at is None else at)
        if not fold or self._folder.offer(entry):
            self._queue(entry)

    def _queue(self, entry: AuditEntry) -> None:
        if len(self._pending) >= self._max_pending:
            self._lost(1, f"more than {self._max_pending} entries are waiting to be written")
            return
        self._pending.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        pending = self._pending
        while pending:
            batch = [pending.popleft() for _ in range(min(self._batch, len(pending)))]
            try:
                await self._store.audit_append_many(batch)
            except StoreUnavailable as exc:
                self._lost(len(batch), str(exc))
            except Exception:  # a bug must not stop the audit of what comes next
                log.exception("writing %d audit entries failed", len(batch))
                self._lost(len(batch), "an unexpected error (logged above)")

    def _lost(self, count: int, why: str) -> None:
        self.dropped += count
        self._warn_lost("audit entries not recorded (%d): %s", count, why)

    async def drain(self) -> None:
        """Wait until every queued entry is written, folded repeats included (shutdown, and tests reading the log)."""
        self._folder.flush()
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def prune(self, before: float, why: str) -> int:
        """Retention: delete the oldest entries dated before `before`, up to the first newer one. First
        an `audit.pruned` entry says how far, so verify can tell retention from tampering. How many."""
        through = await self._last_due(before)
        if not through:
            return 0
        await self.record("lockgate", PRUNED, "audit", why, {"through_seq": through, "before": before})
        deleted = 0
        while step := await self._store.audit_prune(through, PAGE):
            deleted += step
            await asyncio.sleep(0)  # a long backlog: let requests' store calls in between steps
        return deleted

    async def _last_due(self, before: float) -> int:
        """The last entry of the log's oldest run dated before `before` (0: none). Entries are in time
        order but for a few dated a little earlier (a verdict queued at the request's end): stopping
        at the first newer one never deletes an entry within the retention."""
        cursor, _ = await self._store.audit_anchor()
        through = 0
        for _ in range(PRUNE_PAGES):
            batch = await self._store.audit_range(after_seq=cursor, limit=PAGE)
            for record in batch:
                if record.ts >= before:
                    return through
                through = record.seq
            if len(batch) < PAGE:
                return through
            cursor = batch[-1].seq
        return through  # the next pass goes on from there

    async def query(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = after_seq
        while len(out) < limit:
            batch = await self._store.audit_range(after_seq=cursor, limit=PAGE)
            if not batch:
                break
            for record in batch:
                if _matches(record, action, actor, target, since, until):
                    out.append(asdict(record))
                    if len(out) >= limit:
                        break
            cursor = batch[-1].seq
        return out

    async def verify(self) -> Verdict:
        """Check the whole chain, a thousand entries at a time (never the whole log in memory)."""
        anchor = await self._store.audit_anchor()
        walk = ChainWalk(anchor)
        cursor = anchor[0]
        while True:
            batch = await self._store.audit_range(after_seq=cursor, limit=PAGE)
            broken = walk.feed(batch)
            if broken is not None:
                return broken
            if len(batch) < PAGE:
                break
            cursor = batch[-1].seq
        return walk.finish(await self._store.audit_head())


def _matches(
    record: AuditRecord, action: str | None, actor: str | None, target: str | None,
    since: float | None, until: float | None,
) -> bool:
    return (
        (action is None or record.action == action or record.action.startswith(action + "."))
        and (actor is None or record.actor == actor)
        and (target is None or record.target == target)
        and (since is None or record.ts >= since)
        and (until is None or record.ts < until)
    )
