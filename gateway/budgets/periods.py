"""Budget periods as UTC windows: a label that names the counter, and when the window resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.config.governance import Period

# How long a window's counters stay readable after it ends (reports, late settlements).
GRACE_SECONDS = 40 * 86400


class WindowCache:
    """The current window per period, recomputed only when it ends (datetime work off the hot path)."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[float, float, str]] = {}

    def window(self, period: Period, now: float) -> tuple[str, float | None]:
        if period == "total":
            return "total", None
        cached = self._current.get(period)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2], cached[1]
        label, reset = window(period, now)
        assert reset is not None
        self._current[period] = (_start(period, now), reset, label)
        return label, reset


def _start(period: Period, now: float) -> float:
    at = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        at -= timedelta(days=at.weekday())
    elif period == "monthly":
        at = at.replace(day=1)
    return at.timestamp()


def window(period: Period, now: float) -> tuple[str, float | None]:
    """(label, reset time in epoch seconds or None for 'total')."""
    at = datetime.fromtimestamp(now, tz=UTC)
    if period == "total":
        return "total", None
    if period == "daily":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), (start + timedelta(days=1)).timestamp()
    if period == "weekly":
        start = (at - timedelta(days=at.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}", (start + timedelta(days=7)).timestamp()
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), following.timestamp()


def describe_reset(reset_at: float | None) -> str:
    if reset_at is None:
        return "it does not reset (period: total)"
    return "it resets at " + datetime.fromtimestamp(reset_at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
