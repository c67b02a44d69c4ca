"""Every telemetry name Lockgate emits, in one place: OpenTelemetry semantic conventions v1.41.

The GenAI conventions are still "development" and the next release renames metrics, so no other
module spells an attribute, span, event or metric name: they import it from here. Lockgate's own
names live under `lockgate.*`. `StabilityOptIn` reads `OTEL_SEMCONV_STABILITY_OPT_IN`.

Lockgate is a new instrumentation, so by default it emits the latest GenAI conventions it knows
(v1.41; `gen_ai_latest_experimental` asks for exactly that) and the stable HTTP conventions;
`http/dup` adds the old HTTP names beside the stable ones for back-ends still reading them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
INSTRUMENTATION_NAME = "lockgate"

# ------------------------------------------------------------------ GenAI attributes (v1.41)
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"

# `gen_ai.request.*` parameters read from an OpenAI-shaped body: body key -> attribute.
CHAT_NUMERIC_PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", GEN_AI_REQUEST_TEMPERATURE),
    ("max_tokens", GEN_AI_REQUEST_MAX_TOKENS),
    ("max_completion_tokens", GEN_AI_REQUEST_MAX_TOKENS),
    ("top_p", GEN_AI_REQUEST_TOP_P),
    ("top_k", GEN_AI_REQUEST_TOP_K),
    ("frequency_penalty", GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("seed", GEN_AI_REQUEST_SEED),
)

TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"

# ------------------------------------------------------------------ general attributes
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
SESSION_ID = "session.id"
USER_ID = "user.id"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_LLM = "LLM"
OPENINFERENCE_EMBEDDING = "EMBEDDING"
OPENINFERENCE_CHAIN = "CHAIN"
# Baggage keys an agent can set instead of headers.
BAGGAGE_SESSION_ID = "session.id"
BAGGAGE_USER_ID = "user.id"

# HTTP server (stable since v1.23) and the old names `http/dup` adds.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
CLIENT_ADDRESS = "client.address"
OLD_HTTP_METHOD = "http.method"
OLD_HTTP_TARGET = "http.target"
OLD_HTTP_STATUS_CODE = "http.status_code"
OLD_HTTP_SCHEME = "http.scheme"

# ------------------------------------------------------------------ Lockgate's own
LOCKGATE_REQUEST_ID = "lockgate.request_id"
LOCKGATE_MODEL_GROUP = "lockgate.model_group"
LOCKGATE_DEPLOYMENT = "lockgate.deployment.id"
LOCKGATE_ATTEMPT = "lockgate.attempt"
LOCKGATE_ATTEMPTS = "lockgate.attempts"
LOCKGATE_FAILURE_KIND = "lockgate.failure.kind"
LOCKGATE_UPSTREAM_STATUS = "lockgate.upstream.status_code"
LOCKGATE_COST_USD = "lockgate.cost.usd"
LOCKGATE_TEAM = "lockgate.team"
LOCKGATE_KEY_NAME = "lockgate.key.name"
LOCKGATE_OUTCOME = "lockgate.outcome"
LOCKGATE_DECISION = "lockgate.decision"
LOCKGATE_BREAKER_STATE = "lockgate.breaker.state"
LOCKGATE_EXPORT_RESULT = "lockgate.export.result"
LOCKGATE_POLICY_RULE = "lockgate.policy.rule"
LOCKGATE_POLICY_ACTION = "lockgate.policy.action"
LOCKGATE_POLICY_PHASE = "lockgate.policy.phase"
LOCKGATE_BUDGET_SCOPE = "lockgate.budget.scope"
LOCKGATE_ALERT_THRESHOLD = "lockgate.alert.threshold"
LOCKGATE_LIMIT_KIND = "lockgate.ratelimit.kind"

# Decision names the metrics read (anyone may record others; every decision becomes an event).
DECISION_BREAKER_PREFIX = "lockgate.breaker."
# Attribute keys a breaker decision may name its deployment with.
DEPLOYMENT_KEYS = ("deployment", LOCKGATE_DEPLOYMENT)

# Response header carrying the trace id.
TRACE_ID_HEADER = b"x-lockgate-trace-id"
SESSION_HEADER = "x-lockgate-session-id"

# ------------------------------------------------------------------ metrics
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
METRIC_REQUESTS = "lockgate.requests"
METRIC_REQUEST_DURATION = "lockgate.request.duration"
METRIC_ATTEMPTS = "lockgate.attempts"
METRIC_RETRIES = "lockgate.retries"
METRIC_FALLBACKS = "lockgate.fallbacks"
METRIC_DECISIONS = "lockgate.decisions"
METRIC_BREAKER_STATE = "lockgate.breaker.state"
METRIC_COST = "lockgate.cost"
METRIC_SPANS_EXPORTED = "lockgate.telemetry.spans"
METRIC_POLICY_VERDICTS = "lockgate.policy.verdicts"
METRIC_BUDGET_REFUSALS = "lockgate.budget.refusals"
METRIC_BUDGET_SPEND = "lockgate.budget.spend"
METRIC_BUDGET_ALERTS = "lockgate.budget.alerts"
METRIC_RATELIMIT_REFUSALS = "lockgate.ratelimit.refusals"
METRIC_CAPACITY_EXHAUSTED = "lockgate.capacity.exhausted"
METRIC_HOLDS = "lockgate.approval.holds"
METRIC_PENDING_HOLDS = "lockgate.approval.pending"

# The conventions' ExplicitBucketBoundaries.
TOKEN_BUCKETS: tuple[float, ...] = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67108864
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TTFC_BUCKETS = DURATION_BUCKETS

# Breaker states as the gauge reports them.
BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN = 0, 1, 2

# ------------------------------------------------------------------ environment
ENV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@dataclass(frozen=True, slots=True)
class StabilityOptIn:
    """What `OTEL_SEMCONV_STABILITY_OPT_IN` asks for (a comma-separated list)."""

    old_http: bool = False
    gen_ai_latest: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StabilityOptIn:
        values = {v.strip() for v in environ.get(ENV_STABILITY_OPT_IN, "").split(",") if v.strip()}
        # `http` alone means stable only (our default); `http/dup` means both.
        return cls(old_http="http/dup" in values, gen_ai_latest=True)
