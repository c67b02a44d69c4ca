"""ASGI middleware that resolves a virtual key into the key cache before the route runs.

The authenticator stays synchronous (it runs first in every endpoint and reads only memory); this
middleware does the one awaited store lookup, and only when a request carries a key that is neither
configured nor fresh in the cache. Cache hits cost a sha256 and a dict lookup.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import Authenticator, token_of
from gateway.keys.cache import KeyCache


class KeyResolverMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, cache: KeyCache) -> None:
        self.app = app
        self._auth = authenticator
        self._cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = token_of(Headers(scope=scope))
            if token and not self._auth.is_configured(token):
                digest = hashlib.sha256(token.encode()).hexdigest()
                if not self._cache.is_fresh(digest):
                    await self._cache.load(digest)
        await self.app(scope, receive, send)
