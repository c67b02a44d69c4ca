"""Budget windows: labels and resets in UTC, and the cache that keeps datetime work off the hot path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.budgets.periods import WindowCache, window


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "at", "label", "reset"),
    [
        ("daily", "2026-11-25T23:59:59", "2026-11-25", "2026-11-26T00:00:00"),
        ("weekly", "2026-11-25T12:00:00", "2026-W48", "2026-11-30T00:00:00"),
        ("monthly", "2026-12-31T23:59:59", "2026-12", "2027-01-01T00:00:00"),
    ],
)
def test_windows_reset_at_utc_boundaries(period: str, at: str, label: str, reset: str) -> None:
    assert window(period, ts(at)) == (label, ts(reset))  # type: ignore[arg-type]
    cache = WindowCache()
    assert cache.window(period, ts(at)) == (label, ts(reset))  # type: ignore[arg-type]
    # One second later the cache must move to the next window, not serve the old one.
    assert cache.window(period, ts(reset)) == window(period, ts(reset))  # type: ignore[arg-type]


def test_total_never_resets() -> None:
    assert WindowCache().window("total", 0) == ("total", None)
