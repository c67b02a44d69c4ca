"""The `Store` protocol: the gateway's durable, shareable state, as a few generic primitives.

Every feature that needs state shared across requests, restarts or replicas builds on these five
primitives instead of talking to SQLite or Redis itself. Both implementations (`sqlite.py`, the
embedded default, and `redis_store.py`, shared by replicas) pass one contract suite
(`tests/store/test_contract.py`), so a feature written against the protocol works on either.

1. Documents (`doc_*`): JSON objects under `(namespace, key)` with a version that grows by one on
   every write. `doc_put(..., expect_version=v)` is compare-and-set: it fails with `VersionConflict`
   unless the stored version is `v` (`0` means "must not exist yet"). Optional expiry. Use for
   virtual keys, sessions, held approvals, "fire once" markers.
2. Counters with limits (`reserve` / `settle` / `sweep`): a reservation adds amounts to several
   counters at once, atomically, and only if none would pass its limit (`used + reserved + amount
   <= limit`). `settle` moves the reservation into `used` at the actual amounts (per unit) and is
   idempotent; unsettled reservations expire and `sweep` charges them at their reserved amounts
   (the call may have happened; charging the upper bound keeps limits safe). Use for budgets
   (unit "usd_micros", "tokens") and rate limits ("requests", "tokens" on per-minute counters).
   Settling also appends the reservation's `meta` to the spend ledger (`ledger_range`; pruned by
   age with `ledger_prune`).
   A lease (`lease`) is a reservation a replica resizes over time: it reports what it spent from
   the lease (moved into `used`, with the ledger entries of that spend, atomically), gives back room
   it no longer needs, and asks for more, which the store grants only while the counters are far
   from their limits (`LeaseUpdate.headroom`). Expired, it is swept like any reservation: charged
   in full. `CounterState.leased` says how much of `reserved` is held by leases.
3. An append-only, hash-chained audit log (`audit_append[_many]` / `audit_range` / `audit_head`).
4. Cooldowns: deployment id -> until (epoch seconds), shared by every replica.
5. `ping`, for readiness.

Times are epoch seconds (float) passed in by the caller, so one clock decides across replicas and
tests can move time. Money and tokens are integers. Every method may raise `StoreUnavailable`
when the backing store cannot be reached; callers decide (fail open or closed) what that means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

JsonDict = dict[str, Any]

# One unreserved spend: (reservation id, meta, charged per unit, time).
LedgerAppend = tuple[str, JsonDict, dict[str, int], float]


class StoreError(Exception):
    """Base of the store's own errors (never shown to clients as is)."""


class StoreUnavailable(StoreError):
    """The backing store cannot be reached or answered with an error; says which and why."""


class VersionConflict(StoreError):
    """A compare-and-set write found another version than expected."""

    def __init__(self, namespace: str, key: str, expected: int, found: int) -> None:
        super().__init__(f"{namespace}/{key}: expected version {expected}, found {found}")
        self.expected = expected
        self.found = found


@dataclass(frozen=True, slots=True)
class Doc:
    namespace: str
    key: str
    version: int
    value: JsonDict
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter a reservation adds to.

    `counter` names the counter and its window (e.g. "budget:team:eng:usd:2026-11"), so a new
    period is simply a new counter. `limit` None means count without limiting. `expires_at` is when
    the counter may be forgotten (end of its window plus a grace); None keeps it forever. `unit`
    says which actual amount `settle` charges it ("usd_micros", "tokens", "requests", ...).
    """

    counter: str
    amount: int
    unit: str
    limit: int | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class CounterState:
    counter: str
    used: int
    reserved: int
    # The part of `reserved` held by leases (room a replica may still hand out without asking).
    leased: int = 0


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """`ok` with every counter's state after the reservation, or the first charge that did not fit."""

    ok: bool
    states: tuple[CounterState, ...] = ()
    # When refused: the index (into the charges) of the first counter that would pass its limit.
    refused_index: int | None = None


