"""Session state and tool events on the gateway's `Store`: what the SDK's session API serves.

State: one document per session (namespace `session_state`) holding every key with the version it
was last written at. A write is checked against the key's version (0 = must not exist) and then
committed with the store's compare-and-set on the whole document; a concurrent write to *another*
key of the session only makes the loop re-read and re-check, never lose anything. A key's version
is the document's version at its write, so versions never repeat within a session (a key deleted
and written again cannot be mistaken for the old one by a stale writer).

Events: the last `MAX_EVENTS` tool outcomes per session (namespace `session_events`), for loop
detection and for the SDK to read back; each is also appended to the audit trail off the request
path, without content.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.audit.trail import AuditTrail
from gateway.store import Doc, Store, VersionConflict

STATE_NS = "session_state"
EVENTS_NS = "session_events"
MAX_EVENTS = 200
# Compare-and-set rounds before giving up when other keys of the same session keep changing.
MAX_ROUNDS = 32
# What of a tool event goes into the audit trail: never arguments or results.
AUDITED = ("name", "call_id", "status", "error_type", "duration_ms", "trace_id", "span_id")


class VersionMismatch(Exception):
    """The key is not at the version the write was based on; `current` is where it is."""

    def __init__(self, current: int) -> None:
        super().__init__(f"current version is {current}")
        self.current = current


class SessionBusy(Exception):
    """Other writers kept changing the session for `MAX_ROUNDS` rounds."""


def _keys(doc: Doc | None) -> dict[str, dict[str, Any]]:
    return dict(doc.value.get("keys", {})) if doc else {}


class Sessions:
    def __init__(self, store: Store, audit: AuditTrail) -> None:
        self._store = store
        self._audit = audit

    async def state(self, session: str) -> dict[str, dict[str, Any]]:
        """Every key as `{"value": ..., "version": n}`."""
        return _keys(await self._store.doc_get(STATE_NS, session, time.time()))

    async def get(self, session: str, key: str) -> tuple[Any, int]:
        entry = (await self.state(session)).get(key)
        return (entry["value"], int(entry["version"])) if entry else (None, 0)

    async def put(self, session: str, key: str, value: Any, expected: int) -> int:
        return await self._change(session, key, expected, value, delete=False)

    async def delete(self, session: str, key: str, expected: int) -> None:
        await self._change(session, key, expected, None, delete=True)

    async def _change(self, session: str, key: str, expected: int, value: Any, *, delete: bool) -> int:
        for _ in range(MAX_ROUNDS):
            now = time.time()
            doc = await self._store.doc_get(STATE_NS, session, now)
            keys = _keys(doc)
            current = int(keys[key]["version"]) if key in keys else 0
            if current != expected:
                raise VersionMismatch(current)
            doc_version = doc.version if doc else 0
            if delete:
                if key not in keys:
                    return 0
                del keys[key]
            else:
                keys[key] = {"value": value, "version": doc_version + 1}
            try:
                await self._store.doc_put(STATE_NS, session, {"keys": keys}, now, expect_version=doc_version)
            except VersionConflict:
                continue  # another key of this session changed meanwhile: re-read, re-check ours
            return 0 if delete else doc_version + 1
        raise SessionBusy(session)

    async def add_events(self, session: str, principal: str, events: list[dict[str, Any]]) -> None:
        for _ in range(MAX_ROUNDS):
            now = time.time()
            doc = await self._store.doc_get(EVENTS_NS, session, now)
            kept = [*(doc.value.get("events", []) if doc else []), *events][-MAX_EVENTS:]
            try:
                await self._store.doc_put(
                    EVENTS_NS, session, {"events": kept}, now, expect_version=doc.version if doc else 0
                )
                break
            except VersionConflict:
                continue
        else:
            raise SessionBusy(session)
        for event in events:
            details = {k: event[k] for k in AUDITED if k in event}
            self._audit.record_later(principal, "tool_call", f"session:{session}", event["status"], details)

    async def events(self, session: str, limit: int) -> list[dict[str, Any]]:
        doc = await self._store.doc_get(EVENTS_NS, session, time.time())
        return list(doc.value.get("events", []))[-limit:] if doc else []
