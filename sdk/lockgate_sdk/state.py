"""`session.state`: durable key-value state held by the gateway, versioned per key.

Every write names the version it was based on (0: the key must not exist yet). When another writer
got there first the gateway refuses with 409 and nothing is overwritten: the SDK raises
`StateConflict` and keeps its cached copy as it was, so a stale value is never written blindly.
`update(key, fn)` is the read-modify-write loop that retries on conflict.

Reads are served from a snapshot loaded once (first access or `refresh()`); writes go straight to
the gateway. Sync sessions use the plain methods, async sessions the `a`-prefixed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from lockgate_sdk._api import ApiError, AsyncApi, SyncApi
from lockgate_sdk.errors import StateConflict

VERSION_HEADER = "x-lockgate-state-version"
_MISSING = object()


class SessionState:
    def __init__(self, session_id: str, sync_api: Callable[[], SyncApi], async_api: Callable[[], AsyncApi]) -> None:
        self._path = f"/v1/lockgate/sessions/{quote(session_id, safe='')}/state"
        self._sync = sync_api
        self._async = async_api
        self._values: dict[str, Any] = {}
        self._versions: dict[str, int] = {}
        self._loaded = False

    # ---- the snapshot ----

    def _load(self, body: dict[str, Any]) -> None:
        entries = body.get("state", {})
        self._values = {key: entry["value"] for key, entry in entries.items()}
        self._versions = {key: int(entry["version"]) for key, entry in entries.items()}
        self._loaded = True

    def _remember(self, key: str, value: Any, version: int) -> None:
        if version:
            self._values[key], self._versions[key] = value, version
        else:
            self._values.pop(key, None)
            self._versions.pop(key, None)

    def version(self, key: str) -> int:
        """The version this session last saw for `key` (0: absent)."""
        return self._versions.get(key, 0)

    def _key_path(self, key: str) -> str:
        return f"{self._path}/{quote(key, safe='')}"

    def _conflict(self, key: str, expected: int, error: ApiError) -> Exception:
        if error.code != "state_conflict":
            return error
        current = error.headers.get(VERSION_HEADER)
        return StateConflict(key, expected, int(current) if current is not None else None, error.message)

    # ---- sync ----

    def refresh(self) -> None:
        self._load(self._sync().call("GET", self._path))

    def _ensure(self) -> None:
        if not self._loaded:
            self.refresh()

    def get(self, key: str, default: Any = None) -> Any:
        self._ensure()
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        self._ensure()
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(dict(self._values))

    def to_dict(self) -> dict[str, Any]:
        self._ensure()
        return dict(self._values)

    def set(self, key: str, value: Any) -> int:
        """Write `key`, based on the version last seen; returns the new version."""
        self._ensure()
        expected = self.version(key)
        try:
            body = self._sync().call("PUT", self._key_path(key), json={"value": value, "version": expected})
        except ApiError as error:
            raise self._conflict(key, expected, error) from None
        self._remember(key, value, int(body["version"]))
        return int(body["version"])

    __setitem__ = set

    def delete(self, key: str) -> None:
        self._ensure()
        expected = self.version(key)
        try:
            self._sync().call("DELETE", self._key_path(key), params={"version": expected})
        except ApiError as error:
            raise self._conflict(key, expected, error) from None
        self._remember(key, None, 0)

    __delitem__ = delete

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None, attempts: int = 5) -> Any:
        """Read the latest `key`, write `fn(value)`; on a conflict, re-read and try again."""
        for attempt in range(attempts):
            body = self._sync().call("GET", self._key_path(key))
            self._ensure()
            self._remember(key, body["value"], int(body["version"]))
            new = fn(body["value"] if body["version"] else default)
            try:
                self.set(key, new)
                return new
            except StateConflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # ---- async ----

    async def arefresh(self) -> None:
        self._load(await self._async().call("GET", self._path))

    async def _aensure(self) -> None:
        if not self._loaded:
            await self.arefresh()

    async def aget(self, key: str, default: Any = None) -> Any:
        await self._aensure()
        return self._values.get(key, default)

    async def ato_dict(self) -> dict[str, Any]:
        await self._aensure()
        return dict(self._values)

    async def aset(self, key: str, value: Any) -> int:
        await self._aensure()
        expected = self.version(key)
        try:
            body = await self._async().call("PUT", self._key_path(key), json={"value": value, "version": expected})
        except ApiError as error:
            raise self._conflict(key, expected, error) from None
        self._remember(key, value, int(body["version"]))
        return int(body["version"])

    async def adelete(self, key: str) -> None:
        await self._aensure()
        expected = self.version(key)
        try:
            await self._async().call("DELETE", self._key_path(key), params={"version": expected})
        except ApiError as error:
            raise self._conflict(key, expected, error) from None
        self._remember(key, None, 0)

    async def aupdate(self, key: str, fn: Callable[[Any], Any], default: Any = None, attempts: int = 5) -> Any:
        for attempt in range(attempts):
            body = await self._async().call("GET", self._key_path(key))
            await self._aensure()
            self._remember(key, body["value"], int(body["version"]))
            new = fn(body["value"] if body["version"] else default)
            try:
                await self.aset(key, new)
                return new
            except StateConflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
