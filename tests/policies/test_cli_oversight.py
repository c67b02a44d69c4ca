"""`lockgate approvals ...` and `lockgate pause|resume|stop` against a real gateway, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url


def lockgate(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"LOCKGATE_URL": gateway.url, "LOCKGATE_MASTER_KEY": MASTER_KEY, "LOCKGATE_USER": "gina", "PATH": ""}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_approve_from_the_cli_and_pause_a_session(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=0))
    agent = client(gateway, **{"x-lockgate-session-id": "cli-s"})
    agent.chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])

    listed = lockgate(gateway, "approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [pending] = json.loads(listed.stdout)
    shown = lockgate(gateway, "approvals", "show", pending["id"])
    assert "wire_money" in shown.stdout and "pending" in shown.stdout

    bad = lockgate(gateway, "approvals", "edit", pending["id"], "--args", '{"amount": "x"}')
    assert bad.returncode == 1 and "do not fit the schema" in bad.stderr.replace("\n", " ")
    approved = lockgate(gateway, "approvals", "approve", pending["id"], "--reason", "ok")
    assert approved.returncode == 0 and "approve by gina" in approved.stdout
    again = lockgate(gateway, "approvals", "approve", pending["id"])
    assert again.returncode == 1 and "already decided" in again.stderr

    assert lockgate(gateway, "pause", "--session", "cli-s", "--reason", "lunch").stdout.strip() == "session:cli-s paused"
    assert Admin(gateway).http.get("/admin/pauses").json()["data"][0]["by"] == "gina"
    assert lockgate(gateway, "resume", "--session", "cli-s").stdout.strip() == "session:cli-s running"
    assert lockgate(gateway, "stop").returncode == 2  # neither --session nor --key
