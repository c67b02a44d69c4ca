"""Turns a finished request's values into spans: a CLIENT span per attempt, an event per decision.

Business code records `Attempt`s and `Decision`s on the `ApiRequest` as plain values while it
runs; this module builds the spans afterwards with their real start and end times, under the
request's SERVER span, on the export thread (`span_batches`). Any decision becomes a span event
named as it was recorded, with its attributes, so new stages (retries, breakers, budgets, policies,
holds) show up in traces without code here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage as otel_baggage
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from gateway.config.runtime import Principal
from gateway.context import ApiRequest, Attempt, Decision
from gateway.errors import scrub_secrets
from gateway.providers.base import Summary
from gateway.telemetry import semconv as sc
from gateway.telemetry.attributes import (
    REQUEST_PARAM_KEYS,
    DeploymentAttributes,
    attempt_cost,
    error_type,
    request_params,
    time_to_first_chunk,
)
from gateway.telemetry.content import OutputCollector, input_messages
from gateway.telemetry.sdk import SpanFactory
from gateway.telemetry.span_export import UNSET_STATUS, EventValues, SpanWriter

Attrs = dict[str, Any]
_NS = 1_000_000_000


@dataclass(slots=True)
class ServerSpan:
    """The request's SERVER span while the request runs: plain values, written out when it ends."""

    context: SpanContext
    parent: SpanContext | None
    name: str
    start: int
    attributes: dict[str, Any]
    status: Status = UNSET_STATUS


@dataclass(slots=True)
class RequestRecord:
    """What a request's spans need from it, taken on the event loop when it ends.

    Not the request itself: its body can be a whole agent conversation, and kept until the export
    thread built the spans (a batch: ~0.1 s) it was freed there, cold, object by object. Freed on
    the loop while still in cache it costs far less (bench/telemetry_threads.py with a 47-message
    body: tracing x0.78 -> x0.86 of metrics alone's throughput). Attempts and decisions are small.
    """

    operation: str
    model: str
    stream: bool
    session_id: str | None
    user: str | None
    principal: Principal | None
    attempts: list[Attempt]
    decisions: list[Decision]
    cost_micros: int | None
    # The body's keys spans report as request parameters; the whole body when content is captured.
    body: dict[str, Any]

    @classmethod
    def of(cls, request: ApiRequest, capture: bool) -> RequestRecord:
        body = request.body
        if not capture:
            body = {k: v for k, v in body.items() if k in REQUEST_PARAM_KEYS}
        return cls(
            request.operation, request.model, request.stream, request.session_id, request.user, request.principal,
            request.attempts, request.decisions, request.cost_micros, body,
        )


@dataclass(slots=True)
class FinishedRequest:
    """What one request leaves for its spans; once queued, only the export thread reads it."""

    server: ServerSpan
    request: RequestRecord | None
    ended_ns: int
    incoming: Context | None  # the caller's trace context (for baggage), None when it sent none
    collector: OutputCollector | None  # the response's text, when content capture is on

    @property
    def span_count(self) -> int:
        return 1 + (len(self.request.attempts) if self.request is not None else 0)


