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


def held_approval(headers: _Headers) -> str | None:
    """The approval id when the gateway answered with a held (pending) response."""
    if str(headers.get(APPROVAL_STATUS_HEADER, "")).lower() != "pending":
        return None
    approval = headers.get(APPROVAL_ID_HEADER)
    return str(approval) if approval else None


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

    def handle_request(self, request: Any) -> Any:
        for _ in range(MAX_HOLDS_PER_REQUEST):
            tracing.inject(request.headers)
            response = self._inner.handle_request(request)
            approval = held_approval(response.headers)
            if approval is None:
                return response
            response.read()
            response.close()
            # Waits (or raises ApprovalPending / ApprovalDenied); on approval the same request is
            # sent again and the gateway delivers the decided response instead of calling the model.
            self._approvals.resolve(approval)
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

    async def handle_async_request(self, request: Any) -> Any:
        for _ in range(MAX_HOLDS_PER_REQUEST):
            tracing.inject(request.headers)
            response = await self._inner.handle_async_request(request)
            approval = held_approval(response.headers)
            if approval is None:
                return response
            await response.aread()
            await response.aclose()
            await self._approvals.aresolve(approval)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()
