"""The SQLite store's counters with limits: reserve, settle, sweep, read, and leases, as transactions.

Part of the SQLite store (`sqlite.py` runs these on its thread, inside `BEGIN IMMEDIATE`, so each is
atomic across processes sharing the file). Every function takes the open connection; none commits.
Semantics are the `Store` protocol's (`base.py`), the same as the Redis scripts'.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.store.base import (
    Charge,
    CounterState,
    JsonDict,
    LeaseResult,
    LeaseUpdate,
    ReserveResult,
    SettleResult,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
  name TEXT PRIMARY KEY, used INTEGER NOT NULL, reserved INTEGER NOT NULL, expires_at REAL,
  leased INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reservations (
  id TEXT PRIMARY KEY, charges BLOB NOT NULL, meta BLOB, expires_at REAL NOT NULL,
  seq INTEGER NOT NULL DEFAULT 0, lease INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS reservations_expiry ON reservations (expires_at);
"""

# Files created before leases existed lack these columns; added in place when the store opens.
_ADDED_COLUMNS = (
    ("counters", "leased", "INTEGER NOT NULL DEFAULT 0"),
    ("reservations", "seq", "INTEGER NOT NULL DEFAULT 0"),
    ("reservations", "lease", "INTEGER NOT NULL DEFAULT 0"),
)