@dataclass(frozen=True, slots=True)
class SettleResult:
    """`settled` is False when the reservation was already settled, swept or never existed."""

    settled: bool
    # Counter states after settlement, with the amount each was charged (same order as reserved).
    states: tuple[CounterState, ...] = ()
    charged: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseUpdate:
    """One step of a lease: a reservation on `counters` that its holder resizes.

    Amounts are per unit, in the order of `units` (every counter's unit is one of them). In order:
    `spent` moves out of the lease into each counter's `used` (a spend larger than the lease charges
    the difference to `used` alone, as a settlement above its reservation does) and `entries` go to
    the ledger with it; `release` gives room back; then `want` more is granted per unit, at most
    1/(headroom + 1) of each counter's room left (limit - used - reserved), so the rest of the room
    stays with everyone else, and nothing at all if any unit's grant would fall below its
    `min_grant`. `seq` numbers the updates of a lease from 1: an update whose `seq` was already
    applied is not applied again (a retry after a lost reply). A lease held at zero is deleted.
    """

    lease_id: str
    seq: int
    counters: tuple[Charge, ...]  # name, unit, limit and counter expiry; `amount` is not used
    units: tuple[str, ...]
    spent: tuple[int, ...]
    release: tuple[int, ...]
    want: tuple[int, ...]
    min_grant: tuple[int, ...]
    expires_at: float
    entries: tuple[LedgerAppend, ...] = ()
    # The lease's meta: the ledger entry written if it expires and is swept.
    meta: JsonDict | None = None
    headroom: int = 16


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """`status`: "applied"; "repeat" (this `seq` was applied before: nothing done now, the lease as
    it stands is returned); "gone" (expired and swept, or deleted: nothing was done)."""

    status: str
    held: tuple[int, ...] = ()  # per unit: what the lease holds now
    granted: tuple[int, ...] = ()  # per unit: what this update added
    states: tuple[CounterState, ...] = ()  # the counters after the update, in `counters` order


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One settled reservation: its meta, when, and what each unit was charged."""

    ts: float
    reservation_id: str
    meta: JsonDict
    charged: dict[str, int] = field(default_factory=dict)
    swept: bool = False


# One audit entry to append: actor, action, target, reason, details, time (epoch seconds).
AuditEntry = tuple[str, str, str, str, JsonDict, float]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry as stored: `hash` = sha256(prev_hash + canonical JSON of the rest)."""

    seq: int
    ts: float
    actor: str
    action: str
    target: str
    reason: str
    details: JsonDict
    prev_hash: str
    hash: str


@runtime_checkable
class Store(Protocol):
    """Async, durable state. Implementations never block the event loop."""

    url: str

    async def start(self) -> None:
        """Connect / create the schema. Does not raise if the store is down: calls will."""

    async def aclose(self) -> None: ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    # ---- documents
    async def doc_get(self, namespace: str, key: str, now: float) -> Doc | None: ...

    async def doc_put(
        self,
        namespace: str,
        key: str,
        value: JsonDict,
        now: float,
        *,
        expect_version: int | None = None,
        expires_at: float | None = None,
    ) -> Doc:
        """Write (create or replace). With `expect_version`, compare-and-set (0: create only)."""

    async def doc_delete(self, namespace: str, key: str, *, expect_version: int | None = None) -> bool: ...

    async def doc_list(self, namespace: str, now: float, prefix: str = "", limit: int = 1000) -> list[Doc]:
        """Live documents of a namespace, by key order."""

    # ---- counters with limits
    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        now: float,
        expires_at: float,
        meta: JsonDict | None = None,
    ) -> ReserveResult:
        """All charges or none. Reusing a live reservation id returns ok without charging again."""

    async def settle(self, reservation_id: str, actual: Mapping[str, int], now: float) -> SettleResult:
        """Charge `actual[unit]` (or the reserved amount for units not given) and release the rest."""

    async def sweep(self, now: float, limit: int = 100) -> int:
        """Settle expired reservations at their reserved amounts; returns how many."""

    async def counters(self, names: Sequence[str], now: float) -> list[CounterState]: ...

    async def lease(self, update: LeaseUpdate, now: float) -> LeaseResult:
        """Apply one step of a lease atomically (see `LeaseUpdate`)."""

    async def ledger_range(self, since: float, until: float, limit: int = 100_000) -> list[LedgerEntry]: ...

    async def ledger_append(self, reservation_id: str, meta: JsonDict, charged: dict[str, int], now: float) -> None:
        """Record spend that had nothing to reserve against (no budget or limit applied)."""

    async def ledger_append_many(self, entries: Sequence[LedgerAppend]) -> None:
        """Record several such spends in one round trip (one transaction, one command)."""

    async def ledger_prune(self, before: float, limit: int = 10_000) -> int:
        """Delete the oldest ledger entries dated before `before` (retention), at most `limit` of them
        (a backlog of millions is deleted in steps, not in one long-blocking statement); how many."""

    # ---- audit log
    async def audit_append(
        self, actor: str, action: str, target: str, reason: str, details: JsonDict, now: float
    ) -> AuditRecord: ...

    async def audit_append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append several entries, in order and chained, in one transaction (one round trip)."""

    async def audit_range(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]: ...

    async def audit_head(self) -> tuple[int, str]:
        """The last sequence number and hash (0 and the genesis hash when empty)."""

    async def audit_prune(self, through_seq: int, limit: int = 1_000) -> int:
        """Delete the oldest entries up to `through_seq` (retention), at most `limit` of them, and move
        the anchor to the last one deleted, in one transaction; how many were deleted."""

    async def audit_anchor(self) -> tuple[int, str]:
        """The last deleted entry's sequence number and hash, which the oldest kept entry follows
        (0 and the genesis hash when none was ever deleted): where verification starts."""

    # ---- cooldowns
    async def cooldown_set(self, deployment_id: str, until: float) -> None:
        """Cool a deployment down until `until` (keeps the later of two cooldowns)."""

    async def cooldowns(self, now: float) -> dict[str, float]:
        """Deployments cooling down now, with their end times."""
