"""Who is calling: the bearer (or `x-api-key`) token checked against the master key and the keys."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from gateway.config.runtime import Principal, RuntimeConfig
from gateway.errors import AuthenticationFailed, ModelNotFound, PermissionDenied

ANONYMOUS = Principal(name="anonymous")
MASTER = Principal(name="master", is_master=True)


class Authenticator:
    def __init__(self, config: RuntimeConfig) -> None:
        self._master = config.master_key
        self._keys = dict(config.keys)
        self._enabled = config.auth_enabled

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
        raise AuthenticationFailed(f"Incorrect API key provided: {_hint(token)}. Check the key and try again.")

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


__all__ = ["Authenticator", "ModelNotFound", "ANONYMOUS", "MASTER"]
