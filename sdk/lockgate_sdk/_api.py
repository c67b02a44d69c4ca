"""The SDK's own calls to the gateway (session state, tool events, approvals), over httpx.

Errors come back in OpenAI's shape; they become `GatewayApiError` here, with the response headers
kept so callers can read what the gateway said beside the body (a conflicting version, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from lockgate_sdk import tracing
from lockgate_sdk.errors import GatewayApiError

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ApiError(GatewayApiError):
    """A `GatewayApiError` that also keeps the response headers."""

    def __init__(self, status: int, message: str, code: str | None, headers: Mapping[str, str]) -> None:
        super().__init__(status, message, code)
        self.headers = dict(headers)


def root_url(base_url: str) -> str:
    """The gateway's root, whether the user gave `http://host:4000` or `http://host:4000/v1`."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


# The SDK's own calls carry the trace context too, so a tool's reported outcome and a state write
# show up in the agent's trace on the gateway's side.
def _inject(request: httpx.Request) -> None:
    tracing.inject(request.headers)


async def _ainject(request: httpx.Request) -> None:
    tracing.inject(request.headers)


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    message, code = response.text or response.reason_phrase, None
    try:
        error = response.json().get("error", {})
        message, code = error.get("message") or message, error.get("code")
    except (ValueError, AttributeError):
        pass
    raise ApiError(response.status_code, message, code, response.headers)


def _decode(response: httpx.Response) -> Any:
    _raise_for(response)
    return response.json() if response.content else None


class SyncApi:
    """Blocking calls, for sync sessions. One connection pool per `Gateway`."""

    def __init__(self, root: str, headers: Mapping[str, str], timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self._client = httpx.Client(
            base_url=root, headers=dict(headers), timeout=timeout, event_hooks={"request": [_inject]}
        )

    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return _decode(self._client.request(method, path, json=json, params=params))

    def close(self) -> None:
        self._client.close()


class AsyncApi:
    """Non-blocking calls, for async sessions. Created per session: a pool belongs to one event loop."""

    def __init__(self, root: str, headers: Mapping[str, str], timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self._client = httpx.AsyncClient(
            base_url=root, headers=dict(headers), timeout=timeout, event_hooks={"request": [_ainject]}
        )

    async def call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        return _decode(await self._client.request(method, path, json=json, params=params))

    async def aclose(self) -> None:
        await self._client.aclose()
