"""The audit log's hash chain: how an entry's hash is computed and how a whole log is verified.

Shared by both stores so the chain is byte-for-byte the same on SQLite and Redis. Each entry's hash
covers the previous entry's hash and a canonical JSON of its own fields; changing any field of any
entry, deleting one, or reordering them breaks the chain from that point on.
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


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None
    at_seq: int | None = None


class ChainWalk:
    """Verifies a log fed to it in order, batch by batch, holding only the last entry's hash: a log of
    millions of entries is checked in constant memory (it was read whole into a list before)."""

    def __init__(self) -> None:
        self._prev, self._expected, self.checked = GENESIS, 1, 0

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
        return None

    def finish(self, head: tuple[int, str]) -> Verdict:
        """After the last entry: `head` (last seq and hash) catches deletions at the end."""
        last_seq, last_hash = head
        if last_seq != self._expected - 1 or (last_seq and last_hash != self._prev):
            return Verdict(
                False, self.checked, f"the log ends at entry {self._expected - 1} but entry {last_seq} was written",
                last_seq,
            )
        return Verdict(True, self.checked)


def verify(records: Iterable[AuditRecord], head: tuple[int, str]) -> Verdict:
    """Walk the chain from the start; `head` (last seq and hash) catches deletions at the end."""
    walk = ChainWalk()
    return walk.feed(records) or walk.finish(head)
