"""The request as the pipeline sees it: parsed once at the edge, then passed down explicitly.

Stages record what they decided on the request itself, as values: `attempts` (one per upstream
call) and `decisions` (retry waits, fallbacks, breaker transitions, policy verdicts, budget moves).
The telemetry layer turns them into spans and span events; business code never touches a span.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway.config.runtime import Deployment, Principal
from gateway.errors import UpstreamFailure

if TYPE_CHECKING:
    from gateway.providers.base import Summary

Operation = Literal["chat", "embeddings"]
# Where the API leaves the parsed request in the ASGI scope's state, for the telemetry middleware.
SCOPE_KEY = "lockgate.request"
# Where the error boundary leaves the type of an unexpected exception it answered with a 500.
UNEXPECTED_ERROR_KEY = "lockgate.unexpected_error"
# Where the telemetry middleware leaves the SERVER span's (trace id, trace flags) for upstream calls.
TRACE_KEY = "lockgate.trace"
AttributeValue = str | int | float | bool


@dataclass(slots=True)
class Attempt:
    """One call to one deployment."""

    deployment: Deployment
    # Wall-clock start (seconds since the epoch) and duration in seconds.
    started: float
    duration: float = 0.0
    failure: UpstreamFailure | None = None
    # What the gateway read from the response (filled as a stream goes by).
    summary: Summary | None = None
    # The CLIENT span's id when the request is traced: chosen before the call, so the upstream's
    # `traceparent` names it as the parent.
    span_id: int | None = None


@dataclass(slots=True)
class Decision:
    """Something the gateway decided, with its reasons: becomes a span event named `name`."""

    name: str
    attributes: dict[str, AttributeValue]
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class ApiRequest:
    request_id: str
    operation: Operation
    headers: Mapping[str, str]
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool = False
    include_usage: bool = False
    principal: Principal | None = None
    session_id: str | None = None
    user: str | None = None
    # Loop time at which the request must be answered; set by the pipeline from the timeouts.
    deadline: float = 0.0
    # The SERVER span's (trace id, trace flags) when tracing is on: upstream calls carry it on.
    trace: tuple[int, int] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # OpenAI's x-ratelimit-* headers for the key's rate limits, set by the budget gate when it reserved.
    ratelimit_headers: dict[str, str] | None = None
    # What the served call cost in micro-dollars at the prices budgets use, once settled (unknown
    # price: None). JSON responses carry it as `x-lockgate-cost-usd`.
    cost_micros: int | None = None
    # How many of `decisions` the policy stage has sent to the audit log (it audits each once).
    audited: int = 0

    def decide(self, name: str, **attributes: AttributeValue) -> None:
        self.decisions.append(Decision(name, attributes))


def upstream_trace(trace: tuple[int, int] | None) -> tuple[int | None, str | None]:
    """A span id for an upstream attempt and the W3C `traceparent` naming it, when the request is traced.

    Upstreams that trace (vLLM, TGI, another Lockgate) then parent their spans under the gateway's
    CLIENT span. Baggage is not forwarded: it may hold the caller's user and session ids, which are
    not a third-party provider's business.
    """
    if trace is None:
        return None, None
    span_id = random.getrandbits(64) or 1
    return span_id, f"00-{trace[0]:032x}-{span_id:016x}-{trace[1]:02x}"
