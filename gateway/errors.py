"""The gateway's one exception tree and the one table from an error to its HTTP status and body.

Every failure a client can see is a `GatewayError`. Its class decides the HTTP status, the OpenAI
error `type` and `code`, and whether the client should retry (`x-should-retry`); `render_error`
turns it into OpenAI's `{"error": {"message", "type", "param", "code"}}` shape. Messages are written
for the person reading them: what happened and what to do. They never carry a provider key:
`scrub_secrets` is applied to every message that may contain upstream text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import orjson


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one kind of error looks on the wire."""

    status: int
    type: str
    code: str | None
    should_retry: bool


class GatewayError(Exception):
    """Base of every client-visible error. Subclasses pick their row of the table below."""

    spec: ClassVar[ErrorSpec] = ErrorSpec(500, "server_error", "internal_error", True)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = scrub_secrets(message)
        self.param = param
        self.code = code or self.spec.code
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.spec.status


# ---- client's own fault: never retried by the gateway, never counted against a breaker ----


class InvalidRequest(GatewayError):
    spec = ErrorSpec(400, "invalid_request_error", "invalid_request", False)


class MalformedJSON(InvalidRequest):
    spec = ErrorSpec(400, "invalid_request_error", "invalid_json", False)


class ContextLengthExceeded(InvalidRequest):
    spec = ErrorSpec(400, "invalid_request_error", "context_length_exceeded", False)


class AuthenticationFailed(GatewayError):
    spec = ErrorSpec(401, "invalid_request_error", "invalid_api_key", False)


class PermissionDenied(GatewayError):
    spec = ErrorSpec(403, "permission_denied", "model_not_allowed", False)


class PolicyViolation(GatewayError):
    """A policy rule refused the request or its response: retrying the same request will not help."""

    spec = ErrorSpec(403, "permission_denied", "policy_violation", False)

    def __init__(self, rule: str, message: str, *, phase: str = "pre_call") -> None:
        text = f"Blocked by policy '{rule}'" + (f": {message}" if message else ".")
        super().__init__(text, headers={"x-lockgate-policy": rule})
        self.rule = rule
        self.phase = phase


class NotFound(GatewayError):
    spec = ErrorSpec(404, "invalid_request_error", "not_found", False)


class ModelNotFound(NotFound):
    spec = ErrorSpec(404, "invalid_request_error", "model_not_found", False)


class ClientClosedRequest(GatewayError):
    """The client hung up before its body was read whole: nobody is left to answer (nginx's 499)."""

    spec = ErrorSpec(499, "invalid_request_error", "client_closed_request", False)


class PayloadTooLarge(GatewayError):
    spec = ErrorSpec(413, "invalid_request_error", "request_too_large", False)


class UnsupportedMediaType(GatewayError):
    """A body in a format the endpoint cannot carry on (OTLP/JSON spans to a gRPC collector)."""

    spec = ErrorSpec(415, "invalid_request_error", "unsupported_media_type", False)


class UnprocessableEntity(GatewayError):
    spec = ErrorSpec(422, "invalid_request_error", "unprocessable_entity", False)


class StateConflict(GatewayError):
    """A session state write based on a version that is no longer current: nothing was written."""

    spec = ErrorSpec(409, "invalid_request_error", "state_conflict", False)


class TracesNotExported(GatewayError):
    """`POST /v1/traces` on a gateway that exports no traces over OTLP: the spans would be lost."""

    spec = ErrorSpec(501, "server_error", "traces_not_exported", False)


class RateLimited(GatewayError):
    """The caller's own rate limit: retrying after `retry_after` helps."""

    spec = ErrorSpec(429, "rate_limit_error", "rate_limit_exceeded", True)


class BudgetExceeded(GatewayError):
    """A budget has no room for the request: retrying will not help until the period resets."""

    spec = ErrorSpec(429, "insufficient_quota", "budget_exceeded", False)


class GovernanceUnavailable(GatewayError):
    """The store that holds keys, budgets or rate limits cannot be reached (fail-closed mode)."""

    spec = ErrorSpec(503, "server_error", "governance_store_unavailable", True)


class ApprovalsUnavailable(GatewayError):
    """A tool call needs a human's approval and its hold cannot be stored: the call is not released."""

    spec = ErrorSpec(503, "server_error", "approvals_store_unavailable", True)


# ---- upstream trouble the gateway could not route around ----


class UpstreamError(GatewayError):
    """An upstream failed and no other deployment could serve the request."""

    spec = ErrorSpec(502, "server_error", "upstream_error", True)


class UpstreamBadResponse(UpstreamError):
    """The upstream answered something that is not a valid response (garbage, cut JSON)."""

    spec = ErrorSpec(502, "server_error", "upstream_bad_response", True)


class UpstreamRateLimited(UpstreamError):
    spec = ErrorSpec(429, "rate_limit_error", "upstream_rate_limited", True)


class UpstreamTimeout(UpstreamError):
    spec = ErrorSpec(504, "server_error", "upstream_timeout", True)


class ServiceUnavailable(UpstreamError):
    """Every deployment that could serve the request is down or cooling down."""

    spec = ErrorSpec(503, "server_error", "service_unavailable", True)


class InternalError(GatewayError):
    spec = ErrorSpec(500, "server_error", "internal_error", True)


