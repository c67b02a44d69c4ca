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


class ThrottleRepeats(logging.Filter):
    """A handler filter for other libraries' loggers: each message (its template, per logger) at most
    once per `interval` seconds, with a count of the rest.

    The OpenTelemetry exporters log every retry while the collector is away ("Transient error ...
    retrying in 1.85s"), a few lines a minute for as long as it is down.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, object], list[float]] = {}  # [last logged, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {int(seen[1])} more like it in the last {now - seen[0]:.0f}s)"
        if seen is None and len(self._seen) >= 256:  # messages are templates: few; bounded regardless
            self._seen.clear()
        self._seen[key] = [now, 0]
        return True
