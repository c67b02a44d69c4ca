"""The Redis store's pipelined script connection: reconnects by itself, loads scripts Redis lacks,
and the redis-py path (TLS, unix sockets) answers the same."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import uvloop

from gateway.store import Charge, StoreUnavailable
from gateway.store.redis_store import RedisStore
from gateway.store.redis_wire import RedisWire, WireError, script_sha
from gateway.testing.tcp_proxy import TcpProxy

NOW = time.time() + 86400
URL = "redis://127.0.0.1:6379/0"


def budget(counter: str, amount: int, limit: int) -> Charge:
    return Charge(counter, amount, "usd_micros", limit, NOW + 3600)


async def test_reserve_and_settle_survive_redis_going_away_and_coming_back(redis_prefix: str) -> None:
    proxy = TcpProxy("127.0.0.1", 6379).start()
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0?prefix={redis_prefix}", timeout=1.0)
    try:
        assert (await store.reserve("a", [budget("g", 10, 100)], NOW, NOW + 60)).ok
        proxy.down()  # cuts the open connection, refuses new ones
        with pytest.raises(StoreUnavailable) as down:
            await store.reserve("b", [budget("g", 10, 100)], NOW, NOW + 60)
        assert "127.0.0.1" in str(down.value)
        proxy.up()
        # No restart: the next call connects again, and nothing was lost or double counted.
        settled = await store.settle("a", {"usd_micros": 7}, NOW)
        assert settled.settled and [(s.used, s.reserved) for s in settled.states] == [(7, 0)]
        assert (await store.reserve("b", [budget("g", 10, 100)], NOW, NOW + 60)).ok
        assert [(c.used, c.reserved) for c in await store.counters(["g"], NOW)] == [(7, 10)]
    finally:
        await store.aclose()
        proxy.stop()


def test_a_connection_closed_under_a_call_is_a_lost_connection_not_a_crash() -> None:
    # On uvloop (the gateway's loop) a write on a closed connection raises RuntimeError; it escaped the
    # store as one, a 500 and a cut stream during a Redis outage (bench/soak.py). The state it met:
    # the connection closed, and the wire still holding it.
    async def scenario() -> None:
        wire = RedisWire(URL, timeout=2.0)
        try:
            assert await wire.call("PING") == b"PONG"
            writer, reader = wire._writer, wire._reader_task
            assert writer is not None and reader is not None
            writer.transport.abort()
            await reader  # it saw the connection go and cleared it...
            wire._writer = writer  # ...but a call that got here first still holds it
            with pytest.raises(ConnectionError):  # an OSError: the store reports it as StoreUnavailable
                await wire.call("PING")
            assert await wire.call("PING") == b"PONG"  # and the next call connects anew
        finally:
            await wire.aclose()

    uvloop.run(scenario())


async def test_a_script_redis_does_not_have_is_loaded_on_first_use() -> None:
    wire = RedisWire(URL, timeout=2.0)
    # A script no one ran before (unique text, so a fresh SHA): EVALSHA misses, EVAL loads it.
    script = f"-- {uuid.uuid4().hex}\nreturn {{tonumber(ARGV[1]) + 1, ARGV[2]}}"
    try:
        assert await wire.evalsha(script_sha(script), script, 41, "x") == [42, b"x"]
        assert await wire.call("SCRIPT", "EXISTS", script_sha(script)) == [1]
        with pytest.raises(WireError, match="boom"):
            await wire.evalsha(script_sha("return redis.error_reply('boom')"), "return redis.error_reply('boom')")
    finally:
        await wire.aclose()


async def test_the_redis_py_script_path_reserves_refuses_and_settles_alike(redis_prefix: str) -> None:
    store = RedisStore(f"{URL}?prefix={redis_prefix}", pipelined_scripts=False)
    try:
        ok = await store.reserve("r1", [budget("g", 60, 100), Charge("t", 5, "tokens")], NOW, NOW + 60, meta={"k": "v"})
        assert ok.ok and [(s.used, s.reserved) for s in ok.states] == [(0, 60), (0, 5)]
        refused = await store.reserve("r2", [budget("g", 60, 100)], NOW, NOW + 60)
        assert not refused.ok and refused.refused_index == 0
        settled = await store.settle("r1", {"usd_micros": 30, "tokens": 4}, NOW)
        assert settled.settled and settled.charged == (30, 4)
        assert [(e.reservation_id, e.meta, e.charged) for e in await store.ledger_range(NOW - 1, NOW + 1)] == [
            ("r1", {"k": "v"}, {"usd_micros": 30, "tokens": 4})
        ]
    finally:
        await store.aclose()


async def test_counters_keep_the_expiry_of_their_window(redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    store = RedisStore(f"{URL}?prefix={redis_prefix}")
    client = aioredis.Redis.from_url(URL)
    key = f"{redis_prefix}:c:g"
    try:
        for rid in ("a", "b"):  # the first reservation creates the counter, the second finds it
            assert (await store.reserve(rid, [budget("g", 10, 100)], NOW, NOW + 60)).ok
            assert (await store.settle(rid, {"usd_micros": 3}, NOW)).settled
            assert await client.pexpiretime(key) == int((NOW + 3600) * 1000)
        await client.delete(key)  # gone while a reservation is open: the settlement recreates it, expiring
        assert (await store.reserve("c", [budget("g", 10, 100)], NOW, NOW + 60)).ok
        await client.delete(key)
        assert (await store.settle("c", {"usd_micros": 3}, NOW)).settled
        assert await client.pexpiretime(key) == int((NOW + 3600) * 1000)
    finally:
        await client.aclose()
        await store.aclose()


async def test_a_connection_gone_silent_is_dropped_and_the_next_call_connects_anew(redis_prefix: str) -> None:
    # A failover behind a virtual IP, a NAT entry dropped: the open connection takes commands and never
    # answers, and nothing closes it. Kept, it timed every later command out (a 503 for every request
    # that reserves budget) until TCP gave up on it, many minutes on.
    proxy = TcpProxy("127.0.0.1", 6379).start()
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0?prefix={redis_prefix}", timeout=0.5)
    try:
        assert (await store.reserve("a", [budget("g", 10, 100)], NOW, NOW + 60)).ok
        # Many pooled connections, as under load, all going silent together: redis-py's path already
        # recovered from that by itself; the pipelined script connection did not.
        assert await asyncio.gather(*(store.doc_get("docs", "x", NOW) for _ in range(20))) == [None] * 20
        proxy.freeze()
        with pytest.raises(StoreUnavailable):
            await store.reserve("b", [budget("g", 10, 100)], NOW, NOW + 60)
        with pytest.raises(StoreUnavailable):
            await store.doc_get("docs", "x", NOW)
        # Redis itself is fine: the next calls reach it on new connections.
        assert (await store.reserve("c", [budget("g", 10, 100)], NOW, NOW + 60)).ok
        assert await store.doc_get("docs", "x", NOW) is None
    finally:
        await store.aclose()
        proxy.stop()
