"""A lean, pipelined Redis connection for the Redis store's hot path: the reserve and settle scripts.

Part of the Redis store (`redis_store.py` is its only user; hiredis, redis-py's own parser, enters
the codebase here only). redis-py's client spends about 85 us of CPU per command on uvloop
(connection pool lock, retry wrapper, health checks, observability hooks; measured in this repo),
which was most of governance's cost per request. Here a command is packed into one buffer, written
at once on a single connection, and answered by a reader task that matches replies in order, so
reservations and settlements in flight share the connection (pipelining) for about 15 us each.

Only idempotent commands go through it: after a connection error a command is sent once more on a
new connection (the reserve and settle scripts are idempotent per reservation id), which is what
redis-py's default retry did before. Everything else the store does still uses redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis


class WireError(Exception):
    """Redis answered a command with an error (other than a script missing from its cache)."""


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def pack(args: tuple[bytes | str | int, ...]) -> bytes:
    """One RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg if isinstance(arg, int) else arg
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class RedisWire:
    """One connection to a `redis://` URL (host, port, password/user, db), reconnected on demand."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._db = int(parts.path.strip("/") or 0)
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._connecting = asyncio.Lock()

    async def evalsha(self, sha: str, script: str, *args: bytes | str | int) -> Any:
        """Run a cached script, loading it (EVAL) if Redis does not have it yet."""
        reply = await self.call("EVALSHA", sha, 0, *args)
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith("NOSCRIPT"):
                reply = await self.call("EVAL", script, 0, *args)
            if isinstance(reply, hiredis.ReplyError):
                raise WireError(str(reply))
        return reply

    async def call(self, *args: bytes | str | int) -> Any:
        """The reply (an error reply is returned, not raised); OSError if Redis cannot be reached."""
        command = pack(args)
        for attempt in (0, 1):
            reused = self._writer is not None
            writer = self._writer or await self._connect()
            try:
                writer.write(command)
            except RuntimeError as exc:
                # uvloop refuses a write on a connection already closed under us (a Redis that went away
                # while we connected): a lost connection, not a bug. It raised through the store as a
                # RuntimeError: a 500, and a stream cut with a traceback (bench/soak.py, Redis outage).
                if self._writer is writer and (self._reader_task is None or self._reader_task.done()):
                    self._writer = None  # no reader is left to clear it: the next call connects anew
                raise ConnectionError(f"connection to Redis lost: {exc}") from None
            # After the write, with no await in between: replies are matched to futures in order.
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append(future)
            try:
                async with asyncio.timeout(self._timeout):
                    return await future
            except TimeoutError:
                # No answer in time. The connection may be dead without knowing it (a failover behind a
                # virtual IP, a NAT entry dropped): kept, it timed every later command out until TCP
                # gave up on it, many minutes on. Dropped, the next command connects anew; the others
                # waiting on it are sent once more on the new one (they are idempotent).
                self._drop(writer)
                raise
            except ConnectionError:
                if attempt or not reused:
                    raise
                # A connection that broke while idle (Redis restarted, a proxy dropped it): once more.
        raise AssertionError("unreachable")

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        """Close `writer`'s connection: its reader then fails whatever still waits on it."""
        if self._writer is writer:
            self._writer = None
        writer.close()

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
                try:
                    setup: list[tuple[bytes | str | int, ...]] = []
                    if self._password is not None:
                        setup.append(("AUTH", self._user, self._password) if self._user else ("AUTH", self._password))
                    if self._db:
                        setup.append(("SELECT", self._db))
                    parser = hiredis.Reader()
                    for command in setup:
                        writer.write(pack(command))
                        reply = await _read_one(reader, parser)
                        if isinstance(reply, hiredis.ReplyError):
                            raise ConnectionError(f"{command[0]!r} refused: {reply}")
                except BaseException:
                    writer.close()
                    raise
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read_replies(reader, writer, parser))
            return writer

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            parser: hiredis.Reader) -> None:
        error: Exception = ConnectionError("Redis closed the connection")
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = self._waiting.popleft()
                    if not future.done():  # its caller may have timed out
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError, IndexError) as exc:
            error = ConnectionError(f"connection to Redis lost: {exc}")
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(error)

    async def aclose(self) -> None:
        task, self._reader_task = self._reader_task, None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _read_one(reader: asyncio.StreamReader, parser: hiredis.Reader) -> Any:
    while (reply := parser.gets()) is False:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("Redis closed the connection")
        parser.feed(data)
    return reply
