"""Records audit entries and reads, filters and verifies them.

Recording never fails the action it describes when the store is down only if the caller says so:
admin actions are refused when they cannot be audited (their change would be in the same store
anyway), while hot-path events (budget refusals) are recorded off the request path and a failure is
logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from gateway.store import AuditRecord, Store, StoreUnavailable
from gateway.store.chain import Verdict, verify

log = logging.getLogger("lockgate.audit")


class AuditTrail:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._background: set[asyncio.Task[None]] = set()

    async def record(
        self, actor: str, action: str, target: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> AuditRecord:
        return await self._store.audit_append(actor, action, target, reason, details or {}, time.time())

    def record_later(
        self, actor: str, action: str, target: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> None:
        """Record off the request path; a store failure is logged, never raised."""

        async def run() -> None:
            try:
                await self.record(actor, action, target, reason, details)
            except StoreUnavailable as exc:
                log.warning("audit entry %s on %s not recorded: %s", action, target, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background entries (shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

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
            batch = await self._store.audit_range(after_seq=cursor, limit=1000)
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
        records: list[AuditRecord] = []
        cursor = 0
        while True:
            batch = await self._store.audit_range(after_seq=cursor, limit=1000)
            if not batch:
                break
            records.extend(batch)
            cursor = batch[-1].seq
            if len(batch) < 1000:
                break
        return verify(records, await self._store.audit_head())


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