def render_error(error: GatewayError, *, anthropic: bool = False) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers for an error, in OpenAI's error shape (Anthropic's for `/v1/messages`)."""
    if anthropic:
        body = anthropic_error_body(error.status, error.message)
    else:
        body = orjson.dumps(
            {
                "error": {
                    "message": error.message,
                    "type": error.spec.type,
                    "param": error.param,
                    "code": error.code,
                }
            }
        )
    headers = {"x-should-retry": "true" if error.spec.should_retry else "false", **error.headers}
    if error.retry_after is not None:
        # Whole seconds for `retry-after` (RFC 9110), milliseconds for the OpenAI SDK's finer hint.
        headers["retry-after"] = str(max(1, int(error.retry_after + 0.999)))
        headers["retry-after-ms"] = str(max(1, int(error.retry_after * 1000)))
    return error.status, body, headers


def stream_error_event(error: GatewayError) -> bytes:
    """An SSE event carrying an error; the `openai` SDK raises it as `APIError` mid-stream."""
    payload = orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.spec.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )
    return b"data: " + payload + b"\n\n"


# Anthropic's error `type` for each status (its SDK picks the exception class by status; the type is
# what its users log and match on). A 503 is "overloaded" there: the status Anthropic itself uses is 529.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error",
}


def status_of(code: object, kind: object) -> int:
    """The HTTP status an OpenAI-shaped error's code (else its type) stands for: a stream's error event
    has no status of its own, and a client of another API shape reads one from it."""
    found = _STATUS_BY_CODE.get(code) if isinstance(code, str) and code else None
    return found or _STATUS_BY_TYPE.get(kind if isinstance(kind, str) else "", 500)


_STATUS_BY_TYPE = {"invalid_request_error": 400, "permission_denied": 403, "rate_limit_error": 429,
                   "insufficient_quota": 429}


# Paths whose clients expect Anthropic's error shape (`render_error(..., anthropic=True)`).
ANTHROPIC_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})  # the second: a 404 they can read


def anthropic_error_body(status: int, message: str) -> bytes:
    """Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}` (also a stream's error event)."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


# Provider keys and bearer tokens that may be echoed back in upstream error text.
_SECRET_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}"
    r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{20,}|xox[baprs]-[A-Za-z0-9\-]{8,})"
)


def scrub_secrets(text: str, known: tuple[str, ...] = ()) -> str:
    """Replace anything that looks like a key, and every known secret, with a marker."""
    for secret in known:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SECRET_PATTERNS.sub("[redacted]", text)


class UpstreamFailure(Exception):
    """One failed attempt at one deployment, as the providers report it (never shown as is).

    The routing layer classifies it (retry, next deployment, breaker, client's fault) and, when
    nothing else can serve the request, turns it into a `GatewayError` with `to_client_error`.
    """

    # What went wrong: "status" (the upstream answered an error status), "connect", "timeout",
    # "bad_response" (unparseable or invalid body), "stream_cut" (a stream ended or broke early).
    kind: str

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = scrub_secrets(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.param = param
        self.error_type = error_type

    @property
    def is_context_length(self) -> bool:
        return self.code == "context_length_exceeded" or "context length" in self.message.lower()

    @property
    def is_client_fault(self) -> bool:
        """The request itself is wrong: another attempt or deployment would fail the same way."""
        return self.kind == "status" and self.status in _CLIENT_FAULT_STATUSES or self.is_context_length

    def to_client_error(self, deployment_label: str) -> GatewayError:
        """The error the client sees when this was the last failure of its request."""
        where = f"upstream {deployment_label}"
        if self.is_context_length:
            return ContextLengthExceeded(f"{where}: {self.message}", param=self.param or "messages")
        if self.kind == "status" and self.status is not None:
            cls = _CLIENT_STATUS_ERRORS.get(self.status)
            if cls is not None:
                return cls(f"{where} rejected the request: {self.message}", param=self.param, code=self.code)
            if self.status == 429:
                return UpstreamRateLimited(
                    f"{where} is rate limiting: {self.message}", retry_after=self.retry_after
                )
            return UpstreamError(
                f"{where} failed with HTTP {self.status}: {self.message}", retry_after=self.retry_after or 1.0
            )
        if self.kind == "timeout":
            return UpstreamTimeout(f"{where} timed out: {self.message}", retry_after=1.0)
        if self.kind == "bad_response":
            return UpstreamBadResponse(f"{where} sent an invalid response: {self.message}", retry_after=1.0)
        return UpstreamError(f"{where} is unreachable: {self.message}", retry_after=1.0)


# Upstream statuses that are the request's own fault, and how the client sees them. A 401/403 from
# the upstream is the gateway's credential problem, not the caller's: it is a 502 for the client.
_CLIENT_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    404: NotFound,
    413: PayloadTooLarge,
    422: UnprocessableEntity,
}
_CLIENT_FAULT_STATUSES = frozenset(_CLIENT_STATUS_ERRORS)


def _statuses_by_code() -> dict[str, int]:
    found: dict[str, int] = {}
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        if cls.spec.code:
            found.setdefault(cls.spec.code, cls.spec.status)
        pending += cls.__subclasses__()
    return found


_STATUS_BY_CODE = _statuses_by_code()
