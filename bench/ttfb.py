"""Time to first byte for streaming requests: a small asyncio client over raw sockets.

wrk reports when a response *ends*; for a stream what a user feels first is when the body starts.
This client keeps `concurrency` keep-alive connections, sends a bounded number of POSTs on each,
and records, per request, the seconds from writing the request to the first body byte (TTFB) and to
the end of the response. It speaks just enough HTTP/1.1 for the stub and the gateway
(Content-Length or chunked bodies). The same client measures the direct and the gateway call, so
its own overhead cancels out of the difference.

Used by `bench/run.py`; standalone: `python bench/ttfb.py URL BODY_FILE --concurrency 10 --per-connection 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def _one_connection(
    host: str, port: int, request: bytes, count: int, out: list[tuple[float, float]], errors: list[str]
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        errors.append(f"connect: {exc}")
        return
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return  # the body's framing is unknown to us; stop this connection
            first_byte = await reader.readexactly(1)
            first = time.perf_counter() - start
            await _rest_of_body(reader, head, first_byte)
            out.append((first, time.perf_counter() - start))
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def _rest_of_body(reader: asyncio.StreamReader, head: bytes, first_byte: bytes) -> None:
    """Reads what follows the first body byte, which the caller has already consumed."""
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        line = first_byte + await reader.readuntil(b"\r\n")  # the first chunk-size line
        while True:
            size = int(line.strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # the empty line that ends the body (no trailers)
                return
            await reader.readexactly(size + 2)
            line = await reader.readuntil(b"\r\n")
    at = lower.find(b"content-length:")
    if at >= 0:
        length = int(lower[at + 15 :].split(b"\r\n", 1)[0].strip())
        if length > 1:
            await reader.readexactly(length - 1)


def _request(url: str, body: bytes, key: str | None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"{auth}content-length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


async def measure(
    url: str, body: bytes, key: str | None, concurrency: int, per_connection: int
) -> dict[str, object]:
    host, port, request = _request(url, body, key)
    samples: list[tuple[float, float]] = []
    errors: list[str] = []
    await asyncio.gather(
        *(_one_connection(host, port, request, per_connection, samples, errors) for _ in range(concurrency))
    )
    return summarise(samples, errors)


def summarise(samples: list[tuple[float, float]], errors: list[str]) -> dict[str, object]:
    firsts = sorted(s[0] for s in samples)
    totals = sorted(s[1] for s in samples)
    return {
        "requests": len(samples),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "ttfb_p50_ms": _pct(firsts, 50),
        "ttfb_p99_ms": _pct(firsts, 99),
        "total_p50_ms": _pct(totals, 50),
    }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return round(values[index] * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--key")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--per-connection", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with open(args.body_file, "rb") as f:
        body = f.read()
    result = asyncio.run(measure(args.url, body, args.key, args.concurrency, args.per_connection))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
