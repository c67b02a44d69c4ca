"""Tool tracing: an `execute_tool {name}` span per call, and the outcome reported to the gateway.

`ToolCall` is the context manager (sync and async); `tool_decorator` wraps sync and async
functions with it. Arguments and results go on the span only when content capture is on; the
gateway always gets hashes of both (never content unless capture is on), so its loop detection can
see the same call repeating and the same result coming back, and its audit trail what ran and failed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from lockgate_sdk import semconv as sc

F = TypeVar("F", bound=Callable[..., Any])


class EventSink(Protocol):
    """Where tool outcomes go (the session forwards them to the gateway)."""

    def report(self, event: dict[str, Any]) -> None: ...

    async def areport(self, event: dict[str, Any]) -> None: ...


def to_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ToolCall:
    """One tool execution. Use `set_result(value)` inside the block to record what it returned."""

    def __init__(
        self,
        tracer: trace.Tracer,
        sink: EventSink,
        capture_content: bool,
        name: str,
        call_id: str | None = None,
        arguments: Any = None,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.call_id = call_id or f"call_{uuid.uuid4().hex[:24]}"
        self._tracer = tracer
        self._sink = sink
        self._capture = capture_content
        self._arguments = None if arguments is None else to_json(arguments)
        self._description = description
        self._result: str | None = None
        self._span: trace.Span | None = None
        self._token: object = None
        self._started = 0.0

    def set_result(self, value: Any) -> None:
        self._result = to_json(value)
        if self._capture and self._span is not None:
            self._span.set_attribute(sc.TOOL_CALL_RESULT, self._result)

    def _open(self) -> Self:
        attributes: dict[str, str] = {
            sc.OPERATION_NAME: sc.EXECUTE_TOOL,
            sc.TOOL_NAME: self.name,
            sc.TOOL_CALL_ID: self.call_id,
            sc.TOOL_TYPE: "function",
            sc.OPENINFERENCE_KIND: "TOOL",
        }
        if self._description:
            attributes[sc.TOOL_DESCRIPTION] = self._description
        if self._capture and self._arguments is not None:
            attributes[sc.TOOL_CALL_ARGUMENTS] = self._arguments
        self._span = self._tracer.start_span(
            f"{sc.EXECUTE_TOOL} {self.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        # Current while the tool runs, so an LLM call made by the tool is its child.
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._started = time.monotonic()
        return self

    def _close(self, error: BaseException | None) -> dict[str, Any]:
        assert self._span is not None
        span = self._span
        event: dict[str, Any] = {
            "type": "tool_call",
            "name": self.name,
            "call_id": self.call_id,
            "status": "ok" if error is None else "error",
            "duration_ms": round((time.monotonic() - self._started) * 1000, 3),
        }
        if error is not None:
            error_type = type(error).__qualname__
            span.set_status(Status(StatusCode.ERROR, str(error) if self._capture else error_type))
            span.set_attribute(sc.ERROR_TYPE, error_type)
            if self._capture:
                span.record_exception(error)
            event["error_type"] = error_type
        if self._arguments is not None:
            event["arguments_sha256"] = _digest(self._arguments)
        if self._result is not None:
            event["result_sha256"] = _digest(self._result)
        if self._capture:
            event["arguments"], event["result"] = self._arguments, self._result
        ctx = span.get_span_context()
        if ctx.is_valid:
            event["trace_id"], event["span_id"] = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span.end()
        return event

    def __enter__(self) -> Self:
        return self._open()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._sink.report(self._close(exc))

    async def __aenter__(self) -> Self:
        return self._open()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        await self._sink.areport(self._close(exc))


def _arguments(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if signature is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    return dict(bound.arguments)


def tool_decorator(
    open_call: Callable[[str, Any, str | None], ToolCall], fn: F, name: str | None, description: str | None
) -> F:
    """Wrap `fn` (sync or async) so each call runs inside a `ToolCall`."""
    tool_name = name or fn.__name__
    about = description or (inspect.getdoc(fn) or "").split("\n\n")[0] or None
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            async with open_call(tool_name, _arguments(signature, args, kwargs), about) as call:
                result = await fn(*args, **kwargs)
                call.set_result(result)
                return result

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with open_call(tool_name, _arguments(signature, args, kwargs), about) as call:
            result = fn(*args, **kwargs)
            call.set_result(result)
            return result

    return run  # type: ignore[return-value]
