"""The one table from an upstream failure to what the router does about it.

Every `UpstreamFailure` a provider reports is classified here, and only here, into a `Verdict`:
may the same deployment be tried again (after a wait), does it count against the deployment's
breaker, does it start a rate-limit cooldown, is it the client's own fault (returned at once, never
retried, never counted), or does it send the request to a special fallback chain (context window,
content policy). The router never looks at statuses itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.errors import UpstreamFailure

Fallback = Literal["context_window", "content_policy"]


@dataclass(frozen=True, slots=True)
class Verdict:
    # Short name for decisions and messages ("rate_limited", "server_error", "timeout", ...).
    reason: str
    # The request itself is wrong: answer the client now, with no retry and no breaker count.
    client_fault: bool = False
    # The same deployment may be tried again after a backoff (other deployments are tried first).
    retry_same: bool = False
    # Counts as a consecutive failure against the deployment's breaker.
    breaker: bool = False
    # Takes the deployment out of rotation for its Retry-After (or the configured cooldown).
    cooldown: bool = False
    # Move straight to this fallback chain if the request's model has one (else: client fault).
    fallback: Fallback | None = None


CLIENT_FAULT = Verdict("client_error", client_fault=True)
CONTEXT_WINDOW = Verdict("context_window_exceeded", client_fault=True, fallback="context_window")
CONTENT_POLICY = Verdict("content_policy", client_fault=True, fallback="content_policy")
# The gateway's own credentials or account at this deployment: another deployment may hold other
# credentials, but this one will keep failing, so it is not retried and its breaker counts it.
CREDENTIALS = Verdict("upstream_credentials", breaker=True)
RATE_LIMITED = Verdict("rate_limited", retry_same=True, cooldown=True)
SERVER_ERROR = Verdict("server_error", retry_same=True, breaker=True)
UPSTREAM_REJECTED = Verdict("upstream_rejected", breaker=True)
CONNECT = Verdict("connect_error", retry_same=True, breaker=True)
TIMEOUT = Verdict("timeout", retry_same=True, breaker=True)
BAD_RESPONSE = Verdict("bad_response", retry_same=True, breaker=True)
STREAM_CUT = Verdict("stream_cut", retry_same=True, breaker=True)

# Statuses that are the request's own fault: another attempt would fail the same way.
_CLIENT_STATUSES = frozenset({400, 404, 413, 422})
_BY_STATUS: dict[int, Verdict] = {
    401: CREDENTIALS,
    402: CREDENTIALS,
    403: CREDENTIALS,
    408: TIMEOUT,
    429: RATE_LIMITED,
}
_BY_KIND: dict[str, Verdict] = {
    "connect": CONNECT,
    "timeout": TIMEOUT,
    "bad_response": BAD_RESPONSE,
    "stream_cut": STREAM_CUT,
}
_CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter", "content_filtered"})
_CONTENT_POLICY_WORDS = ("content policy", "content management policy", "content_filter")


def classify(failure: UpstreamFailure) -> Verdict:
    """What the router does about one failed attempt."""
    if failure.is_context_length:
        return CONTEXT_WINDOW
    if failure.kind != "status" or failure.status is None:
        return _BY_KIND.get(failure.kind, SERVER_ERROR)
    status = failure.status
    if status in _CLIENT_STATUSES:
        if is_content_policy(failure):
            return CONTENT_POLICY
        return CLIENT_FAULT
    verdict = _BY_STATUS.get(status)
    if verdict is not None:
        return verdict
    if status >= 500:
        return SERVER_ERROR
    # Any other 4xx (409, 418, ...) is odd for this deployment: try another, do not insist here.
    return UPSTREAM_REJECTED


def is_content_policy(failure: UpstreamFailure) -> bool:
    if failure.code in _CONTENT_POLICY_CODES:
        return True
    message = failure.message.lower()
    return any(word in message for word in _CONTENT_POLICY_WORDS)
