"""The ASGI middleware around every HTTP request: the SERVER span, the trace id header, the metrics.

It extracts the caller's `traceparent` and `baggage` (W3C), opens the SERVER span, stamps every
response with `x-lockgate-trace-id`, and when the response's last byte has gone (a stream's end
included) records the metrics and queues the request for its spans (`span_batches`: they are built
and exported off the event loop). With tracing off it creates no span and builds no attributes: the
header carries the caller's trace id, or a fresh one so logs can still be correlated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import SCOPE_KEY, TRACE_KEY, UNEXPECTED_ERROR_KEY, ApiRequest
from gateway.ids import hex_id
from gateway.telemetry import semconv as sc
from gateway.telemetry.content import OutputCollector
from gateway.telemetry.spans import FinishedRequest, RequestRecord, ServerSpan

if TYPE_CHECKING:
    from gateway.telemetry.component import Telemetry

Headers = list[tuple[bytes, bytes]]


class _HeaderGetter(Getter[Headers]):
    """Reads ASGI's raw header list without building a dict of every header."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        wanted = key.lower().encode()
        found = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()
# Probes and scrapes: answered with the trace id header, but neither traced nor counted (noise).
_QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def _carries_context(headers: Headers) -> bool:
    for name, _ in headers:
        if name in _CONTEXT_HEADERS:
            return True
    return False


_CONTEXT_HEADERS = frozenset({b"traceparent", b"baggage"})


def incoming_trace_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The trace id of a well-formed `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`)."""
    for name, value in headers:
        if name == b"traceparent":
            parts = value.split(b"-")
            if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != b"0" * 32:
                try:
                    int(parts[1], 16)
                except ValueError:
                    return None
                return parts[1].lower()
            return None
    return None


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self._t = telemetry
        self._route = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._t.spans is None or scope["path"] in _QUIET_PATHS:
            await self._untraced(scope, receive, send)
        else:
            await self._traced(scope, receive, send)

    async def _untraced(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = (sc.TRACE_ID_HEADER, incoming_trace_id(scope["headers"]) or hex_id("", 16).encode())
        status = [500]

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics = self._t.metrics
        if metrics is None or scope["path"] in _QUIET_PATHS:
            await self.app(scope, receive, send_with_header)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            request = scope.get("state", {}).get(SCOPE_KEY)
            metrics.record(request, status[0], time.perf_counter() - started, self._route(scope))

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        t = self._t
        assert t.recorder is not None
        headers: Headers = scope["headers"]
        # Most callers send no trace context: skip the propagators' work (a fifth of tracing's cost).
        ctx = t.propagator.extract(headers, getter=_GETTER) if _carries_context(headers) else None
        method = scope["method"]
        attrs: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: method,
            sc.URL_PATH: scope["path"],
            sc.URL_SCHEME: scope.get("scheme", "http"),
            sc.OPENINFERENCE_SPAN_KIND: sc.OPENINFERENCE_CHAIN,
        }
        if t.old_http:
            attrs[sc.OLD_HTTP_METHOD], attrs[sc.OLD_HTTP_TARGET] = method, scope["path"]
            attrs[sc.OLD_HTTP_SCHEME] = attrs[sc.URL_SCHEME]
        context, parent = t.recorder.start(ctx, method)
        header = (sc.TRACE_ID_HEADER, format(context.trace_id, "032x").encode())
        recording = context.trace_flags.sampled
        scope.setdefault("state", {})[TRACE_KEY] = (context.trace_id, context.trace_flags)
        span = ServerSpan(context, parent, method, time.time_ns(), attrs) if recording else None
        status = [500]
        collector: list[OutputCollector] = []

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                if t.capture and recording and status[0] == 200:
                    request = scope.get("state", {}).get(SCOPE_KEY)
                    if isinstance(request, ApiRequest) and request.operation == "chat":
                        collector.append(OutputCollector(request.stream))
            elif collector and message["type"] == "http.response.body":
                collector[0].feed(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._finish(scope, span, recording, status[0], failure, collector, started, ctx)

    def _finish(
        self, scope: Scope, span: ServerSpan | None, recording: bool, status: int, failure: BaseException | None,
        collector: list[OutputCollector], started: float, ctx: Any,
    ) -> None:
        t = self._t
        request = scope.get("state", {}).get(SCOPE_KEY)
        if not isinstance(request, ApiRequest):
            request = None
        route = self._route(scope)
        if span is not None and t.spans is not None:
            ended = time.time_ns()
            attrs = span.attributes
            if route:
                span.name = f"{scope['method']} {route}"
                attrs[sc.HTTP_ROUTE] = route
            attrs[sc.HTTP_RESPONSE_STATUS_CODE] = status
            if t.old_http:
                attrs[sc.OLD_HTTP_STATUS_CODE] = status
            if scope.get("state", {}).get("request_id"):
                attrs[sc.LOCKGATE_REQUEST_ID] = scope["state"]["request_id"]
            if failure is not None and not isinstance(failure, Exception):
                attrs[sc.ERROR_TYPE] = "cancelled"
            elif failure is not None:
                attrs[sc.ERROR_TYPE] = type(failure).__qualname__
                span.status = Status(StatusCode.ERROR, type(failure).__qualname__)
            elif status >= 500:
                unexpected = scope.get("state", {}).get(UNEXPECTED_ERROR_KEY)
                attrs[sc.ERROR_TYPE] = unexpected or str(status)
                span.status = Status(StatusCode.ERROR, unexpected) if unexpected else Status(StatusCode.ERROR)
            record = RequestRecord.of(request, t.capture) if request is not None else None
            t.spans.write(FinishedRequest(span, record, ended, ctx, collector[0] if collector else None))
        if t.metrics is not None:
            t.metrics.record(request, status, time.perf_counter() - started, route)


class RouteTemplates:
    """`http.route`: the matched route's template, or "" when no route matched (a 404).

    Starlette leaves only the endpoint in the scope; finding its route means scanning the router
    (an endpoint can serve several paths: `/v1/chat/completions` and `/chat/completions`). The answer
    for an endpoint and a path never changes, so it is kept (bounded: paths with parameters vary).
    """

    LIMIT = 1024

    def __init__(self) -> None:
        self._known: dict[tuple[Any, str], str] = {}

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        endpoint = scope.get("endpoint")
        router = scope.get("router")
        if endpoint is None or router is None:
            return ""
        key = (endpoint, scope["path"])
        found = self._known.get(key)
        if found is None:
            found = _scan(router, endpoint, scope["path"])
            if len(self._known) < self.LIMIT:
                self._known[key] = found
        return found


def _scan(router: Any, endpoint: Any, path_now: str) -> str:
    for candidate in getattr(router, "routes", ()):
        regex = getattr(candidate, "path_regex", None)
        if getattr(candidate, "endpoint", None) == endpoint and regex is not None and regex.match(path_now):
            found = getattr(candidate, "path", "")
            return found if isinstance(found, str) else ""
    return ""
