"""Repeats of one hot-path audit entry folded into a count, so a storm cannot grow the log without bound.

An agent retrying a capped key in a loop is refused hundreds of times a second, and each refusal was
its own audit entry. Redis keeps the log in memory: bench/soak.py's four capped clients made ~500
refusals a second, which at 431 bytes an entry is ~19 GB of log a day, until the store fills and
takes budgets, holds and sessions down with it. The log must say what happened, to whom, why, when and how
often; it need not say it forty million times. Each refused request is still on its own trace and in
the metrics.

The first occurrence of an entry (same actor, action, target and reason) is written in full. Its
repeats over the next `window` seconds are only counted; when the window closes, one entry stands for
all of them: the last repeat's details plus `occurrences` (how many it stands for) and `first_at`
(when the first of them happened), dated at the last. The next occurrence is written in full again.
So a storm writes at most two entries per window for each distinct entry, and every occurrence is
accounted for: the sum of `occurrences` (1 where absent) over the entries is the number of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads the detail keys below without loading the stores
    from gateway.store import AuditEntry

# Detail keys a folded entry adds (`occurrences` below reads the count back).
OCCURRENCES = "occurrences"
FIRST_AT = "first_at"

Key = tuple[str, str, str, str]  # actor, action, target, reason


@dataclass(slots=True)
class _Run:
    """An entry written in full, and the repeats counted since."""

    timer: asyncio.TimerHandle | None = None
    count: int = 0
    first_at: float = 0.0
    last: AuditEntry | None = None


class RepeatFolder:
    """Decides which entries are written now and which are counted; emits the folded ones later."""

    # Distinct entries followed at once; past it an entry is simply written (a storm of distinct
    # entries is bounded by the trail's queue instead).
    LIMIT = 10_000

    def __init__(self, window: float, emit: Callable[[AuditEntry], None]) -> None:
        self._window = window
        self._emit = emit
        self._runs: dict[Key, _Run] = {}

    def offer(self, entry: AuditEntry) -> bool:
        """True: write `entry` now. False: it was counted as a repeat and will be written folded."""
        if self._window <= 0:
            return True
        key: Key = entry[:4]
        run = self._runs.get(key)
        if run is None:
            if len(self._runs) < self.LIMIT:
                run = self._runs[key] = _Run()
                run.timer = asyncio.get_running_loop().call_later(self._window, self._close, key)
            return True
        if not run.count:
            run.first_at = entry[5]
        run.count += 1
        run.last = entry
        return False

    def flush(self) -> None:
        """Emit every run's repeats now (shutdown, and anyone about to read the log)."""
        for key in list(self._runs):
            self._close(key)

    def _close(self, key: Key) -> None:
        run = self._runs.pop(key, None)
        if run is None:
            return
        if run.timer is not None:
            run.timer.cancel()
        if run.last is not None:
            actor, action, target, reason, details, at = run.last
            self._emit((actor, action, target, reason,
                        {**details, OCCURRENCES: run.count, FIRST_AT: run.first_at}, at))


def occurrences(details: dict[str, object]) -> int:
    """How many events an audit entry stands for: 1, or the count a folded entry carries."""
    count = details.get(OCCURRENCES, 1)
    return count if isinstance(count, int) else 1
