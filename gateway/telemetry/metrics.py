"""The gateway's metrics, recorded from a finished request's values (attempts, decisions, status).

GenAI client metrics per upstream attempt (`gen_ai.client.token.usage`,
`gen_ai.client.operation.duration`, `gen_ai.client.operation.time_to_first_chunk`, with the
conventions' bucket boundaries) and Lockgate's own: requests by model, deployment and status,
attempts by outcome, retries (another attempt in the same group) and fallbacks (an attempt in the
next group), every decision by name, breaker state per deployment, and cost when prices are known.

Breaker state is read from decisions: any decision named `lockgate.breaker.<state>` (open/opened,
half_open/half_opened, close/closed) carrying the deployment id under `deployment` or
`lockgate.deployment.id` moves that deployment's gauge. Attribute dicts are cached per key, so a
steady workload allocates none per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from gateway.context import ApiRequest, Attempt, Decision
from gateway.telemetry import decision_metrics
from gateway.telemetry import semconv as sc
from gateway.telemetry.attributes import DeploymentAttributes, attempt_cost, error_type, time_to_first_chunk
from gateway.telemetry.histograms import LeanHistograms, _Series
from gateway.telemetry.span_export import ExportCounts

Attrs = dict[str, Any]


class BreakerChange(Protocol):
    """What a breaker transition carries, as routing reports it (telemetry does not import routing)."""

    @property
    def deployment_id(self) -> str: ...

    @property
    def new(self) -> str: ...


class _Tally:
    """A counter aggregated here and read by the SDK only at collection (scrape or export) time.

    The SDK validates and hashes attributes on every `add`; a tally costs a dict lookup per request,
    which matters on the hot path (see bench/telemetry_overhead.py).
    """

    def __init__(self) -> None:
        self._series: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, key: tuple[Any, ...], attrs: Callable[[], Attrs], amount: float = 1) -> None:
        found = self._series.get(key)
        if found is None:
            self._series[key] = [attrs(), amount]
        else:
            found[1] += amount

    def entry(self, key: tuple[Any, ...], attrs: Callable[[], Attrs]) -> list[Any]:
        """The series `key` as its `[attributes, amount]` pair (made at 0 if new), to add to directly."""
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = [attrs(), 0]
        return found

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attrs) for attrs, value in list(self._series.values())]


@dataclass(slots=True)
class _Shape:
    """Where a common request's figures go (one served attempt with usage), found once per shape:
    its series in every metric, so recording one is additions, not a lookup per metric."""

    requests: list[Any]
    request_duration: _Series
    duration: _Series
    tokens_in: _Series
    tokens_out: _Series
    outcome: list[Any]
    base: Attrs  # the attempt's attributes in the GenAI metrics (time to first chunk: made when first seen)
    ttfc: _Series | None = None
    cost: list[Any] | None = None


class GatewayMetrics:
    def __init__(
        self, meter: Meter, histograms: LeanHistograms, deployments: DeploymentAttributes, counts: ExportCounts | None
    ) -> None:
        self._deployments = deployments
        self._cache: dict[tuple[Any, ...], Attrs] = {}
        self._lock = histograms.lock
        # Bounded like the labels: routes x statuses x model groups x deployments x response models.
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        # Every deployment starts closed, so the gauge has a series per deployment from the start.
        self._breakers: dict[str, int] = dict.fromkeys(deployments.deployment_ids(), sc.BREAKER_CLOSED)
        self._token_usage = histograms.create(
            sc.METRIC_TOKEN_USAGE, "{token}", "Number of input and output tokens used.", sc.TOKEN_BUCKETS
        )
        self._duration = histograms.create(
            sc.METRIC_OPERATION_DURATION, "s", "GenAI operation duration.", sc.DURATION_BUCKETS
        )
        self._ttfc = histograms.create(
            sc.METRIC_TIME_TO_FIRST_CHUNK, "s", "Time to receive the first chunk of a stream.", sc.TTFC_BUCKETS
        )
        self._request_duration = histograms.create(
            sc.METRIC_REQUEST_DURATION, "s", "Time from request to the response's last byte.", sc.DURATION_BUCKETS
        )
        self._requests, self._attempts, self._retries = _Tally(), _Tally(), _Tally()
        self._fallbacks, self._decisions, self._cost = _Tally(), _Tally(), _Tally()
        counters: tuple[tuple[str, _Tally, str, str], ...] = (
            (sc.METRIC_REQUESTS, self._requests, "{request}", "Requests by model group, deployment and status."),
            (sc.METRIC_ATTEMPTS, self._attempts, "{attempt}", "Upstream attempts by deployment and outcome."),
            (sc.METRIC_RETRIES, self._retries, "{attempt}", "Attempts after a failure in the same model group."),
            (sc.METRIC_FALLBACKS, self._fallbacks, "{attempt}", "Attempts moved on to a fallback model group."),
            (sc.METRIC_DECISIONS, self._decisions, "{decision}", "Decisions the gateway recorded, by name."),
            (sc.METRIC_COST, self._cost, "{USD}", "Cost of upstream calls, where prices are configured."),
        )
        for name, tally, unit, description in counters:
            meter.create_observable_counter(name, callbacks=[tally.observe], unit=unit, description=description)
        # Governance and oversight counters, read from the decisions (see decision_metrics).
        self._by_decision: dict[str, _Tally] = {}
        for counter in decision_metrics.counters():
            tally = self._by_decision[counter.metric] = _Tally()
            meter.create_observable_counter(
                counter.metric, callbacks=[tally.observe], unit=counter.unit, description=counter.description
            )
        # Holds awaiting a decision, store-wide: published by the approvals' counter (policies/pending.py).
        self._pending_holds: int | None = None
        meter.create_observable_gauge(
            sc.METRIC_PENDING_HOLDS, callbacks=[self._observe_pending_holds], unit="{hold}",
            description="Held responses awaiting a reviewer's decision, as the store lists them (same on every replica).",
        )
        meter.create_observable_gauge(
            sc.METRIC_BREAKER_STATE, callbacks=[self._observe_breakers], unit="1",
            description="Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
        )
        if counts is not None:
            meter.create_observable_counter(
                sc.METRIC_SPANS_EXPORTED, callbacks=[_span_counts(counts)], unit="{span}",
                description="Spans by export result: exported, failed (collector unreachable), dropped (queue full).",
            )

    def _attrs(self, key: tuple[Any, ...], build: Callable[[], Attrs]) -> Attrs:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build()
        return found

    def record(self, request: ApiRequest | None, status: int, duration: float, route: str) -> None:
        if request is None:
            key: tuple[Any, ...] = ("req", route, status)
            attrs = self._attrs(key, lambda: {sc.HTTP_ROUTE: route, sc.HTTP_RESPONSE_STATUS_CODE: status})
            self._requests.add(key, lambda: attrs)
            self._request_duration.record(key, lambda: attrs, duration)
            return
        attempts = request.attempts
        if len(attempts) == 1 and attempts[0].failure is None and attempts[0].summary is not None \
                and attempts[0].summary.usage is not None:
            self._record_common(request, attempts[0], status, duration, route)
            for decision in request.decisions:
                self._record_decision(decision)
            return
        self._record_general(request, status, duration, route)

    def _record_general(self, request: ApiRequest, status: int, duration: float, route: str) -> None:
        """Any request: every attempt (retries, fallbacks, failures) and every decision."""
        attempts = request.attempts
        served = attempts[-1] if attempts and attempts[-1].failure is None else None
        deployment = served.deployment.id if served else ""
        model = self._deployments.model_label(request.model)
        key = ("req", route, status, model, deployment)
        attrs = self._attrs(
            key,
            lambda: {
                sc.HTTP_ROUTE: route, sc.HTTP_RESPONSE_STATUS_CODE: status,
                sc.GEN_AI_REQUEST_MODEL: model, sc.LOCKGATE_DEPLOYMENT: deployment,
            },
        )
        self._requests.add(key, lambda: attrs)
        self._request_duration.record(key, lambda: attrs, duration)
        previous: Attempt | None = None
        for attempt in attempts:
            # A served stream's operation lasts until its last byte, which is now.
            whole = time.time() - attempt.started if request.stream and attempt is served else attempt.duration
            self._record_attempt(request, attempt, previous, whole, attempt is served)
            previous = attempt
        for decision in request.decisions:
            self._record_decision(decision)

    def _record_common(self, request: ApiRequest, attempt: Attempt, status: int, duration: float, route: str) -> None:
        """`record` for one served attempt with usage (nearly every request): the same series and values
        as the general path below, through the request's `_Shape`."""
        summary = attempt.summary
        assert summary is not None and summary.usage is not None
        d = attempt.deployment
        response_model = summary.response_model or None
        model = self._deployments.model_label(request.model)
        key = (route, status, model, request.operation, request.stream, d.id, response_model)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._shape(request, attempt, status, route, model, response_model)
        stream = request.stream
        whole = time.time() - attempt.started if stream else attempt.duration
        ttfc = time_to_first_chunk(attempt, stream)
        settled = request.cost_micros
        cost = settled / 1_000_000 if settled is not None else attempt_cost(attempt)
        if ttfc is not None and shape.ttfc is None:
            base = shape.base
            shape.ttfc = self._ttfc.series(self._op_key(request.operation, attempt.deployment.id, None, response_model), lambda: base)
        if cost is not None and shape.cost is None:
            shape.cost = self._cost.entry((d.id,), lambda: {sc.LOCKGATE_DEPLOYMENT: d.id, sc.LOCKGATE_MODEL_GROUP: d.group})
        shape.requests[1] += 1
        shape.outcome[1] += 1
        if cost is not None and shape.cost is not None:
            shape.cost[1] += cost
        with self._lock:
            self._request_duration.add(shape.request_duration, duration)
            self._duration.add(shape.duration, whole)
            if ttfc is not None and shape.ttfc is not None:
                self._ttfc.add(shape.ttfc, ttfc)
            self._token_usage.add(shape.tokens_in, summary.usage.input_tokens)
            self._token_usage.add(shape.tokens_out, summary.usage.output_tokens)

    @staticmethod
    def _op_key(operation: str, deployment_id: str, err: str | None, response_model: str | None) -> tuple[Any, ...]:
        """The GenAI metrics' series of an attempt (the shortcut and the general path must agree)."""
        return ("op", operation, deployment_id, err, response_model)

    def _shape(
        self, request: ApiRequest, attempt: Attempt, status: int, route: str, model: str, response_model: str | None
    ) -> _Shape:
        d = attempt.deployment
        key = ("req", route, status, model, d.id)
        attrs = self._attrs(key, lambda: {
            sc.HTTP_ROUTE: route, sc.HTTP_RESPONSE_STATUS_CODE: status,
            sc.GEN_AI_REQUEST_MODEL: model, sc.LOCKGATE_DEPLOYMENT: d.id,
        })
        op_key = self._op_key(request.operation, attempt.deployment.id, None, response_model)
        base = self._attrs(op_key, lambda: self._deployments.metric_attrs(d, request.operation, None, response_model))
        return _Shape(
            requests=self._requests.entry(key, lambda: attrs),
            request_duration=self._request_duration.series(key, lambda: attrs),
            duration=self._duration.series(op_key, lambda: base),
            tokens_in=self._token_usage.series(
                (*op_key, "in"), lambda: {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}),
            tokens_out=self._token_usage.series(
                (*op_key, "out"), lambda: {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}),
            outcome=self._attempts.entry(
                ("outcome", d.id, None), lambda: {sc.LOCKGATE_DEPLOYMENT: d.id, sc.LOCKGATE_OUTCOME: "ok"}),
            base=base,
        )

    def _record_attempt(
        self, request: ApiRequest, attempt: Attempt, previous: Attempt | None, duration: float, served: bool
    ) -> None:
        d = attempt.deployment
        failure = attempt.failure
        err = error_type(failure) if failure else None
        summary = attempt.summary
        response_model = summary.response_model if summary and summary.response_model else None
        op_key = self._op_key(request.operation, d.id, err, response_model)
        base = self._attrs(
            op_key, lambda: self._deployments.metric_attrs(d, request.operation, err, response_model)
        )
        self._duration.record(op_key, lambda: base, duration)
        self._attempts.add(("outcome", d.id, err), lambda: {sc.LOCKGATE_DEPLOYMENT: d.id, sc.LOCKGATE_OUTCOME: err or "ok"})
        if previous is not None:
            tally = self._retries if previous.deployment.group == d.group else self._fallbacks
            tally.add((d.group,), lambda: {sc.LOCKGATE_MODEL_GROUP: d.group})
        if summary is None:
            return
        ttfc = time_to_first_chunk(attempt, request.stream)
        if ttfc is not None:
            self._ttfc.record(op_key, lambda: base, ttfc)
        usage = summary.usage
        if usage is not None:
            self._token_usage.record(
                (*op_key, "in"), lambda: {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}, usage.input_tokens)
            self._token_usage.record(
                (*op_key, "out"), lambda: {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}, usage.output_tokens)
            # The served call's settled cost (the budgets' price book, litellm's map included) when known.
            settled = request.cost_micros if served else None
            cost = settled / 1_000_000 if settled is not None else attempt_cost(attempt)
            if cost is not None:
                self._cost.add((d.id,), lambda: {sc.LOCKGATE_DEPLOYMENT: d.id, sc.LOCKGATE_MODEL_GROUP: d.group}, cost)

    def _record_decision(self, decision: Decision) -> None:
        name = decision.name
        self._decisions.add((name,), lambda: {sc.LOCKGATE_DECISION: name})
        counter = decision_metrics.counter_for(name)
        if counter is not None:
            labels = counter.labels(decision)
            if labels is not None:
                key, attrs = labels
                self._by_decision[counter.metric].add(key, lambda: attrs, counter.amount(decision))
        if name.startswith(sc.DECISION_BREAKER_PREFIX):
            state = _breaker_state(name[len(sc.DECISION_BREAKER_PREFIX) :])
            deployment = next((decision.attributes[k] for k in sc.DEPLOYMENT_KEYS if k in decision.attributes), None)
            if state is not None and deployment is not None:
                self._breakers[str(deployment)] = state

    def breaker_transition(self, transition: BreakerChange) -> None:
        """A breaker listener (routing's `breakers.listeners`): catches transitions no request saw."""
        state = _breaker_state(transition.new)
        if state is not None:
            self._breakers[transition.deployment_id] = state

    def set_pending_holds(self, count: int) -> None:
        self._pending_holds = count

    def _observe_pending_holds(self, options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._pending_holds is None else [Observation(self._pending_holds)]

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(state, {sc.LOCKGATE_DEPLOYMENT: d}) for d, state in list(self._breakers.items())]


def _breaker_state(suffix: str) -> int | None:
    if suffix.startswith("half"):
        return sc.BREAKER_HALF_OPEN
    if suffix.startswith("open"):
        return sc.BREAKER_OPEN
    if suffix.startswith("close"):
        return sc.BREAKER_CLOSED
    return None


def _span_counts(counts: ExportCounts) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(counts.exported, {sc.LOCKGATE_EXPORT_RESULT: "exported"}),
            Observation(counts.failed, {sc.LOCKGATE_EXPORT_RESULT: "failed"}),
            Observation(counts.dropped, {sc.LOCKGATE_EXPORT_RESULT: "dropped"}),
        ]

    return observe
