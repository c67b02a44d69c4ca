"""The embedded default store: one SQLite file in WAL mode, durable across restarts.

Every operation is one short transaction run on a dedicated thread that owns the connection, so
the event loop never blocks on disk and operations are serialised in this process. `BEGIN IMMEDIATE`
takes SQLite's write lock up front, so several processes on one file (uvicorn workers) stay atomic
too. The sqlite3 module enters the codebase here only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from gateway.store import sqlite_counters
from gateway.store.base import (
    AuditEntry,
    AuditRecord,
    Charge,
    CounterState,
    Doc,
    JsonDict,
    LeaseResult,
    LeaseUpdate,
    LedgerAppend,
    LedgerEntry,
    ReserveResult,
    SettleResult,
    StoreUnavailable,
    VersionConflict,
)
from gateway.store.chain import GENESIS, entry_hash
from gateway.store.group_commit import GroupCommit

T = TypeVar("T")
_ReserveArgs = tuple[str, tuple[Charge, ...], float, float, JsonDict | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
  namespace TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL,
  expires_at REAL, PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, reservation_id TEXT NOT NULL,
  meta BLOB NOT NULL, charged BLOB NOT NULL, swept INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  target TEXT NOT NULL, reason TEXT NOT NULL, details BLOB NOT NULL, prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, hash TEXT);
CREATE TABLE IF NOT EXISTS audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, hash TEXT);
CREATE TABLE IF NOT EXISTS cooldowns (deployment TEXT PRIMARY KEY, until REAL NOT NULL);
"""

# Rows from a JSON array of [ts, reservation id, meta, charged]; meta and charged are stored as JSON text.
_LEDGER_FROM_JSON = (
    "INSERT INTO ledger (ts, reservation_id, meta, charged, swept) "
    "SELECT value ->> 0, value ->> 1, value -> 2, value -> 3, 0 FROM json_each(?)"
)


def open_problem(path: str) -> str | None:
    """Why the database at `path` cannot be written (its directory missing or read-only), or None.

    Checked before serving: unlike a Redis that is away for a while, this does not heal by itself,
    and a gateway that started anyway warned on every request that touched its store (a container
    whose working directory its user may not write: the deploy image did exactly that)."""
    if path == ":memory:":
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=1.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # takes the write lock: fails where the file cannot be written
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):  # the low byte: the primary code
            # Another process holds the lock: it writes there, so the file can be written. Two
            # gateways started at once on one file met here (one was turning the file to WAL).
            return None
        return _unwritable(path, exc)
    except (sqlite3.Error, OSError) as exc:
        return _unwritable(path, exc)
    return None


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _unwritable(path: str, exc: Exception) -> str:
    return (f"the SQLite database {path} cannot be opened for writing ({exc}); check that its directory "
            "exists and that this user may write there")


