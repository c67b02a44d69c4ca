"""Warnings that a bad day would repeat on every request, logged at most once per interval.

When the store or a webhook is down, the same warning fires for every request that touches it: a
ten-second Redis outage under load wrote ~19,000 identical lines (bench/soak.py --outage store),
burying the one line an operator needs and costing CPU when the gateway is already struggling.
A `ThrottledWarning` logs the first occurrence at once, then at most one line per `interval`
seconds saying how many were held back since; the request-level detail stays on each request's
trace (its decisions), where it belongs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledWarning:
    """One kind of warning (one call site), at most once per `interval` seconds, with a count of the rest."""

    __slots__ = ("_clock", "_held", "_interval", "_last", "_log")

    def __init__(self, log: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._log = log
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._held = 0

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            self._held += 1
            return
        if self._held:
            message += " (and %d more like it in the last %.0fs)"
            args = (*args, self._held, now - self._last)
        self._last, self._held = now, 0
        self._log.warning(message, *args, exc_info=exc_info)
