"""A loopback TCP proxy that tests can take down and bring back, to make a real store 'unreachable';
and an HTTP CONNECT proxy, as egress proxies are."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._frozen = asyncio.Event()  # the connections open now stop carrying bytes (see `freeze`)
        self._cut = asyncio.Event()  # the connections open now are closed (`down`, `stop`)
        self.port = 0

    def start(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self._target)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._upstream(reader, writer)
        except (OSError, ValueError, EOFError):  # unreachable, or (a CONNECT proxy) a request it does not serve
            writer.close()
            return
        self._writers.update((writer, up_writer))

        frozen, cut = self._frozen, self._cut

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if frozen.is_set():
                        await cut.wait()  # a dead path: nothing goes through until the proxy cuts it
                        break
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        self._cut.set()
        self._cut = asyncio.Event()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._run(self._down())

    def up(self) -> None:
        """Listen again on the same port."""
        self._run(self._listen())

    def partition(self) -> None:
        """A network partition: the open connections go silent (see `freeze`) and new ones are
        refused, until `up`."""

        async def partition() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        self.freeze()
        self._run(partition())

    def freeze(self) -> None:
        """The connections open now go silent without closing, as after a failover behind a virtual IP
        or a dropped NAT entry; connections made afterwards work."""

        async def freeze() -> None:
            self._frozen.set()
            self._frozen = asyncio.Event()

        self._run(freeze())

    async def _cancel_all(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self._run(self._down())
        self._run(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class ConnectProxy(TcpProxy):
    """An HTTP egress proxy: HTTPS through a CONNECT tunnel, plain HTTP forwarded (a request whose
    target is a whole URL). It records each connection's method (CONNECT, or the forwarded request's),
    target (`host:port`) and the Proxy-Authorization header it came with."""

    def __init__(self) -> None:
        super().__init__("", 0)
        self.tunnels: list[tuple[str, str, str | None]] = []

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, version = head[0].split(" ", 2)
        fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        if method == "CONNECT":
            address, path = target, ""
        elif target.startswith("http://"):
            address, _, rest = target.removeprefix("http://").partition("/")
            path = "/" + rest
        else:
            raise ValueError(f"not a proxy request: {head[0]}")
        self.tunnels.append((method, address, fields.get("Proxy-Authorization")))
        host, port = address.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:  # this one request, in origin form, without the proxy's header; one request a connection
            kept = [line for line in head[1:] if line and not line.lower().startswith(("proxy-", "connection:"))]
            up_writer.write("\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""]).encode())
        return up_reader, up_writer

