"""Transports for the official clients: inject the trace context per request, handle held responses.

The `openai` and `anthropic` packages each build on an httpx flavour of their own (`httpx` or
`httpx2`); these wrappers only need `handle_request` / `handle_async_request`, so they sit in front
of whichever transport class the client library ships, found from its default client class.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol, Self

from lockgate_sdk import tracing
from lockgate_sdk.semconv import APPROVAL_ID_HEADER, APPROVAL_STATUS_HEADER

if TYPE_CHECKING:
    from lockgate_sdk.approvals import Approvals

# A request held again after its approval (a second tool call needing a human) is waited on again,
# but never forever.
MAX_HOLDS_PER_REQUEST = 8


class _Headers(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


def approval_status(headers: _Headers) -> tuple[str, str] | None:
    """(approval id, status) when the gateway's reply concerns a hold; status is pending,
    approved, edited or denied."""
    approval = headers.get(APPROVAL_ID_HEADER)
    status = headers.get(APPROVAL_STATUS_HEADER)
    return (str(approval), str(status).lower()) if approval and status else None


def httpx_flavour(client_class: type) -> Any:
    """The httpx-like module (`httpx` or `httpx2`) a client library's default client class builds on."""
    for cls in client_class.__mro__:
        root = cls.__module__.split(".")[0]
        if root.startswith("httpx") and cls.__name__ in ("Client", "AsyncClient"):
            return sys.modules[root]
    raise TypeError(f"{client_class!r} is not an httpx client class")


class SyncSessionTransport:
    def __init__(self, inner: Any, approvals: Approvals) -> None:
        self._inner = inner
        self._approvals = approvals

    def _send(self, request: Any) -> tuple[Any, tuple[str, str] | None]:
        tracing.inject(request.headers)
        response = self._inner.handle_request(request)
        return response, approval_status(response.headers)

    def handle_request(self, request: Any) -> Any:
        response, hold = self._send(request)
        for _ in range(MAX_HOLDS_PER_REQUEST):
            if hold is None or hold[1] not in ("pending", "denied"):
                return response
            if hold[1] == "denied" and self._approvals.policy.on_denial == "reply":
                return response  # the gateway's explanation, as an ordinary reply
            response.read()
            response.close()
            if hold[1] == "denied":
                raise self._approvals.get(hold[0]).denial()
            # Waits (or raises ApprovalPending); once decided, the same request is sent again and
            # the gateway delivers the decided response instead of calling the model again.
            decided = self._approvals.resolve(hold[0])
            response, hold = self._send(request)
            if decided.denied and self._approvals.policy.on_denial == "raise":
                response.read()
                response.close()  # the denial was delivered (and consumed) on the gateway
                raise decided.denial()
        return response

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class AsyncSessionTransport:
    def __init__(self, inner: Any, approvals: Approvals) -> None:
        self._inner = inner
        self._approvals = approvals

    async def _send(self, request: Any) -> tuple[Any, tuple[str, str] | None]:
        tracing.inject(request.headers)
        response = await self._inner.handle_async_request(request)
        return response, approval_status(response.headers)

    async def handle_async_request(self, request: Any) -> Any:
        response, hold = await self._send(request)
        for _ in range(MAX_HOLDS_PER_REQUEST):
            if hold is None or hold[1] not in ("pending", "denied"):
                return response
            if hold[1] == "denied" and self._approvals.policy.on_denial == "reply":
                return response
            await response.aread()
            await response.aclose()
            if hold[1] == "denied":
                raise (await self._approvals.aget(hold[0])).denial()
            decided = await self._approvals.aresolve(hold[0])
            response, hold = await self._send(request)
            if decided.denied and self._approvals.policy.on_denial == "raise":
                await response.aread()
                await response.aclose()
                raise decided.denial()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()
