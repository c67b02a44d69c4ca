"""The shared store: Redis through `redis.asyncio`, for several gateway replicas.

Every multi-step change is one Lua script (`redis_scripts.py`), so it is atomic across replicas.
Every key lives under a prefix (`?prefix=` in the URL, default `lockgate`), so several gateways
or tests can share one Redis. The redis library enters the codebase here only; its errors become
`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store import redis_scripts as lua
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
from gateway.store.redis_wire import RedisWire, WireError, script_sha

T = TypeVar("T")
_AUDIT_RETRIES = 100
# One reservation as the reserve script's arguments: id, expiry, meta JSON, charges JSON.
_ReserveItem = tuple[str, str, bytes, bytes]


class RedisStore:
    def __init__(self, url: str, *, timeout: float = 2.0, pipelined_scripts: bool = True) -> None:
        self.url = url
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self._prefix = (query.get("prefix") or ["lockgate"])[0] + ":"
        connect_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self._redacted = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        # Typed as Any: redis-py's stubs type replies as bytes | str | ..., which we decode ourselves.
        self._client: Any = aioredis.Redis.from_url(
            connect_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            max_connections=256,
        )
        self._reserve_many: Any = self._client.register_script(lua.RESERVE_MANY)
        self._settle_many: Any = self._client.register_script(lua.SETTLE_MANY)
        self._lease_many: Any = self._client.register_script(lua.LEASE_MANY)
        # The two hot scripts go over a lean pipelined connection (redis_wire.py) on plain redis://;
        # TLS and unix sockets (and `pipelined_scripts=False`) send them through redis-py too.
        self._wire = RedisWire(connect_url, timeout) if parts.scheme == "redis" and pipelined_scripts else None
        self._reserve_sha, self._settle_sha = script_sha(lua.RESERVE_MANY), script_sha(lua.SETTLE_MANY)
        self._lease_sha = script_sha(lua.LEASE_MANY)
        # Reservations and settlements of concurrent requests share one script call each way.
        self._reservations: GroupCommit[_ReserveItem, list[Any]] = GroupCommit(self._run_reserves)
        self._settlements: GroupCommit[bytes, list[Any]] = GroupCommit(self._run_settles)
        self._leases: GroupCommit[list[bytes | str], list[Any]] = GroupCommit(self._run_leases)
        self._doc_put: Any = self._client.register_script(lua.DOC_PUT)
        self._doc_delete: Any = self._client.register_script(lua.DOC_DELETE)
        self._audit_append: Any = self._client.register_script(lua.AUDIT_APPEND)
        self._audit_range: Any = self._client.register_script(lua.AUDIT_RANGE)
        self._audit_prune: Any = self._client.register_script(lua.AUDIT_PRUNE)
        self._audit_lock = asyncio.Lock()

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except (RedisError, OSError, WireError) as exc:
            # The URL may hold a password: name the host only.
            raise StoreUnavailable(f"Redis store {self._redacted}: {type(exc).__name__}: {exc}") from None

    async def start(self) -> None:
        pass  # connections are opened on first use; a Redis that is down is reported by the calls

    async def aclose(self) -> None:
        if self._wire is not None:
            await self._wire.aclose()
        await self._client.aclose()  # safe to call twice

    async def ping(self) -> None:
        await self._call(self._client.ping)

    # ---- documents

    async def doc_get(self, namespace: str, key: str, now: float) -> Doc | None:
        row = await self._call(lambda: self._client.hmget(self._k("d", namespace, key), "v", "d", "e"))
        if row[0] is None:
            return None
        expires = float(row[2]) if row[2] else None
        if expires is not None and expires <= now:
            return None
        return Doc(namespace, key, int(row[0]), orjson.loads(row[1]), expires)

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
        args = [
            "" if expect_version is None else str(expect_version),
            orjson.dumps(value),
            repr(now),
            "" if expires_at is None else repr(expires_at),
            key,
        ]
        keys = [self._k("d", namespace, key), self._k("dix", namespace)]
        ok, version = await self._call(lambda: self._doc_put(keys=keys, args=args))
        if not ok:
            raise VersionConflict(namespace, key, expect_version or 0, int(version))
        return Doc(namespace, key, int(version), value, expires_at)

    async def doc_delete(self, namespace: str, key: str, *, expect_version: int | None = None) -> bool:
        keys = [self._k("d", namespace, key), self._k("dix", namespace)]
        args = ["" if expect_version is None else str(expect_version), key]
        deleted, found = await self._call(lambda: self._doc_delete(keys=keys, args=args))
        if deleted == -1:
            raise VersionConflict(namespace, key, expect_version or 0, int(found))
        return bool(deleted)

    async def doc_list(self, namespace: str, now: float, prefix: str = "", limit: int = 1000) -> list[Doc]:
        index = self._k("dix", namespace)
        low = "[" + prefix if prefix else "-"
        high = "[" + prefix + "\xff" if prefix else "+"

        async def fetch() -> list[Any]:
            names = await self._client.zrangebylex(index, low, high)
            if not names:
                return []
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hmget(self._k("d", namespace, name.decode()), "v", "d", "e")
            return list(zip(names, await pipe.execute()))

        docs = []
        for name, row in await self._call(fetch):
            expires = float(row[2]) if row[2] else None
            if row[0] is None or (expires is not None and expires <= now):
                continue
            docs.append(Doc(namespace, name.decode(), int(row[0]), orjson.loads(row[1]), expires))
            if len(docs) >= limit:
                break
        return docs

    # ---- counters

    async def _script(self, script: Any, source: str, sha: str, args: list[bytes | str]) -> list[list[Any]]:
        if self._wire is not None:
            wire = self._wire
            return list(await self._call(lambda: wire.evalsha(sha, source, *args)))
        return list(await self._call(lambda: script(keys=[], args=args)))

    async def _run_reserves(self, items: list[_ReserveItem]) -> list[list[Any]]:
        args: list[bytes | str] = [self._prefix]
        for item in items:
            args.extend(item)
        return await self._script(self._reserve_many, lua.RESERVE_MANY, self._reserve_sha, args)

    async def _run_settles(self, items: list[bytes]) -> list[list[Any]]:
        batch = b"[" + b",".join(items) + b"]"
        return await self._script(self._settle_many, lua.SETTLE_MANY, self._settle_sha, [batch, self._prefix])

    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        now: float,
        expires_at: float,
        meta: JsonDict | None = None,
    ) -> ReserveResult:
        # The charges JSON is stored as is for settlement (read back by the settle script).
        charges_json = orjson.dumps([[c.counter, c.amount, c.unit, c.limit, c.expires_at] for c in charges])
        item = (reservation_id, repr(expires_at), orjson.dumps(meta) if meta else b"", charges_json)
        out = await self._reservations.submit(item)
        states = tuple(
            CounterState(c.counter, int(out[2 + 3 * i]), int(out[3 + 3 * i]), int(out[4 + 3 * i]))
            for i, c in enumerate(charges)
        )
        if out[0] == 1:
            return ReserveResult(True, states)
        return ReserveResult(False, states, int(out[1]) - 1)

    async def _settle_one(self, reservation_id: str, actual: Mapping[str, int] | None, now: float) -> SettleResult:
        item = orjson.dumps([reservation_id, dict(actual or {}), 1 if actual is None else 0, repr(now)])
        out = await self._settlements.submit(item)
        if out[0] != 1:
            return SettleResult(False)
        states, charged = [], []
        for i in range(1, len(out), 4):
            states.append(CounterState(out[i].decode(), int(out[i + 1]), int(out[i + 2])))
            charged.append(int(out[i + 3]))
        return SettleResult(True, tuple(states), tuple(charged))

    async def settle(self, reservation_id: str, actual: Mapping[str, int], now: float) -> SettleResult:
        return await self._settle_one(reservation_id, actual, now)

    async def sweep(self, now: float, limit: int = 100) -> int:
        ids = await self._call(
            lambda: self._client.zrangebyscore(self._k("rexp"), "-inf", repr(now), start=0, num=limit)
        )
        swept = 0
        for rid in ids:
            if (await self._settle_one(rid.decode(), None, now)).settled:
                swept += 1
        return swept

    async def counters(self, names: Sequence[str], now: float) -> list[CounterState]:
        async def fetch() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hmget(self._k("c", name), "u", "r", "l")
            return list(await pipe.execute())

        rows = await self._call(fetch)
        return [CounterState(n, int(r[0] or 0), int(r[1] or 0), int(r[2] or 0)) for n, r in zip(names, rows)]

    async def _run_leases(self, items: list[list[bytes | str]]) -> list[list[Any]]:
        args: list[bytes | str] = [self._prefix]
        for item in items:
            args.extend(item)
        return await self._script(self._lease_many, lua.LEASE_MANY, self._lease_sha, args)

    async def lease(self, update: LeaseUpdate, now: float) -> LeaseResult:
        units = {unit: i + 1 for i, unit in enumerate(update.units)}
        spec = orjson.dumps([
            update.lease_id, update.seq, update.expires_at, orjson.dumps(update.meta).decode() if update.meta else "",
            update.headroom, update.units, update.spent, update.release, update.want, update.min_grant,
            [[c.counter, units[c.unit], c.limit, c.expires_at] for c in update.counters],
        ])
        item: list[bytes | str] = [spec, str(len(update.entries))]
        for rid, meta, charged, ts in update.entries:
            item.append(repr(ts))
            item.append(orjson.dumps({"ts": ts, "id": rid, "meta": meta, "charged": charged, "swept": False}))
        out = await self._leases.submit(item)
        return lease_result(out, update)

    async def ledger_range(self, since: float, until: float, limit: int = 100_000) -> list[LedgerEntry]:
        rows = await self._call(
            lambda: self._client.zrangebyscore(self._k("ledger"), repr(since), f"({until!r}", start=0, num=limit)
        )
        out = []
        for row in rows:
            e = orjson.loads(row)
            out.append(LedgerEntry(float(e["ts"]), e["id"], e["meta"], e["charged"], bool(e["swept"])))
        return out

    async def ledger_append(self, reservation_id: str, meta: JsonDict, charged: dict[str, int], now: float) -> None:
        await self.ledger_append_many([(reservation_id, meta, charged, now)])

    async def ledger_append_many(self, entries: Sequence[LedgerAppend]) -> None:
        mapping: dict[bytes, float] = {
            orjson.dumps({"ts": now, "id": rid, "meta": meta, "charged": charged, "swept": False}): now
            for rid, meta, charged, now in entries
        }
        await self._call(lambda: self._client.zadd(self._k("ledger"), mapping))

    async def ledger_prune(self, before: float, limit: int = 10_000) -> int:
        # Scored by time, so the entries older than `before` are the lowest ranks: the oldest `limit` of
        # them go by rank (no entry is ever written dated before the cutoff, so the count stays true).
        key = self._k("ledger")
        older = int(await self._call(lambda: self._client.zcount(key, "-inf", f"({before!r}")))
        count = min(older, limit)
        if count:
            await self._call(lambda: self._client.zremrangebyrank(key, 0, count - 1))
        return count

    # ---- audit

    async def audit_append(
        self, actor: str, action: str, target: str, reason: str, details: JsonDict, now: float
    ) -> AuditRecord:
        return (await self.audit_append_many([(actor, action, target, reason, details, now)]))[0]

    async def audit_append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        if not entries:
            return []
        async with self._audit_lock:  # one appender per process; replicas contend via the CAS below
            return await self._audit_append_cas(entries)

    async def _audit_append_cas(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain the entries after the head read, and append them all only if the head has not moved."""
        for attempt in range(_AUDIT_RETRIES):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # de-synchronise the replicas
            last_seq, prev = await self.audit_head()
            seq, records = last_seq, []
            for actor, action, target, reason, details, now in entries:
                seq += 1
                digest = entry_hash(prev, seq, now, actor, action, target, reason, details)
                records.append(AuditRecord(seq, now, actor, action, target, reason, details, prev, digest))
                prev = digest
            keys = [self._k("audit"), self._k("audit", "head")]
            args = [last_seq, seq, prev, *(orjson.dumps(_record_dict(r)) for r in records)]
            if await self._call(lambda k=keys, a=args: self._audit_append(keys=k, args=a)):  # type: ignore[misc]
                return records
        raise StoreUnavailable("Redis store: the audit log is too contended to append to; try again")

    async def audit_range(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        # List index i holds seq anchor+i+1 (unless entries were deleted behind the gateway's back:
        # verify() detects that case).
        keys, args = [self._k("audit"), self._k("audit", "anchor")], [after_seq, limit]
        rows = await self._call(lambda: self._audit_range(keys=keys, args=args))
        return [_record_from(orjson.loads(r)) for r in rows]

    async def audit_prune(self, through_seq: int, limit: int = 1_000) -> int:
        anchor, _ = await self.audit_anchor()
        due = [r for r in await self.audit_range(after_seq=anchor, limit=limit) if r.seq <= through_seq]
        if not due:
            return 0
        keys = [self._k("audit"), self._k("audit", "anchor")]
        args = [anchor, len(due), due[-1].seq, due[-1].hash]
        done = await self._call(lambda: self._audit_prune(keys=keys, args=args))
        return len(due) if done else 0  # another replica pruned meanwhile: its step stands, this one is moot

    async def audit_anchor(self) -> tuple[int, str]:
        return await self._seq_and_hash("anchor")

    async def audit_head(self) -> tuple[int, str]:
        return await self._seq_and_hash("head")

    async def _seq_and_hash(self, which: str) -> tuple[int, str]:
        """The audit log's head or anchor hash (seq and hash), or 0 and the genesis hash."""
        row = await self._call(lambda: self._client.hmget(self._k("audit", which), "seq", "hash"))
        return (0, GENESIS) if row[0] is None else (int(row[0]), row[1].decode())

    # ---- cooldowns

    async def cooldown_set(self, deployment_id: str, until: float) -> None:
        await self._call(lambda: self._client.zadd(self._k("cool"), {deployment_id: until}, gt=True))

    async def cooldowns(self, now: float) -> dict[str, float]:
        rows = await self._call(
            lambda: self._client.zrangebyscore(self._k("cool"), f"({now!r}", "+inf", withscores=True)
        )
        return {name.decode(): float(score) for name, score in rows}


def lease_result(out: list[Any], update: LeaseUpdate) -> LeaseResult:
    """The lease script's reply for one update as a `LeaseResult`."""
    status = int(out[0])
    if status == 0:
        return LeaseResult("gone")
    n = len(update.units)
    held = tuple(int(x) for x in out[1 : 1 + n])
    granted = tuple(int(x) for x in out[1 + n : 1 + 2 * n])
    base = 1 + 2 * n
    states = tuple(
        CounterState(c.counter, int(out[base + 3 * i]), int(out[base + 3 * i + 1]), int(out[base + 3 * i + 2]))
        for i, c in enumerate(update.counters)
    )
    return LeaseResult("applied" if status == 1 else "repeat", held, granted, states)


def _record_dict(r: AuditRecord) -> JsonDict:
    return {"seq": r.seq, "ts": r.ts, "actor": r.actor, "action": r.action, "target": r.target,
            "reason": r.reason, "details": r.details, "prev_hash": r.prev_hash, "hash": r.hash}


def _record_from(d: JsonDict) -> AuditRecord:
    return AuditRecord(d["seq"], d["ts"], d["actor"], d["action"], d["target"], d["reason"], d["details"],
                       d["prev_hash"], d["hash"])
