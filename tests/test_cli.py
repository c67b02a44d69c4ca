"""The `lockgate` command as a newcomer runs it: check a config, serve it, run the demo."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.store import store_problem

LOCKGATE = [sys.executable, "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll /readyz until the server answers; fail with its output if it exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited: {process.stdout.read().decode() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)  # polling a process we do not control: there is no event to await
    raise AssertionError("the gateway did not become ready")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [*LOCKGATE, *args, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
        )
        procs.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        return url

    yield start  # type: ignore[misc]
    for process in procs:
        process.terminate()
        process.wait(10)


def test_check_reports_each_problem_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: fake/a, wieght: 2}\nserver: {prot: 1}\n")
    result = subprocess.run([*LOCKGATE, "check", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "server.prot: unknown key; did you mean 'port'?" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: fake/a, wieght: 2}\n")
    result = subprocess.run([*LOCKGATE, "check", str(good)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "model_list[0].litellm_params.wieght: LiteLLM setting not implemented" in result.stdout
    assert "1 model groups, 1 deployments" in result.stdout


def test_serve_refuses_a_sqlite_store_it_cannot_write(tmp_path: Path) -> None:
    # A store path whose directory cannot exist (here: a file stands in its place), as a read-only
    # working directory is for a container's user: the gateway would have served with every budget,
    # hold and audit write failing. It says so and stops instead.
    (tmp_path / "state").write_text("a file, not a directory")
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: fake/m}\n"
        f"store: sqlite:///{tmp_path / 'state' / 'lockgate.db'}\n"
    )
    result = subprocess.run([*LOCKGATE, "serve", "--config", str(config), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "store: the SQLite database" in result.stderr and "cannot be opened for writing" in result.stderr


def test_a_sqlite_store_another_process_is_writing_is_not_refused(tmp_path: Path) -> None:
    # Two gateways started at once on one file (or one started while another writes) found the
    # database locked, and the start-up check called that "cannot be opened for writing".
    path = tmp_path / "lockgate.db"
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE t (x)")
        writer.execute("BEGIN EXCLUSIVE")
        assert store_problem(f"sqlite:///{path}") is None
    finally:
        writer.close()


def test_serve_runs_a_config_as_a_real_process(tmp_path: Path, running) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: fake/m}\n"
        "general_settings: {master_key: os.environ/TEST_MASTER_KEY}\n"
    )
    os.environ["TEST_MASTER_KEY"] = "sk-from-the-environment"
    url = running("serve", "--config", str(config))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-from-the-environment", max_retries=0)
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices


def test_demo_serves_the_fake_models_without_a_key_or_network(running) -> None:  # type: ignore[no-untyped-def]
    url = running("demo")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="lockgate-demo-key", max_retries=0)
    assert {m.id for m in client.models.list()} >= {"gpt-4o-mini", "flaky-model", "down-model"}
    reply = client.chat.completions.create(model="down-model", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "This is Lockgate's fake provider. You said: hello"