class SqliteStore:
    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        # Concurrent reservations (and settlements) share one transaction on the store's thread.
        self._reserves: GroupCommit[_ReserveArgs, ReserveResult] = GroupCommit(self._run_reserves)
        self._settles: GroupCommit[tuple[str, dict[str, int], float], SettleResult] = GroupCommit(self._run_settles)
        self._leases: GroupCommit[tuple[LeaseUpdate, float], LeaseResult] = GroupCommit(self._run_leases)

    # ---- plumbing

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(_SCHEMA + sqlite_counters.SCHEMA)
            sqlite_counters.migrate(db)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T], write: bool = True) -> T:
        def job() -> T:
            db = self._connect()
            if not write:
                return fn(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"SQLite store {self._path}: {exc}") from None

    async def start(self) -> None:
        try:
            await self._run(lambda db: None, write=False)
        except StoreUnavailable:
            pass  # calls will report it; the gateway still starts

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone(), write=False)

    # ---- documents

    async def doc_get(self, namespace: str, key: str, now: float) -> Doc | None:
        def get(db: sqlite3.Connection) -> Doc | None:
            row = db.execute(
                "SELECT version, value, expires_at FROM docs WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            if row is None or (row[2] is not None and row[2] <= now):
                return None
            return Doc(namespace, key, row[0], orjson.loads(row[1]), row[2])

        return await self._run(get, write=False)

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
        blob = orjson.dumps(value)

        def put(db: sqlite3.Connection) -> Doc:
            row = db.execute(
                "SELECT version, expires_at FROM docs WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            live = row is not None and (row[1] is None or row[1] > now)
            current = row[0] if live else 0
            if expect_version is not None and expect_version != current:
                raise VersionConflict(namespace, key, expect_version, current)
            version = current + 1
            db.execute(
                "INSERT OR REPLACE INTO docs (namespace, key, version, value, expires_at) VALUES (?,?,?,?,?)",
                (namespace, key, version, blob, expires_at),
            )
            return Doc(namespace, key, version, value, expires_at)

        return await self._run(put)

    async def doc_delete(self, namespace: str, key: str, *, expect_version: int | None = None) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT version FROM docs WHERE namespace=? AND key=?", (namespace, key)).fetchone()
            if row is None:
                if expect_version not in (None, 0):
                    raise VersionConflict(namespace, key, expect_version or 0, 0)
                return False
            if expect_version is not None and expect_version != row[0]:
                raise VersionConflict(namespace, key, expect_version, row[0])
            db.execute("DELETE FROM docs WHERE namespace=? AND key=?", (namespace, key))
            return True

        return await self._run(delete)

    async def doc_list(self, namespace: str, now: float, prefix: str = "", limit: int = 1000) -> list[Doc]:
        def listing(db: sqlite3.Connection) -> list[Doc]:
            rows = db.execute(
                "SELECT key, version, value, expires_at FROM docs WHERE namespace=? AND key >= ? AND "
                "substr(key, 1, ?) = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                (namespace, prefix, len(prefix), prefix, now, limit),
            ).fetchall()
            return [Doc(namespace, r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

        return await self._run(listing, write=False)

    # ---- counters (the transactions themselves are in sqlite_counters.py)

    async def _run_reserves(self, items: list[_ReserveArgs]) -> list[ReserveResult]:
        return await self._run(lambda db: [sqlite_counters.reserve(db, *item) for item in items])

    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        now: float,
        expires_at: float,
        meta: JsonDict | None = None,
    ) -> ReserveResult:
        return await self._reserves.submit((reservation_id, tuple(charges), now, expires_at, meta))

    async def _run_settles(self, items: list[tuple[str, dict[str, int], float]]) -> list[SettleResult]:
        return await self._run(lambda db: [sqlite_counters.settle(db, rid, actual, now) for rid, actual, now in items])

    async def settle(self, reservation_id: str, actual: Mapping[str, int], now: float) -> SettleResult:
        return await self._settles.submit((reservation_id, dict(actual), now))

    async def sweep(self, now: float, limit: int = 100) -> int:
        return await self._run(lambda db: sqlite_counters.sweep(db, now, limit))

    async def counters(self, names: Sequence[str], now: float) -> list[CounterState]:
        return await self._run(lambda db: sqlite_counters.read(db, names, now), write=False)

    async def _run_leases(self, items: list[tuple[LeaseUpdate, float]]) -> list[LeaseResult]:
        return await self._run(lambda db: [sqlite_counters.lease(db, u, now, _LEDGER_FROM_JSON) for u, now in items])

    async def lease(self, update: LeaseUpdate, now: float) -> LeaseResult:
        return await self._leases.submit((update, now))

    async def ledger_range(self, since: float, until: float, limit: int = 100_000) -> list[LedgerEntry]:
        def read(db: sqlite3.Connection) -> list[LedgerEntry]:
            rows = db.execute(
                "SELECT ts, reservation_id, meta, charged, swept FROM ledger WHERE ts >= ? AND ts < ? "
                "ORDER BY ts LIMIT ?",
                (since, until, limit),
            ).fetchall()
            return [LedgerEntry(r[0], r[1], orjson.loads(r[2]), orjson.loads(r[3]), bool(r[4])) for r in rows]

        return await self._run(read, write=False)

    async def ledger_append(self, reservation_id: str, meta: JsonDict, charged: dict[str, int], now: float) -> None:
        await self.ledger_append_many([(reservation_id, meta, charged, now)])

    async def ledger_append_many(self, entries: Sequence[LedgerAppend]) -> None:
        # The whole batch as one JSON document and one statement: `executemany` releases and retakes
        # the GIL for every row, and each retake waits for the busy event loop to let go (up to the
        # 5 ms switch interval), so a batch of a few hundred rows cost the gateway about as much CPU
        # as the requests it recorded (measured: +70-100 us per request, bench/governance_overhead.py).
        # Bound as text: SQLite 3.45+ reads a BLOB argument of a JSON function as its binary JSONB.
        batch = orjson.dumps([(now, rid, meta, charged) for rid, meta, charged, now in entries]).decode()

        def append(db: sqlite3.Connection) -> None:
            db.execute(_LEDGER_FROM_JSON, (batch,))

        await self._run(append)

    async def ledger_prune(self, before: float, limit: int = 10_000) -> int:
        return await self._run(lambda db: db.execute(
            "DELETE FROM ledger WHERE rowid IN (SELECT rowid FROM ledger WHERE ts < ? ORDER BY ts LIMIT ?)",
            (before, limit),
        ).rowcount)

    # ---- audit

    async def audit_append(
        self, actor: str, action: str, target: str, reason: str, details: JsonDict, now: float
    ) -> AuditRecord:
        return (await self.audit_append_many([(actor, action, target, reason, details, now)]))[0]

    async def audit_append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        def append(db: sqlite3.Connection) -> list[AuditRecord]:
            head = db.execute("SELECT seq, hash FROM audit_head WHERE id=1").fetchone()
            seq, prev = head if head else (0, GENESIS)
            records = []
            for actor, action, target, reason, details, now in entries:
                seq += 1
                digest = entry_hash(prev, seq, now, actor, action, target, reason, details)
                records.append(AuditRecord(seq, now, actor, action, target, reason, details, prev, digest))
                prev = digest
            db.executemany(
                "INSERT INTO audit (seq, ts, actor, action, target, reason, details, prev_hash, hash) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(r.seq, r.ts, r.actor, r.action, r.target, r.reason, orjson.dumps(r.details), r.prev_hash, r.hash)
                 for r in records],
            )
            db.execute("INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (seq, prev))
            return records

        return await self._run(append) if entries else []

    async def audit_range(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        def read(db: sqlite3.Connection) -> list[AuditRecord]:
            rows = db.execute(
                "SELECT seq, ts, actor, action, target, reason, details, prev_hash, hash FROM audit "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8]) for r in rows]

        return await self._run(read, write=False)

    async def audit_head(self) -> tuple[int, str]:
        return await self._run(lambda db: _seq_and_hash(db, "audit_head"), write=False)

    async def audit_prune(self, through_seq: int, limit: int = 1_000) -> int:
        def prune(db: sqlite3.Connection) -> int:
            due = db.execute("SELECT seq, hash FROM audit WHERE seq <= ? ORDER BY seq LIMIT ?",
                             (through_seq, limit)).fetchall()
            if not due:
                return 0
            last = due[-1]
            deleted = int(db.execute("DELETE FROM audit WHERE seq <= ?", (last[0],)).rowcount)
            db.execute("INSERT OR REPLACE INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?)", (last[0], last[1]))
            return deleted

        return await self._run(prune)

    async def audit_anchor(self) -> tuple[int, str]:
        return await self._run(lambda db: _seq_and_hash(db, "audit_anchor"), write=False)

    # ---- cooldowns

    async def cooldown_set(self, deployment_id: str, until: float) -> None:
        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO cooldowns (deployment, until) VALUES (?, ?) "
                "ON CONFLICT(deployment) DO UPDATE SET until = max(until, excluded.until)",
                (deployment_id, until),
            )

        await self._run(put)

    async def cooldowns(self, now: float) -> dict[str, float]:
        def read(db: sqlite3.Connection) -> dict[str, float]:
            return dict(db.execute("SELECT deployment, until FROM cooldowns WHERE until > ?", (now,)).fetchall())

        return await self._run(read, write=False)



def _seq_and_hash(db: sqlite3.Connection, table: str) -> tuple[int, str]:
    """The one row of `audit_head` or `audit_anchor`, or 0 and the genesis hash."""
    row = db.execute(f"SELECT seq, hash FROM {table} WHERE id=1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)