class SpanRecorder:
    def __init__(
        self, factory: SpanFactory, deployments: DeploymentAttributes, secrets: tuple[str, ...], capture: bool
    ) -> None:
        self._factory = factory
        self._deployments = deployments
        self._secrets = secrets
        self._capture = capture

    def start(self, incoming: Context | None, name: str) -> tuple[SpanContext, SpanContext | None]:
        """The SERVER span's context for a request whose caller's context is `incoming` (None: it sent none)."""
        return self._factory.root(incoming, name)

    def build(self, finished: FinishedRequest, out: SpanWriter) -> None:
        """Write the request's spans to `out`: one CLIENT span per attempt, then the SERVER span with the
        decision events."""
        server = finished.server
        request = finished.request
        events: list[EventValues] = []
        if request is not None:
            baggage = {k: str(v) for k, v in otel_baggage.get_all(finished.incoming).items()} \
                if finished.incoming is not None else {}
            output = finished.collector.output_messages() if finished.collector is not None else None
            self._record(server, request, finished.ended_ns, baggage, output, events, out)
        context = server.context
        out.span(
            context, context.span_id, server.parent, server.name, SpanKind.SERVER, server.start, finished.ended_ns,
            None, server.attributes, events, server.status,
        )

    def _record(
        self,
        server: ServerSpan,
        request: RequestRecord,
        ended_ns: int,
        baggage: dict[str, str],
        output: str | None,
        events: list[EventValues],
        out: SpanWriter,
    ) -> None:
        """Annotate the SERVER span, collect its decision events and write the attempt spans under it."""
        operation = request.operation
        own: Attrs = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_REQUEST_MODEL: request.model,
            sc.LOCKGATE_ATTEMPTS: len(request.attempts),
        }
        session = request.session_id or baggage.get(sc.BAGGAGE_SESSION_ID)
        if session:
            own[sc.SESSION_ID] = own[sc.GEN_AI_CONVERSATION_ID] = session
        principal = request.principal
        user = request.user or (principal.user if principal else None) or baggage.get(sc.BAGGAGE_USER_ID)
        if user:
            own[sc.USER_ID] = user
        if principal is not None:
            own[sc.LOCKGATE_KEY_NAME] = principal.name
            if principal.team:
                own[sc.LOCKGATE_TEAM] = principal.team

        parent = server.context
        common: Attrs = {sc.GEN_AI_OPERATION_NAME: operation, sc.OPENINFERENCE_SPAN_KIND: _kind(operation)}
        if operation == "chat":
            common[sc.GEN_AI_REQUEST_STREAM] = request.stream
        request_params(operation, request.body, common)
        if session:
            common[sc.SESSION_ID] = common[sc.GEN_AI_CONVERSATION_ID] = session
        if user:
            common[sc.USER_ID] = user
        if self._capture and operation == "chat":
            messages, system = input_messages(request.body)
            if messages is not None:
                common[sc.GEN_AI_INPUT_MESSAGES] = messages
            if system is not None:
                common[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = system

        total_cost: float | None = None
        last = len(request.attempts) - 1
        for index, attempt in enumerate(request.attempts):
            served = index == last and attempt.failure is None
            # A served stream's span lasts until its last byte: the request's end.
            end = ended_ns if served and request.stream else None
            self._attempt(parent, attempt, index, common, end, output if served else None, out)
            cost = attempt_cost(attempt)
            if cost is not None:
                total_cost = (total_cost or 0.0) + cost
            if served:
                own[sc.LOCKGATE_DEPLOYMENT] = attempt.deployment.id
        if request.cost_micros is not None:  # settled at the budgets' prices (litellm's map included)
            own[sc.LOCKGATE_COST_USD] = request.cost_micros / 1_000_000
        elif total_cost is not None:
            own[sc.LOCKGATE_COST_USD] = total_cost
        server.attributes.update(own)
        for decision in request.decisions:
            events.append((decision.name, self._clean(decision.attributes), int(decision.at * _NS)))
        final = request.attempts[-1] if request.attempts else None
        if final is not None and final.failure is not None and server.status.status_code is not StatusCode.ERROR:
            status = server.attributes.get(sc.HTTP_RESPONSE_STATUS_CODE)
            if isinstance(status, int) and status < 400:
                # The stream broke after its first byte: the client got an error event.
                server.attributes.setdefault(sc.ERROR_TYPE, final.failure.kind)  # "cancelled" stays
                server.status = Status(StatusCode.ERROR, "the upstream stream failed mid-way")

    def _attempt(
        self, parent: SpanContext, attempt: Attempt, index: int, common: Attrs, end_ns: int | None, output: str | None,
        out: SpanWriter,
    ) -> None:
        d = attempt.deployment
        attrs = dict(common)
        attrs[sc.LOCKGATE_ATTEMPT] = index + 1
        if attempt.summary is not None:
            _summary(attempt.summary, attrs)
            ttfc = time_to_first_chunk(attempt, common.get(sc.GEN_AI_REQUEST_STREAM) is True)
            if ttfc is not None:
                attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        cost = attempt_cost(attempt)
        if cost is not None:
            attrs[sc.LOCKGATE_COST_USD] = cost
        if output is not None:
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = output
        failure = attempt.failure
        if failure is not None:
            attrs[sc.ERROR_TYPE] = error_type(failure)
            attrs[sc.LOCKGATE_FAILURE_KIND] = failure.kind
            if failure.status is not None:
                attrs[sc.LOCKGATE_UPSTREAM_STATUS] = failure.status
        start = int(attempt.started * _NS)
        status = UNSET_STATUS if failure is None else Status(
            StatusCode.ERROR, scrub_secrets(failure.message, self._secrets)
        )
        out.span(
            parent, attempt.span_id or self._factory.span_id(), parent,
            f"{common[sc.GEN_AI_OPERATION_NAME]} {d.upstream_model}", SpanKind.CLIENT,
            start, end_ns if end_ns is not None else start + int(attempt.duration * _NS),
            self._deployments.span_group(d), attrs, (), status,
        )

    def _clean(self, attributes: dict[str, Any]) -> Attrs:
        """Decision attributes as recorded, with any secret scrubbed from text values."""
        return {
            k: scrub_secrets(v, self._secrets) if isinstance(v, str) else v
            for k, v in attributes.items()
            if v is not None
        }


def _kind(operation: str) -> str:
    return sc.OPENINFERENCE_EMBEDDING if operation == "embeddings" else sc.OPENINFERENCE_LLM


def _summary(summary: Summary, attrs: Attrs) -> None:
    if summary.response_id:
        attrs[sc.GEN_AI_RESPONSE_ID] = summary.response_id
    if summary.response_model:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = summary.response_model
    if summary.finish_reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(summary.finish_reasons)
    usage = summary.usage
    if usage is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cached_tokens is not None:
            attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
        if usage.reasoning_tokens is not None:
            attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
