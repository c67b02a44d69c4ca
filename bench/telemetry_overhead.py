"""Telemetry's cost in throughput: the same gateway with telemetry off, metrics only, and tracing on.

Starts a loopback upstream and a loopback OTLP/HTTP receiver as processes of their own, and one real
gateway process (`python -m gateway serve`) per telemetry configuration; then drives each with the
same closed-loop load (N concurrent clients, non-streaming and streaming chat), interleaving rounds
so drift hits all alike. Reports requests per second and the gateway's CPU time per request (steadier
than throughput on a shared machine), each as a ratio to "off".

    python bench/telemetry_overhead.py --seconds 3 --rounds 2 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

KEY = "sk-bench-master-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(upstream_url: str, telemetry: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{upstream_url}', api_key: sk-up-0123456789}}\n"
        f"general_settings: {{master_key: {KEY}}}\n" + telemetry
    )


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.Popen(
        [sys.executable, "-m", *args], env={**base, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def start(path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = spawn(["gateway", "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"], env)
    return process, port


async def wait_listening(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def wait_ready(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"gateway on {port} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux): steadier than throughput on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, seconds: float, concurrency: int, stream: bool) -> tuple[float, int]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "stream": stream}
    headers = {"Authorization": f"Bearer {KEY}"}
    done = 0
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
            done += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return done / (time.perf_counter() - started), done


async def run(args: argparse.Namespace) -> None:
    upstream_port, receiver_port = free_port(), free_port()
    helpers = [
        spawn(["gateway.testing.upstream", "--port", str(upstream_port)]),
        spawn(["gateway.testing.otlp_receiver", "--port", str(receiver_port)]),
    ]
    await wait_listening(upstream_port)
    await wait_listening(receiver_port)
    upstream_url, receiver_url = f"http://127.0.0.1:{upstream_port}/v1", f"http://127.0.0.1:{receiver_port}"
    configs = {
        "off": ("telemetry: {metrics: false}\n", {}),
        "metrics": ("", {}),
        "tracing+metrics": ("", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url}),
        "tracing 10%": ("telemetry: {sample_ratio: 0.1}\n", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url}),
    }
    processes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (telemetry, env) in configs.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(config_text(upstream_url, telemetry))
            processes[name] = start(path, env)
        try:
            for _, port in processes.values():
                await wait_ready(port)
            for stream in (False, True):
                rates: dict[str, list[float]] = {name: [] for name in configs}
                cpu: dict[str, list[float]] = {name: [] for name in configs}
                for name, (_, port) in processes.items():  # warm-up
                    await load(port, min(1.0, args.seconds), args.concurrency, stream)
                for _ in range(args.rounds):
                    for name, (process, port) in processes.items():
                        before = cpu_seconds(process.pid)
                        rate, count = await load(port, args.seconds, args.concurrency, stream)
                        rates[name].append(rate)
                        cpu[name].append((cpu_seconds(process.pid) - before) / max(count, 1))
                base = sum(rates["off"]) / len(rates["off"])
                base_cpu = sum(cpu["off"]) / len(cpu["off"])
                print(f"\n{'stream' if stream else 'json'} chat, concurrency {args.concurrency}:")
                for name, values in rates.items():
                    mean = sum(values) / len(values)
                    per = sum(cpu[name]) / len(cpu[name])
                    print(f"  {name:16s} {mean:8.0f} req/s (x{mean / base:5.3f})   gateway CPU {per * 1e6:6.0f} us/req"
                          f" (x{per / base_cpu:5.3f})")
        finally:
            everything = [process for process, _ in processes.values()] + helpers
            for process in everything:
                process.send_signal(signal.SIGINT)
            for process in everything:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
