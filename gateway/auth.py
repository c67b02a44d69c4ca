"""Who is calling: the bearer (or `x-api-key`) token checked against the master key and the keys."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.config.runtime import Principal, RuntimeConfig
from gateway.errors import AuthenticationFailed, GovernanceUnavailable, ModelNotFound, PermissionDenied

if TYPE_CHECKING:
    from gateway.keys.cache import KeyCache

ANONYMOUS = Principal(name="anonymous")
MASTER = Principal(name="master", is_master=True)


class Authenticator:
    def __init__(self, config: RuntimeConfig, virtual_keys: KeyCache | None = None) -> None:
        self._master = config.master_key
        self._keys = dict(config.keys)
        self._enabled = config.auth_enabled
        # Virtual keys, resolved into this cache by `gateway.keys.resolver` before the route runs.
        self._virtual = virtual_keys

    def is_configured(self, token: str) -> bool:
        """A static key or the master key: known without asking the store."""
        return token in self._keys or (
            self._master is not None and hmac.compare_digest(token.encode(), self._master.encode())
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if not self._enabled:
            return ANONYMOUS
        token = _token(headers)
        if token is None:
            raise AuthenticationFailed(
                "No API key provided. Send it as 'Authorization: Bearer <key>' (or in 'x-api-key')."
            )
        principal = self._keys.get(token)
        if principal is not None:
            return principal
        if self._master is not None and hmac.compare_digest(token.encode(), self._master.encode()):
            return MASTER
        if self._virtual is not None:
            return self._virtual_key(token)
        raise AuthenticationFailed(f"Incorrect API key provided: {_hint(token)}. Check the key and try again.")

    def _virtual_key(self, token: str) -> Principal:
        assert self._virtual is not None
        entry = self._virtual.peek(hashlib.sha256(token.encode()).hexdigest())
        if entry is None or entry.status == "unknown":
            raise AuthenticationFailed(f"Incorrect API key provided: {_hint(token)}. Check the key and try again.")
        if entry.status == "unavailable":
            raise GovernanceUnavailable(
                "The gateway cannot check this API key right now: its key store is unreachable. "
                "Retry shortly; the gateway reconnects by itself.",
                retry_after=1.0,
            )
        assert entry.principal is not None
        if entry.status == "revoked":
            raise AuthenticationFailed(f"The API key '{entry.principal.name}' has been revoked.")
        expires = entry.principal.expires_at
        if entry.status == "expired" or (expires is not None and expires <= time.time()):
            raise AuthenticationFailed(f"The API key '{entry.principal.name}' has expired.")
        return entry.principal

    @staticmethod
    def check_model(principal: Principal, model: str) -> None:
        if principal.models is not None and model not in principal.models:
            raise PermissionDenied(
                f"The key '{principal.name}' may not use the model '{model}'. "
                f"Allowed: {', '.join(sorted(principal.models))}.",
                param="model",
            )

    @staticmethod
    def visible(principal: Principal, model: str) -> bool:
        return principal.models is None or model in principal.models


def token_of(headers: Mapping[str, str]) -> str | None:
    """The caller's key from `Authorization: Bearer` or `x-api-key`, if any."""
    return _token(headers)


def _token(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return headers.get("x-api-key") or headers.get("api-key") or None


def _hint(token: str) -> str:
    """Enough of a wrong key to recognise it, never enough to use it (OpenAI shows the same)."""
    return f"{token[:3]}...{token[-4:]}" if len(token) > 10 else "***"


__all__ = ["ANONYMOUS", "MASTER", "Authenticator", "ModelNotFound"]
