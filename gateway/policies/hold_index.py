"""Which requests and sessions may have a hold to re-attach to, known without a store read.

Before every model call a request looks for a hold made for the same request (a client retry, a
re-send after a restart) or open on its session. Asking the store twice per request cost ~135 us of
CPU (SQLite through its thread; a round trip each on Redis) to find, nearly always, nothing. This
index keeps the keys of the two approval indexes (`approval-requests`, `approval-sessions`) in
memory, so the store is read only for a request whose fingerprint or session is listed.

- It is loaded on first use, so after a restart every stored hold is known before the first
  request is answered; then re-read at most once per `refresh` seconds, like pause states, by
  one request while the others go on with the previous listing.
- A hold made through this replica is listed at once (before its documents are written), so a
  retry here never misses it. One made through another replica sharing the store is seen within
  `refresh` seconds.
- When the listing may be incomplete (more entries than `limit`, or the store could not be read),
  every key counts as listed: the store is asked, as before the index existed.
- Listing both indexes every second would grow with the holds kept (a day's worth): instead every
  change to them bumps a marker document's version, and a refresh reads only the marker unless it
  moved, re-listing in full at most every `FULL_EVERY` seconds anyway (index entries that expire
  by themselves bump nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.log_throttle import ThrottledWarning
from gateway.store import Store, StoreError

log = logging.getLogger("lockgate.approvals")

BY_REQUEST = "approval-requests"
BY_SESSION = "approval-sessions"
# A document whose version moves whenever a hold is listed in or taken out of the indexes.
CHANGES, CHANGES_KEY = "approval-changes", "all"
FULL_EVERY = 60.0
# Seconds a hold made here stays listed regardless of the store listing (its writes are done by then).
_RECENT = 30.0


class HoldIndex:
    def __init__(self, store: Store, refresh: float = 1.0, limit: int = 20_000) -> None:
        self._store = store
        self._refresh = refresh
        self._limit = limit
        self._requests: set[str] = set()
        self._sessions: set[str] = set()
        # False until a complete listing was read: then everything may be held.
        self._complete = False
        self._read_at = -1e9
        self._lock = asyncio.Lock()
        self._warn_list = ThrottledWarning(log)  # an outage would log it on every refresh
        # Holds made here, kept for a while so a listing taken before their write cannot drop them.
        self._recent: list[tuple[float, str, str | None]] = []
        # The marker's version at the last full listing, and when that listing was taken.
        self._listed_version = -1
        self._listed_at = -1e9

    async def changed(self) -> None:
        """Tell every replica the indexes changed (after writing them): their next refresh re-lists."""
        try:
            await self._store.doc_put(CHANGES, CHANGES_KEY, {}, time.time())
        except StoreError as exc:  # the full listing every FULL_EVERY seconds still finds the change
            log.warning("cannot mark the approval indexes changed: %s", exc)

    def add(self, fingerprint: str, session_id: str | None) -> None:
        """A hold made through this replica: listed before its documents are written."""
        now = asyncio.get_running_loop().time()
        self._requests.add(fingerprint)
        if session_id:
            self._sessions.add(session_id)
        self._recent.append((now, fingerprint, session_id))

    def delivered(self, session_id: str, fingerprint: str) -> None:
        """The session's hold (made for `fingerprint`) was answered: its next requests go to the model."""
        self._recent = [r for r in self._recent if r[1:] != (fingerprint, session_id)]
        if not any(r[2] == session_id for r in self._recent):  # unless a newer hold here is being written
            self._sessions.discard(session_id)

    async def may_hold_request(self, fingerprint: str) -> bool:
        await self.refresh()
        return self.lists_request(fingerprint)

    async def may_hold_session(self, session_id: str) -> bool:
        await self.refresh()
        return self.lists_session(session_id)

    async def refresh(self) -> None:
        """Read the listing again if it is older than `refresh` seconds; the `lists_*` use it."""
        await self._load()

    def lists_requests(self) -> bool:
        """Whether any request may be held at all: if not, no fingerprint needs computing."""
        return not self._complete or bool(self._requests)

    def lists_request(self, fingerprint: str) -> bool:
        return not self._complete or fingerprint in self._requests

    def lists_session(self, session_id: str) -> bool:
        return not self._complete or session_id in self._sessions

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._read_at < self._refresh:
            return
        if self._lock.locked() and self._read_at > 0:
            return  # another request is refreshing: the last listing serves meanwhile, nobody queues
        async with self._lock:
            if loop.time() - self._read_at < self._refresh:
                return
            started = loop.time()
            try:
                now = time.time()
                marker = await self._store.doc_get(CHANGES, CHANGES_KEY, now)
                version = marker.version if marker is not None else 0
                if self._complete and version == self._listed_version and started - self._listed_at < FULL_EVERY:
                    self._read_at = loop.time()
                    return  # nothing changed since the last listing
                requests = await self._store.doc_list(BY_REQUEST, now, limit=self._limit)
                sessions = await self._store.doc_list(BY_SESSION, now, limit=self._limit)
            except StoreError as exc:
                # Ask the store per request (which raises as it did without the index) until it answers.
                self._warn_list("cannot list held requests from the store: %s", exc)
                self._complete = False
            else:
                self._complete = len(requests) < self._limit and len(sessions) < self._limit
                self._listed_version, self._listed_at = version, started
                self._requests = {d.key for d in requests}
                self._sessions = {d.key for d in sessions}
                # A hold made here while the listing was read may be missing from it.
                self._recent = [r for r in self._recent if r[0] >= started - _RECENT]
                for _, fingerprint, session_id in self._recent:
                    self._requests.add(fingerprint)
                    if session_id:
                        self._sessions.add(session_id)
            self._read_at = loop.time()
