"""Pause and stop, per session or per key, set by operators through the admin API or the CLI.

A paused session's (or key's) requests are held until it is resumed; a stopped one's are refused.
The state lives in the store (`pauses/<session|key>:<name>`), so every replica sees it. To keep the
hot path free of store round trips, each replica reads the whole (small) list at most once per
`refresh` seconds (by one request, while the others go on with the states read last); a change
made through this replica applies at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.log_throttle import ThrottledWarning
from gateway.store import Store, StoreError

log = logging.getLogger("lockgate.pauses")

PAUSES = "pauses"


@dataclass(frozen=True, slots=True)
class PauseState:
    target: str  # "session:<id>" or "key:<name>"
    state: str  # "paused" or "stopped"
    by: str
    reason: str


class Pauses:
    def __init__(self, store: Store, refresh: float = 1.0) -> None:
        self._store = store
        self._refresh = refresh
        self._cache: dict[str, PauseState] = {}
        self._read_at = -1e9
        self._lock = asyncio.Lock()
        self._warn_read = ThrottledWarning(log)  # an outage would log it on every refresh
        # Requests this replica is holding, per target: shown to operators next to each pause.
        self.waiting: dict[str, int] = {}

    async def set(self, target: str, state: str, by: str, reason: str) -> PauseState:
        now = time.time()
        await self._store.doc_put(PAUSES, target, {"state": state, "by": by, "reason": reason, "at": now}, now)
        await self._store.audit_append(by, f"{target.split(':')[0]}.{state}", target, reason, {}, now)
        self._read_at = -1e9
        return PauseState(target, state, by, reason)

    async def resume(self, target: str, by: str, reason: str) -> bool:
        now = time.time()
        removed = await self._store.doc_delete(PAUSES, target)
        await self._store.audit_append(by, f"{target.split(':')[0]}.resume", target, reason, {}, now)
        self._read_at = -1e9
        return removed

    async def list(self) -> list[PauseState]:
        docs = await self._store.doc_list(PAUSES, time.time())
        return [_state(d.key, d.value) for d in docs]

    async def state_of(self, session_id: str | None, key: str | None, fresh: bool = False) -> PauseState | None:
        """A stop wins over a pause; a session's state over its key's."""
        await self._load(fresh)
        found = [self._cache.get(f"session:{session_id}") if session_id else None,
                 self._cache.get(f"key:{key}") if key else None]
        states = [s for s in found if s is not None]
        return next((s for s in states if s.state == "stopped"), states[0] if states else None)

    async def _load(self, fresh: bool) -> None:
        loop = asyncio.get_running_loop()
        if not fresh and loop.time() - self._read_at < self._refresh:
            return
        if not fresh and self._lock.locked() and self._read_at > 0:
            return  # another request is refreshing: the last states serve meanwhile, nobody queues
        async with self._lock:
            if not fresh and loop.time() - self._read_at < self._refresh:
                return
            try:
                self._cache = {s.target: s for s in await self.list()}
            except StoreError as exc:
                # Fail open: an unreachable store must not stop all traffic; keep the last known states.
                self._warn_read("cannot read pauses from the store: %s", exc)
            self._read_at = loop.time()


def _state(target: str, value: dict[str, Any]) -> PauseState:
    return PauseState(target, str(value.get("state")), str(value.get("by", "")), str(value.get("reason", "")))
