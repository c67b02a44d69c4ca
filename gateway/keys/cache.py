"""The hot path's view of virtual keys: a short-TTL cache in front of the store.

A request with a key the config does not know is resolved here: from the cache while the entry is
fresh (`ttl` seconds), otherwise from the store (one lookup, shared by concurrent requests for the
same key). A revocation therefore reaches every replica within `ttl` seconds. Unknown keys are
cached briefly too, so a flood of bad keys cannot hammer the store. If the store is unreachable, a
key seen before keeps its last known state; a key never seen gets "unavailable" (503, not 401).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.config.runtime import Principal
from gateway.keys.records import NAMESPACE, principal_of, status
from gateway.store import Store, StoreUnavailable

Status = Literal["active", "revoked", "expired", "unknown", "unavailable"]
_MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class Entry:
    status: Status
    principal: Principal | None
    loaded_at: float


class KeyCache:
    def __init__(
        self,
        store: Store,
        ttl: float = 5.0,
        negative_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._loading: dict[str, asyncio.Future[Entry]] = {}

    def peek(self, digest: str) -> Entry | None:
        """The cached entry, fresh or not (the resolver refreshes stale ones before the request)."""
        return self._entries.get(digest)

    def is_fresh(self, digest: str) -> bool:
        entry = self._entries.get(digest)
        if entry is None:
            return False
        ttl = self._ttl if entry.status in ("active", "revoked", "expired") else self._negative_ttl
        return self._clock() - entry.loaded_at < ttl

    def invalidate(self, digest: str) -> None:
        self._entries.pop(digest, None)

    async def load(self, digest: str) -> Entry:
        """Fetch from the store, once for all concurrent callers asking for the same key."""
        pending = self._loading.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            entry = await self._fetch(digest)
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[digest]

    async def _fetch(self, digest: str) -> Entry:
        now = self._clock()
        try:
            doc = await self._store.doc_get(NAMESPACE, digest, time.time())
        except StoreUnavailable:
            previous = self._entries.get(digest)
            if previous is not None and previous.status != "unavailable":
                # Keep serving what we last knew; retry the store after a short pause.
                entry = Entry(previous.status, previous.principal, now - self._ttl + self._negative_ttl)
            else:
                entry = Entry("unavailable", None, now)
            self._put(digest, entry)
            return entry
        if doc is None:
            entry = Entry("unknown", None, now)
        else:
            state: Status = status(doc.value, time.time())  # type: ignore[assignment]
            entry = Entry(state, principal_of(doc.value), now)
        self._put(digest, entry)
        return entry

    def _put(self, digest: str, entry: Entry) -> None:
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()  # crude but bounded; entries reload on demand
        self._entries[digest] = entry
