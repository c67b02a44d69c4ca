"""A request's deadline: the configured timeout, shortened by the client's `x-lockgate-timeout` header.

The header lets one caller ask for less time than the gateway allows (an agent with its own budget
for a step), never more. A value that is not a positive number of seconds is the client's error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gateway.errors import InvalidRequest

TIMEOUT_HEADER = "x-lockgate-timeout"


def request_timeout(headers: Mapping[str, str], configured: float) -> float:
    """Seconds the request may take in all."""
    asked = headers.get(TIMEOUT_HEADER)
    if asked is None:
        return configured
    try:
        seconds = float(asked)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise InvalidRequest(
            f"The {TIMEOUT_HEADER} header must be a positive number of seconds.", param=TIMEOUT_HEADER
        )
    return min(seconds, configured)
