"""The audit log's hash chain: how an entry's hash is computed and how a whole log is verified.

Shared by both stores so the chain is byte-for-byte the same on SQLite and Redis. Each entry's hash
covers the previous entry's hash and a canonical JSON of its own fields; changing any field of any
entry, deleting one, or reordering them breaks the chain from that point on.

Retention deletes the oldest entries (`audit.retention_days`). The store keeps the last deleted
entry's seq and hash, the anchor, which the oldest kept entry must follow; and before deleting, the
gateway appends an `audit.pruned` entry saying how far it may delete (`details.through_seq`). So a
walk from the anchor still catches any edit or deletion in what is kept, and an anchor no retention
entry covers (entries removed from the front by hand) is reported too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from gateway.store.base import AuditRecord, JsonDict

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str, seq: int, ts: float, actor: str, action: str, target: str, reason: str, details: JsonDict
) -> str:
    body = orjson.dumps(
        {"seq": seq, "ts": ts, "actor": actor, "action": action, "target": target, "reason": reason,
         "details": details},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def record_hash(record: AuditRecord) -> str:
    return entry_hash(
        record.prev_hash, record.seq, record.ts, record.actor, record.action, record.target, record.reason,
        record.details,
    )


PRUNED = "audit.pruned"  # the action of a retention entry; `details.through_seq` is how far it deletes


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None
    at_seq: int | None = None
    first_seq: int = 1  # the oldest entry kept (retention deleted those before it)


class ChainWalk:
    """Verifies a log fed to it in order, batch by batch, holding only the last entry's hash: a log of
    millions of entries is checked in constant memory (it was read whole into a list before)."""

    def __init__(self, anchor: tuple[int, str] = (0, GENESIS)) -> None:
        self._anchor = anchor[0]
        self._prev, self._expected, self.checked = anchor[1], anchor[0] + 1, 0
        self._covered = 0  # how far the retention entries seen allow deleting

    def feed(self, records: Iterable[AuditRecord]) -> Verdict | None:
        """The verdict at the first broken entry, or None while the chain holds."""
        for record in records:
            if record.seq != self._expected:
                return Verdict(
                    False, self.checked, f"entry {self._expected} is missing (found {record.seq} next)", self._expected
                )
            if record.prev_hash != self._prev:
                return Verdict(False, self.checked, f"entry {record.seq} does not follow the entry before it", record.seq)
            if record_hash(record) != record.hash:
                return Verdict(False, self.checked, f"entry {record.seq} was modified after it was written", record.seq)
            self._prev, self._expected, self.checked = record.hash, self._expected + 1, self.checked + 1
            if record.action == PRUNED:
                through = record.details.get("through_seq")
                if isinstance(through, int):
                    self._covered = max(self._covered, through)
        return None

    def finish(self, head: tuple[int, str]) -> Verdict:
        """After the last entry: `head` (last seq and hash) catches deletions at the end."""
        last_seq, last_hash = head
        if last_seq != self._expected - 1 or (last_seq and last_hash != self._prev):
            return Verdict(
                False, self.checked, f"the log ends at entry {self._expected - 1} but entry {last_seq} was written",
                last_seq,
            )
        if self._anchor > self._covered:
            return Verdict(
                False, self.checked, f"entries 1 to {self._anchor} were deleted without a retention entry saying so",
                self._anchor,
            )
        return Verdict(True, self.checked, first_seq=self._anchor + 1)


def verify(records: Iterable[AuditRecord], head: tuple[int, str], anchor: tuple[int, str] = (0, GENESIS)) -> Verdict:
    """Walk the chain from the anchor; `head` (last seq and hash) catches deletions at the end."""
    walk = ChainWalk(anchor)
    return walk.feed(records) or walk.finish(head)
