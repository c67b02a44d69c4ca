"""A warning repeated on every request during an outage is logged once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from gateway.log_throttle import ThrottledWarning, ThrottleRepeats


def test_the_first_warning_goes_out_then_one_per_interval_saying_how_many_were_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    warn = ThrottledWarning(logging.getLogger("lockgate.test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="lockgate.test"):
        for second in range(25):  # four warnings a second for 25 seconds
            now[0] = 100.0 + second
            for _ in range(4):
                warn("store unreachable: %s", "connection refused")
    assert [r.getMessage() for r in caplog.records] == [
        "store unreachable: connection refused",
        "store unreachable: connection refused (and 39 more like it in the last 10s)",
        "store unreachable: connection refused (and 39 more like it in the last 10s)",
    ]


def test_another_library_repeating_one_message_with_new_values_is_throttled_by_its_template() -> None:
    # The OpenTelemetry exporters' retry warning: the same template, a new delay each time.
    now = [0.0]
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    handler.addFilter(ThrottleRepeats(interval=10.0, clock=lambda: now[0]))
    logger = logging.getLogger("opentelemetry.exporter.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for second in range(12):
            now[0] = float(second)
            logger.warning("Transient error %s encountered, retrying in %.2fs.", "UNAVAILABLE", 0.5 + second)
        logger.warning("Failed to export metrics batch.")  # another message: not held back by the first
    finally:
        logger.removeHandler(handler)
    assert seen == [
        "Transient error UNAVAILABLE encountered, retrying in 0.50s.",
        "Transient error UNAVAILABLE encountered, retrying in 10.50s. (and 9 more like it in the last 10s)",
        "Failed to export metrics batch.",
    ]
