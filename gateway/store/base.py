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
   Settling also appends the reservation's `meta` to the spend ledger (`ledger_range`).
3. An append-only, hash-chained audit log (`audit_append` / `audit_range` / `audit_head`).
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
class LedgerEntry:
    """One settled reservation: its meta, when, and what each unit was charged."""

    ts: float
    reservation_id: str
    meta: JsonDict
    charged: dict[str, int] = field(default_factory=dict)
    swept: bool = False


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

    async def ledger_range(self, since: float, until: float, limit: int = 100_000) -> list[LedgerEntry]: ...

    async def ledger_append(self, reservation_id: str, meta: JsonDict, charged: dict[str, int], now: float) -> None:
        """Record spend that had nothing to reserve against (no budget or limit applied)."""

    async def ledger_append_many(self, entries: Sequence[LedgerAppend]) -> None:
        """Record several such spends in one round trip (one transaction, one command)."""

    # ---- audit log
    async def audit_append(
        self, actor: str, action: str, target: str, reason: str, details: JsonDict, now: float
    ) -> AuditRecord: ...

    async def audit_range(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]: ...

    async def audit_head(self) -> tuple[int, str]:
        """The last sequence number and hash (0 and the genesis hash when empty)."""

    # ---- cooldowns
    async def cooldown_set(self, deployment_id: str, until: float) -> None:
        """Cool a deployment down until `until` (keeps the later of two cooldowns)."""

    async def cooldowns(self, now: float) -> dict[str, float]:
        """Deployments cooling down now, with their end times."""