def migrate(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def counter(db: sqlite3.Connection, name: str, now: float) -> tuple[int, int, int]:
    """(used, reserved, leased); a counter past its expiry reads as new."""
    row = db.execute("SELECT used, reserved, leased, expires_at FROM counters WHERE name=?", (name,)).fetchone()
    if row is None or (row[3] is not None and row[3] <= now):
        return 0, 0, 0
    return row[0], row[1], row[2]


def _write(db: sqlite3.Connection, name: str, used: int, reserved: int, leased: int, expires_at: float | None) -> None:
    db.execute(
        "INSERT OR REPLACE INTO counters (name, used, reserved, leased, expires_at) VALUES (?,?,?,?,?)",
        (name, used, reserved, leased, expires_at),
    )


def read(db: sqlite3.Connection, names: Sequence[str], now: float) -> list[CounterState]:
    return [CounterState(n, *counter(db, n, now)) for n in names]


def reserve(
    db: sqlite3.Connection,
    reservation_id: str,
    charges: Sequence[Charge],
    now: float,
    expires_at: float,
    meta: JsonDict | None,
) -> ReserveResult:
    current = [counter(db, c.counter, now) for c in charges]
    states = tuple(CounterState(c.counter, *state) for c, state in zip(charges, current, strict=True))
    if db.execute("SELECT 1 FROM reservations WHERE id=?", (reservation_id,)).fetchone():
        return ReserveResult(True, states)
    for i, (charge, (used, reserved, _)) in enumerate(zip(charges, current, strict=True)):
        if charge.limit is not None and used + reserved + charge.amount > charge.limit:
            return ReserveResult(False, states, i)
    states_after = []
    for charge, (used, reserved, leased) in zip(charges, current, strict=True):
        _write(db, charge.counter, used, reserved + charge.amount, leased, charge.expires_at)
        states_after.append(CounterState(charge.counter, used, reserved + charge.amount, leased))
    db.execute(
        "INSERT INTO reservations (id, charges, meta, expires_at) VALUES (?,?,?,?)",
        (reservation_id, dump_charges(charges), orjson.dumps(meta) if meta else None, expires_at),
    )
    return ReserveResult(True, tuple(states_after))


def settle(db: sqlite3.Connection, reservation_id: str, actual: Mapping[str, int] | None, now: float) -> SettleResult:
    """`actual` None: swept, every counter charged its reserved amount (a lease: all it held)."""
    row = db.execute("SELECT charges, meta, lease FROM reservations WHERE id=?", (reservation_id,)).fetchone()
    if row is None:
        return SettleResult(False)
    states: list[CounterState] = []
    charged_list: list[int] = []
    by_unit: dict[str, int] = {}
    for charge in load_charges(row[0]):
        amount = charge.amount if actual is None else actual.get(charge.unit, charge.amount)
        used, reserved, leased = counter(db, charge.counter, now)
        used, reserved = used + amount, max(0, reserved - charge.amount)
        if row[2]:
            leased = max(0, leased - charge.amount)
        _write(db, charge.counter, used, reserved, leased, charge.expires_at)
        states.append(CounterState(charge.counter, used, reserved, leased))
        charged_list.append(amount)
        by_unit.setdefault(charge.unit, amount)
    db.execute("DELETE FROM reservations WHERE id=?", (reservation_id,))
    if row[1] is not None:
        db.execute(
            "INSERT INTO ledger (ts, reservation_id, meta, charged, swept) VALUES (?,?,?,?,?)",
            (now, reservation_id, row[1], orjson.dumps(by_unit), int(actual is None)),
        )
    return SettleResult(True, tuple(states), tuple(charged_list))


def sweep(db: sqlite3.Connection, now: float, limit: int) -> int:
    ids = [r[0] for r in db.execute(
        "SELECT id FROM reservations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit)
    )]
    for reservation_id in ids:
        settle(db, reservation_id, None, now)
    return len(ids)


def lease(db: sqlite3.Connection, update: LeaseUpdate, now: float, ledger_sql: str) -> LeaseResult:
    """One lease update (see `LeaseUpdate`); the Redis store's LEASE_MANY does the same."""
    units = update.units
    index = {unit: k for k, unit in enumerate(units)}
    row = db.execute("SELECT charges, seq FROM reservations WHERE id=? AND lease=1", (update.lease_id,)).fetchone()
    held = [0] * len(units)
    if row is None and update.seq > 1:
        return LeaseResult("gone")
    if row is not None:
        for charge in load_charges(row[0]):
            held[index[charge.unit]] = charge.amount
    current = [counter(db, c.counter, now) for c in update.counters]
    if row is not None and update.seq <= row[1]:
        states = tuple(CounterState(c.counter, *s) for c, s in zip(update.counters, current, strict=True))
        return LeaseResult("repeat", tuple(held), (0,) * len(units), states)
    dr = [0] * len(units)
    for k in range(len(units)):
        taken = min(update.spent[k], held[k])
        released = max(0, min(update.release[k], held[k] - taken))
        held[k] -= taken + released
        dr[k] = -taken - released
    granted = list(update.want)
    if any(update.want):
        for c, (used, reserved, _) in zip(update.counters, current, strict=True):
            if c.limit is not None:
                k = index[c.unit]
                room = c.limit - (used + update.spent[k]) - (reserved + dr[k])
                granted[k] = min(granted[k], max(0, math.floor(room / (update.headroom + 1))))
        if any(w > 0 and g < m for w, g, m in zip(update.want, granted, update.min_grant, strict=True)):
            granted = [0] * len(units)
    states_after = []
    for c, (used, reserved, leased) in zip(update.counters, current, strict=True):
        k = index[c.unit]
        delta = dr[k] + granted[k]
        used, reserved, leased = used + update.spent[k], max(0, reserved + delta), max(0, leased + delta)
        if update.spent[k] or delta:
            _write(db, c.counter, used, reserved, leased, c.expires_at)
        states_after.append(CounterState(c.counter, used, reserved, leased))
    held = [h + g for h, g in zip(held, granted, strict=True)]
    if not any(held):
        db.execute("DELETE FROM reservations WHERE id=?", (update.lease_id,))
    else:
        charges = [Charge(c.counter, held[index[c.unit]], c.unit, c.limit, c.expires_at) for c in update.counters]
        db.execute(
            "INSERT OR REPLACE INTO reservations (id, charges, meta, expires_at, seq, lease) VALUES (?,?,?,?,?,1)",
            (update.lease_id, dump_charges(charges), orjson.dumps(update.meta) if update.meta else None,
             update.expires_at, update.seq),
        )
    if update.entries:
        batch = orjson.dumps([(ts, rid, meta, charged) for rid, meta, charged, ts in update.entries]).decode()
        db.execute(ledger_sql, (batch,))
    return LeaseResult("applied", tuple(held), tuple(granted), tuple(states_after))


def dump_charges(charges: Sequence[Charge]) -> bytes:
    return orjson.dumps([[c.counter, c.amount, c.unit, c.limit, c.expires_at] for c in charges])


def load_charges(blob: Any) -> list[Charge]:
    return [Charge(c[0], c[1], c[2], c[3], c[4]) for c in orjson.loads(blob)]
