"""How long one big request stalls every other request, with the ten typical rules and without.

Starts the loopback upstream and two gateways in turn (no policies; the ten rules of
policies_overhead.py), keeps one client sending small chats back to back, and sends one big agent
conversation (a user/assistant history of `--mb` megabytes, an email address and a phone number in
every ~90 characters, so PII redaction has work to do). Prints how long the big request took and the
small requests' worst and median latency while it ran: the worst is the stall everyone else sees.

    python bench/big_request.py [--mb 3.9] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import free_port, spawn, stop_all, wait_listening, wait_ready  # noqa: E402
from policies_overhead import KEY, TEN_RULES, config_text  # noqa: E402

PARAGRAPH = "Write to jane.doe@example.com or call +1 415 555 0100 about invoice 4242, then report back. " * 10


def big_body(megabytes: float) -> bytes:
    messages = 20
    content = (PARAGRAPH + "\n") * max(1, int(megabytes * 1e6 / messages / (len(PARAGRAPH) + 1)))
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": content} for i in range(messages)]
    return orjson.dumps({"model": "gpt-4o", "messages": history, "max_tokens": 5})


async def measure(port: int, big: bytes) -> tuple[float, list[float]]:
    """The big request's time, and the small requests' latencies while it ran."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    small = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
                assert reply.status == 200, reply.status

        for _ in range(20):
            await post(small)
        done = asyncio.Event()
        latencies: list[float] = []

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await post(small)
                latencies.append(time.perf_counter() - started)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        await post(big)
        took = time.perf_counter() - started
        done.set()
        await prober
    return took, latencies


async def run(args: argparse.Namespace) -> None:
    upstream_port = free_port()
    upstream = spawn(["gateway.testing.upstream", "--port", str(upstream_port)])
    await wait_listening(upstream_port)
    big = big_body(args.mb)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, policies in (("none", ""), ("ten rules", TEN_RULES)):
                path = Path(tmp) / f"{name.replace(' ', '-')}.yaml"
                path.write_text(config_text(f"http://127.0.0.1:{upstream_port}/v1", str(path.with_suffix(".db")), policies))
                port = free_port()
                gateway = spawn(["gateway", "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"])
                try:
                    await wait_ready(port)
                    for _ in range(args.rounds):
                        took, latencies = await measure(port, big)
                        print(f"{name:9s} a {len(big) / 1e6:.1f} MB request took {took * 1000:4.0f} ms; meanwhile"
                              f" {len(latencies)} small requests, worst {max(latencies) * 1000:4.0f} ms,"
                              f" median {statistics.median(latencies) * 1000:4.1f} ms", flush=True)
                finally:
                    stop_all([gateway])
    finally:
        stop_all([upstream])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=3.9, help="size of the big request (the default limit is 4 MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
