"""Shared pieces of the feature-overhead benchmarks (governance, policies): processes and load.

Each benchmark starts the loopback upstream and one gateway process per setting, then drives them
with a closed-loop aiohttp load (each of `concurrency` clients sends its next request when the last
one is answered) for a bounded time, and reads the gateway's CPU time from /proc.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(args: list[str], tree: str | None = None) -> subprocess.Popen[bytes]:
    """`python -m <args>`, quiet; `tree`: run the code of that checkout (`-m` puts the working
    directory first on sys.path)."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tree, env=env)


def start(path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """A gateway serving the config at `path`, without the caller's OTEL_* settings; (process, port)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"],
        env={**base, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=path.parent,
    )
    return process, port


async def wait_ready(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling another process: there is no event to await
    raise RuntimeError(f"gateway on {port} did not start")


async def wait_listening(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A client's n-th request: (client number, n) -> (body, extra headers).
Turn = Callable[[int, int], tuple[dict[str, Any], dict[str, str]]]


async def closed_loop(
    port: int, body: dict[str, Any] | Turn, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, int]:
    """Requests per second and the count, for `concurrency` clients posting chat completions.

    `body` is the same body for every request, or a function giving each client's n-th request.
    """
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    done = 0
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        nonlocal done
        sent = 0
        while time.perf_counter() < stop:
            if callable(body):
                payload, extra = body(number, sent)
                sent += 1
                request = session.post(url, json=payload, headers={**headers, **extra})
            else:
                request = session.post(url, json=body, headers=headers)
            async with request as response:
                answer = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {answer[:300]!r}")
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session, number) for number in range(concurrency)))
        return done / (time.perf_counter() - started), done


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT every process (a graceful shutdown), then wait; kill what does not stop in 15 s."""
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def metric_sum(text: str, name: str, label: str | None = None) -> dict[str, float]:
    """A Prometheus counter's samples summed by one label's value (or all together under "")."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            value = float(line.rsplit(" ", 1)[1])
            key = ""
            if label is not None:
                match = re.search(label + r'="([^"]*)"', line)
                key = match.group(1) if match else ""
            found[key] += value
    return dict(found)
