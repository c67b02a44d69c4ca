"""The outermost edge of every HTTP request: its id, its access-log line, and the error boundary.

`RequestIdMiddleware` (outermost) gives every request an id (the client's `x-request-id` if sane)
and every response the header; with `server.access_log` on it also writes one line per request
when the response's last byte has gone, with what an operator greps for on a bad day. The
`ErrorBoundaryMiddleware` (innermost of Lockgate's) turns an unexpected exception into OpenAI's
500 shape while the header-stamping middlewares can still stamp it.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import SCOPE_KEY, UNEXPECTED_ERROR_KEY, ApiRequest
from gateway.errors import ANTHROPIC_PATHS, InternalError, render_error
from gateway.ids import hex_id

log = logging.getLogger("lockgate")
access = logging.getLogger("lockgate.access")


class ErrorBoundaryMiddleware:
    """Turns an unexpected exception into OpenAI's 500 shape *inside* the header-stamping middlewares.

    Starlette answers an unhandled exception from its outermost layer, past every middleware, so the
    500 would carry neither `x-request-id` nor `x-lockgate-trace-id`, the two things an operator needs
    to find what happened. Here the answer goes out through them; the exception's type is left in the
    scope for the SERVER span's `error.type`, and the traceback goes to the log with the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise  # part of the response is out: nothing to do but close the connection
            state = scope.setdefault("state", {})
            rid = state.get("request_id", "?")
            log.exception("unexpected error in request %s", rid)
            state[UNEXPECTED_ERROR_KEY] = type(exc).__qualname__
            error = InternalError(f"The gateway hit an unexpected error (request {rid}). It has been logged.")
            status, body, headers = render_error(error, anthropic=scope["path"] in ANTHROPIC_PATHS)
            raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Gives every request an id (the client's `x-request-id` if sane) and every response the header."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or hex_id("req_", 12)
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())
        if self._access_log:
            await self._logged(scope, receive, send, rid, header)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)

    async def _logged(self, scope: Scope, receive: Receive, send: Send, rid: str, header: tuple[bytes, bytes]) -> None:
        started = time.perf_counter()
        seen: dict[str, object] = {"status": 500, "trace": "-"}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = headers = [*message.get("headers", ()), header]
                seen["status"] = message["status"]
                seen["trace"] = next((v.decode() for k, v in headers if k == b"x-lockgate-trace-id"), "-")
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access.info("%s", access_line(scope, rid, seen, time.perf_counter() - started))


def access_line(scope: Scope, rid: str, seen: dict[str, object], seconds: float) -> str:
    """`key=value` fields, values without spaces or control characters: easy to grep and to parse."""
    fields = [f"request_id={rid}", f"trace_id={seen['trace']}", f"method={scope['method']}",
              f"path={scope['path']}", f"status={seen['status']}", f"duration_ms={seconds * 1000:.1f}"]
    request = scope.get("state", {}).get(SCOPE_KEY)
    if isinstance(request, ApiRequest):
        served = request.attempts[-1] if request.attempts and request.attempts[-1].failure is None else None
        principal = request.principal
        fields += [f"model={request.model}", f"stream={str(request.stream).lower()}",
                   f"deployment={served.deployment.id if served else '-'}", f"attempts={len(request.attempts)}",
                   f"key={principal.name if principal else '-'}"]
        if request.session_id:
            fields.append(f"session={request.session_id}")
        if request.cost_micros is not None:
            fields.append(f"cost_usd={request.cost_micros / 1_000_000:.6f}")
    return " ".join(_clean(f) for f in fields)


# Spaces, control characters (a newline in a client's model name could forge a log line) and DEL.
_UNSAFE = {c: "_" for c in (*range(33), 127)}


def _clean(field: str) -> str:
    return field[:256].translate(_UNSAFE)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            return text if 0 < len(text) <= 128 and text.isascii() and text.isprintable() else None
    return None
