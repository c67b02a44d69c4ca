"""Builds the governance components (keys, audit, budgets, rate limits, alerts) and their admin routes.

`create_app` calls `Governance.create` once and hands the pieces to the authenticator, the
pipeline and the router; `start`/`aclose` run in the app's lifespan (background sweeper, alert
delivery).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.admin import AdminGuard
from gateway.api.admin_keys import AdminKeysApi
from gateway.audit.trail import AuditTrail
from gateway.config.runtime import RuntimeConfig
from gateway.errors import GovernanceUnavailable
from gateway.keys.cache import KeyCache
from gateway.keys.registry import KeyRegistry
from gateway.store import Store, StoreUnavailable


def _store_errors_as_503(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """An admin call while the store is down is a clear 503, never a 500."""

    @functools.wraps(endpoint)
    async def call(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StoreUnavailable as exc:
            raise GovernanceUnavailable(
                f"The gateway's store is unreachable, so this admin action cannot run: {exc}", retry_after=1.0
            ) from None

    return call


@dataclass(slots=True)
class Governance:
    store: Store
    audit: AuditTrail
    key_cache: KeyCache
    keys: KeyRegistry
    guard: AdminGuard

    @classmethod
    def create(cls, config: RuntimeConfig, store: Store) -> Governance:
        audit = AuditTrail(store)
        cache = KeyCache(store)
        keys = KeyRegistry(store, cache, audit, set(config.groups))
        return cls(store, audit, cache, keys, AdminGuard(config.master_key))

    def routes(self) -> list[tuple[str, Callable[..., Any], list[str]]]:
        routes = [*AdminKeysApi(self.guard, self.keys).routes()]
        return [(path, _store_errors_as_503(endpoint), methods) for path, endpoint, methods in routes]

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.audit.drain()
        await self.store.aclose()
