"""What the client gets when nothing in the chain could serve the request.

After attempts: the last failure, as the client's error, with every attempt and every deployment
found down named in the message. Without any attempt: an immediate 503 whose `retry-after` is the
soonest reopening among the deployments that were down, and a message naming each and why; a 429
(`rate_limit_exceeded`) instead when every one of them was only at capacity (its `rpm`/`tpm`): nothing
is broken, the client is asked to slow down, as an upstream at its own rate limit would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.context import ApiRequest, Attempt
from gateway.errors import ContextLengthExceeded, GatewayError, RateLimited, ServiceUnavailable
from gateway.routing.classify import classify
from gateway.routing.windows import TooLong


@dataclass(slots=True)
class Down:
    """Why a deployment could not be tried, and when it may be again (epoch seconds)."""

    reason: str
    until: float
    # Skipped only for having no room this minute (its rpm/tpm), not for being broken.
    at_capacity: bool = False


def exhausted(request: ApiRequest, down: dict[str, Down], too_long: TooLong | None) -> GatewayError:
    attempts = request.attempts
    if attempts:
        last = attempts[-1]
        assert last.failure is not None
        tried = ", ".join(
            f"{a.deployment.id} ({classify(a.failure).reason if a.failure else 'ok'})" for a in attempts
        )
        error = last.failure.to_client_error(last.deployment.id)
        unavailable = f" Unavailable: {describe(down)}." if down else ""
        error.message = (
            f"{_every(len(attempts))} for '{request.model}' failed [{tried}].{unavailable}"
            f" Last: {error.message}"
        )
        return with_attempts(error, attempts)
    if down:
        soonest = max(0.001, min(d.until for d in down.values()) - time.time())
        if all(d.at_capacity for d in down.values()):
            request.decide("lockgate.capacity.exhausted", deployments=len(down), retry_after_s=round(soonest, 3))
            return with_attempts(
                RateLimited(
                    f"Every deployment that can serve '{request.model}' is at capacity: {describe(down)}."
                    " Retry after the time in the retry-after header.",
                    retry_after=soonest,
                ),
                attempts,
            )
        request.decide("lockgate.unavailable", deployments=len(down), retry_after_s=round(soonest, 3))
        return with_attempts(
            ServiceUnavailable(
                f"Every deployment that can serve '{request.model}' is unavailable: {describe(down)}."
                " Retry after the time in the retry-after header.",
                retry_after=soonest,
            ),
            attempts,
        )
    if too_long is not None:
        return ContextLengthExceeded(
            f"The prompt (about {too_long.tokens} tokens) is longer than the context window of every model"
            f" '{request.model}' can fall back to.",
            param="messages",
        )
    return ServiceUnavailable(
        f"No deployment of '{request.model}' could be tried before the request's deadline."
    )


def describe(down: dict[str, Down]) -> str:
    now = time.time()
    return "; ".join(f"{i}: {d.reason}, for {remaining(d.until - now)}" for i, d in down.items())


def remaining(seconds: float) -> str:
    """A wait as people read it: a provider's Retry-After of 50 ms is "50 ms", never "0.0s"."""
    if seconds < 1:
        milliseconds = round(seconds * 1000)
        return f"{milliseconds} ms" if milliseconds >= 1 else "under 1 ms"
    return f"{seconds:.1f}s"


def _every(attempts: int) -> str:
    return "The only attempt" if attempts == 1 else f"All {attempts} attempts"


def with_attempts(error: GatewayError, attempts: list[Attempt]) -> GatewayError:
    error.headers["x-lockgate-attempts"] = str(len(attempts))
    return error
