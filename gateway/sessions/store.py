"""Where session state and tool events live: the `SessionStore` protocol and an in-memory one.

State is versioned per key: a write names the version it was based on (0 = the key must not exist)
and is refused with `VersionMismatch` when the key has moved on, so two writers never silently
overwrite each other. Versions come from one counter per session, so a key deleted and written
again never reuses a version a stale writer may still hold. Values and events are opaque JSON bytes here: the store never re-encodes them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

# Oldest events are dropped past this many per session: the log serves loop detection and audit of
# recent behaviour, not an unbounded history.
MAX_EVENTS_PER_SESSION = 1000


@dataclass(frozen=True, slots=True)
class Versioned:
    value: bytes
    version: int


class VersionMismatch(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"current version is {current}")
        self.current = current


class SessionStore(Protocol):
    async def state_all(self, session_id: str) -> dict[str, Versioned]: ...

    async def state_get(self, session_id: str, key: str) -> Versioned | None: ...

    async def state_put(self, session_id: str, key: str, value: bytes, expected_version: int) -> int:
        """Write `value` if `key` is at `expected_version`; return the new version."""
        ...

    async def state_delete(self, session_id: str, key: str, expected_version: int) -> None: ...

    async def events_append(self, session_id: str, events: list[bytes]) -> None: ...

    async def events_list(self, session_id: str, limit: int) -> list[bytes]:
        """The most recent `limit` events, oldest first."""
        ...


class MemorySessionStore:
    """One process, nothing durable: for tests of the API shape and configs without a store."""

    def __init__(self) -> None:
        self._state: dict[str, dict[str, Versioned]] = {}
        self._events: dict[str, deque[bytes]] = {}
        self._counters: dict[str, int] = {}

    async def state_all(self, session_id: str) -> dict[str, Versioned]:
        return dict(self._state.get(session_id, {}))

    async def state_get(self, session_id: str, key: str) -> Versioned | None:
        return self._state.get(session_id, {}).get(key)

    async def state_put(self, session_id: str, key: str, value: bytes, expected_version: int) -> int:
        entries = self._state.setdefault(session_id, {})
        current = entries.get(key)
        version = current.version if current else 0
        if version != expected_version:
            raise VersionMismatch(version)
        new = self._counters[session_id] = self._counters.get(session_id, 0) + 1
        entries[key] = Versioned(value, new)
        return new

    async def state_delete(self, session_id: str, key: str, expected_version: int) -> None:
        entries = self._state.get(session_id, {})
        current = entries.get(key)
        version = current.version if current else 0
        if version != expected_version:
            raise VersionMismatch(version)
        entries.pop(key, None)

    async def events_append(self, session_id: str, events: list[bytes]) -> None:
        log = self._events.setdefault(session_id, deque(maxlen=MAX_EVENTS_PER_SESSION))
        log.extend(events)

    async def events_list(self, session_id: str, limit: int) -> list[bytes]:
        log = self._events.get(session_id, ())
        return list(log)[-limit:] if limit else []
