"""A lean OTLP/protobuf encoder: spans written straight into the bytes of an `ExportTraceServiceRequest`.

The SDK's encoder builds a protobuf object tree per span and re-hashes the resource per span, which
made encoding the largest single cost of tracing: bench/telemetry_middleware_cost.py measures ~40
us per span with it and ~5 us with this one (a request makes two spans). `SpanBytes` is the span
writer of the OTLP batch (`encoded_batch`, over HTTP or gRPC): `SpanRecorder` hands it each span's
plain values and no span object is made at all (a quarter less work than making the SDK's
`ReadableSpan`s and encoding those). Field numbers are from opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
Tests decode the output with `opentelemetry-proto` and compare it with the SDK encoder's, for SDK
spans and for the gateway's own requests, so the two cannot drift apart silently.

Each span's bytes are written by `_span_proto.span_message`, in C, when the package was built with a
C compiler (it is two thirds of the export thread's work on a request in Python; bench/README.md,
telemetry, session 9), else by `SpanBytes._python_message`, which writes the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status

from gateway.telemetry.span_export import UNSET_STATUS

try:
    from gateway.telemetry._span_proto import span_message as _native_span_message
except ImportError:  # installed without a C compiler: SpanBytes writes spans in Python
    _native_span_message = None

NATIVE = _native_span_message is not None

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack

# Span.kind is the API's SpanKind value + 1 (0 is SPAN_KIND_UNSPECIFIED on the wire).
# Status codes on the wire: 0 unset, 1 ok, 2 error, as StatusCode's values (a test checks).


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]
_INT64 = 1 << 63


def _len(field: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _len(field, text.encode("utf-8"))


def _any(value: Any) -> bytes:
    """An AnyValue message body."""
    if isinstance(value, str):
        return _str(1, value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if -_INT64 <= value < _INT64:
            return b"\x18" + _varint(value)
        return _str(1, str(value))  # past int64, which a collector could not read back
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, (tuple, list)):
        return _len(5, b"".join(_len(1, _any(v)) for v in value))
    if isinstance(value, bytes):
        return _len(7, value)
    return _str(1, str(value))


def _attributes(field: int, attributes: Mapping[str, Any] | None, cache: dict[tuple[Any, ...], bytes]) -> bytes:
    """Repeated KeyValue fields. Repeated pairs (model, provider, address) are encoded once."""
    parts: list[bytes] = []
    _attributes_into(field, attributes, cache, parts)
    return b"".join(parts)


def _attributes_into(
    field: int, attributes: Mapping[str, Any] | None, cache: dict[tuple[Any, ...], bytes], out: list[bytes]
) -> None:
    if not attributes:
        return
    for key, value in attributes.items():
        kind = type(value)
        # Kept only for values whose equality is the wire's: not floats (0.0 == -0.0), not lists
        # (unhashable), not tuples of anything but text. The type is part of the key: True == 1.
        if not (kind is str or kind is int or kind is bool or (kind is tuple and all(type(v) is str for v in value))):
            out.append(_len(field, _str(1, key) + _len(2, _any(value))))
            continue
        ckey = (field, key, kind, value)
        encoded = cache.get(ckey)
        if encoded is None:
            encoded = _len(field, _str(1, key) + _len(2, _any(value)))
            if len(cache) < 4096:
                cache[ckey] = encoded
        out.append(encoded)


_TRACE_AND_SPAN_ID = struct.Struct(">BBQQBBQ").pack  # tag, length, trace id (two halves), tag, length, span id
_PARENT_ID = struct.Struct(">BBQ").pack
_TIMES = struct.Struct("<BQBQ").pack  # start and end: tag, fixed64, tag, fixed64
_LOW_64 = (1 << 64) - 1


class SpanBytes:
    """A `span_export.SpanWriter` writing each span straight into protobuf: a ScopeSpans `spans` field.

    No span object is made. A deployment's fixed attribute group is encoded once and kept (by
    identity: the same dict every time). `parts` is joined once, into the request body, when the
    batch is sent. `native=False` uses the Python writer even where the C one was built (tests).
    """

    def __init__(self, cache: dict[tuple[Any, ...], bytes] | None = None, native: bool = NATIVE) -> None:
        if native and _native_span_message is None:
            raise RuntimeError("the C span writer (gateway.telemetry._span_proto) was not built")
        self.parts: list[bytes] = []
        self.count = 0
        self._cache: dict[tuple[Any, ...], bytes] = {} if cache is None else cache
        self._groups: dict[int, tuple[Mapping[str, Any], bytes]] = {}  # the dict is kept: its id stays its own
        self._heads: dict[tuple[str, int], bytes] = {}
        self._message = _native_span_message if native else self._python_message

    @property
    def cache(self) -> dict[tuple[Any, ...], bytes]:
        return self._cache

    def span(
        self, trace: SpanContext, span_id: int, parent: SpanContext | None, name: str, kind: SpanKind,
        start: int, end: int, fixed: Mapping[str, Any] | None, attributes: Mapping[str, Any],
        events: Sequence[tuple[str, Mapping[str, Any], int]], status: Status,
    ) -> None:
        group = b""
        if fixed:
            found = self._groups.get(id(fixed))
            if found is None or found[0] is not fixed:
                if len(self._groups) >= 1024:
                    self._groups.clear()
                found = self._groups[id(fixed)] = (fixed, _attributes(9, fixed, self._cache))
            group = found[1]
        if parent is None:
            parent_id, flags = 0, _LOCAL_PARENT
        else:
            # SpanFlags, as the SDK's encoder writes them: "is_remote is known" and, for a remote parent, "is remote".
            parent_id, flags = parent.span_id, _REMOTE_PARENT if parent.is_remote else _LOCAL_PARENT
        # Enum members' `_value_`, not `.value` or a dict keyed by them: both run Python code per span.
        # StatusCode's values are the wire's (0 unset, 1 ok, 2 error); SpanKind's are one less.
        if status is UNSET_STATUS:
            code, description = 0, None
        else:
            code, description = status.status_code._value_, status.description
        self.parts.append(self._message(
            trace.trace_id, span_id, parent_id, flags, name, kind._value_ + 1, start, end, group, attributes, events,
            code, description,
        ))
        self.count += 1

    def _python_message(
        self, trace_id: int, span_id: int, parent_id: int, flags: int, name: str, kind: int, start: int, end: int,
        group: bytes, attributes: Mapping[str, Any], events: Sequence[tuple[str, Mapping[str, Any], int]],
        code: int, description: str | None,
    ) -> bytes:
        """`_span_proto.span_message` in Python: one span's field, with repeated attribute pairs (model,
        provider, address) and span names encoded once and kept."""
        cache = self._cache
        if len(cache) >= 4096:  # unique values (ids) fill it; start afresh
            cache.clear()
        out = [_TRACE_AND_SPAN_ID(0x0A, 0x10, trace_id >> 64, trace_id & _LOW_64, 0x12, 0x08, span_id)]
        if parent_id:
            out.append(_PARENT_ID(0x22, 0x08, parent_id))
        head = self._heads.get((name, kind))
        if head is None:
            encoded = name.encode("utf-8")
            head = b"\x2a" + _varint(len(encoded)) + encoded + b"\x30" + _SMALL[kind]
            if len(self._heads) < 1024:
                self._heads[(name, kind)] = head
        out += (head, _TIMES(0x39, start, 0x41, end), group)
        _attributes_into(9, attributes, cache, out)
        for event_name, event_attributes, timestamp in events:
            body = b"\x09" + _FIXED64(timestamp) + _str(2, event_name) + _attributes(3, event_attributes, cache)
            out += (b"\x5a", _varint(len(body)), body)
        if description or code:
            body = (_str(2, description) if description else b"") + (b"\x18" + _SMALL[code] if code else b"")
            out += (b"\x7a", _varint(len(body)), body)
        else:
            out.append(b"\x7a\x00")  # written even when empty, as the SDK's encoder does
        out.append(b"\x85\x01" + _FIXED32(flags))
        body = b"".join(out)
        return b"\x12" + _varint(len(body)) + body


_LOCAL_PARENT = 0x100
_REMOTE_PARENT = 0x300


def encode_span_messages(spans: Sequence[ReadableSpan], writer: SpanBytes) -> bytes:
    """SDK spans as the `spans` fields of a ScopeSpans message, written by `writer` (its caches used, its
    parts taken)."""
    for span in spans:
        context = span.context
        assert context is not None
        writer.span(
            context, context.span_id, span.parent, span.name, span.kind, span.start_time or 0, span.end_time or 0,
            None, span.attributes or {}, [(e.name, e.attributes or {}, e.timestamp) for e in span.events],
            span.status,
        )
    encoded = b"".join(writer.parts)
    writer.parts.clear()
    return encoded


def wrap_span_messages(
    resource: Any, scope: Any, span_messages: list[bytes], cache: dict[tuple[Any, ...], bytes]
) -> bytes:
    """The ExportTraceServiceRequest holding `span_messages` (a `SpanBytes`' parts, or chunks from
    `encode_span_messages`) under one resource and scope. A batch's spans are hundreds of kilobytes:
    they are copied once, into the result."""
    return b"".join(_resource_spans(resource, [_scope_spans(scope, span_messages)], cache))


def _scope_spans(scope: Any, span_messages: list[bytes]) -> list[bytes]:
    """A ResourceSpans `scope_spans` field, as parts."""
    scope_body = b""
    if scope is not None:
        scope_body = _str(1, scope.name) + (_str(2, scope.version) if scope.version else b"")
    body = [_len(1, scope_body), *span_messages]
    if scope is not None and scope.schema_url:
        body.append(_str(3, scope.schema_url))
    return [b"\x12" + _varint(sum(map(len, body))), *body]


def _resource_spans(resource: Any, scope_spans: list[list[bytes]], cache: dict[tuple[Any, ...], bytes]) -> list[bytes]:
    """An ExportTraceServiceRequest `resource_spans` field, as parts."""
    body = [_len(1, _attributes(1, resource.attributes, cache))]
    for parts in scope_spans:
        body += parts
    if resource.schema_url:
        body.append(_str(3, resource.schema_url))
    return [b"\x0a" + _varint(sum(map(len, body))), *body]


def encode_spans(spans: Sequence[ReadableSpan], cache: dict[tuple[Any, ...], bytes] | None = None) -> bytes:
    """The serialized ExportTraceServiceRequest for SDK spans, grouped by resource and scope."""
    writer = SpanBytes(cache)
    groups: dict[int, tuple[Any, dict[Any, list[ReadableSpan]]]] = {}
    for span in spans:
        resource = span.resource
        entry = groups.get(id(resource))
        if entry is None:
            entry = groups[id(resource)] = (resource, {})
        entry[1].setdefault(span.instrumentation_scope, []).append(span)
    out: list[bytes] = []
    for resource, scopes in groups.values():
        out += _resource_spans(
            resource,
            [_scope_spans(scope, [encode_span_messages(members, writer)]) for scope, members in scopes.items()],
            writer.cache,
        )
    return b"".join(out)
