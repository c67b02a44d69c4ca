"""Several real gateway processes serving one config (replicas sharing a store), for multi-replica tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai

from tests.test_cli import free_port, wait_ready


@contextmanager
def gateway_processes(config: Path, count: int, *extra_args: str) -> Iterator[list[str]]:
    """`count` `lockgate serve` processes on `config`; yields their base URLs, stops them all after."""
    with gateway_replicas(config, count, *extra_args) as replicas:
        yield [url for url, _ in replicas]


@contextmanager
def gateway_replicas(
    config: Path, count: int, *extra_args: str, environ: dict[str, str] | None = None
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """Like `gateway_processes`, with each process too (a test may stop or kill one itself), and
    `environ` added to their environment.

    Each process writes its output to a file next to the config (an unread pipe could fill and block
    it), kept for a failing test's post-mortem.
    """
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(count):
            port = free_port()
            log = (config.parent / f"replica-{i}.log").open("wb")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), *extra_args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(environ or {})},
            ))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process, timeout=90)  # a busy shared machine can be slow to start several
        yield list(zip(urls, processes, strict=True))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()  # never leave a process behind
                process.wait(10)


async def ask_budgeted(client: openai.AsyncOpenAI, i: int) -> str:
    """One small chat request against a budget: "served", "refused" (budget_exceeded), or what else happened."""
    try:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=5
        )
        return "served"
    except openai.RateLimitError as error:
        return "refused" if error.code == "budget_exceeded" else f"other 429: {error.message}"
    except openai.APIError as error:
        return f"error: {error}"
