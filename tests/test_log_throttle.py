"""A warning repeated on every request during an outage is logged once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from gateway.log_throttle import ThrottledWarning


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
