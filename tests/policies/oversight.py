"""Helpers for hold-for-approval tests: a gateway config with a held tool, and the admin API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY
from tests.policies.helpers import config, tool

WIRE = tool("wire_money", account="string", amount="number")
HOLD_WIRES = """
tools:
  - {name: wires-need-a-human, tool: wire_money, action: hold, message: money leaves the company}
"""


def hold_config(upstream: UpstreamServer, store: str, hold_window: float = 30, expire_after: float = 3600,
                keep_alive: float = 0.2, extra: str = "") -> str:
    approvals = (f"approvals: {{hold_window: {hold_window}, expire_after: {expire_after}, "
                 f"keep_alive: {keep_alive}}}\nstore: '{store}'\n")
    return config(upstream, HOLD_WIRES, approvals + extra)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lockgate.db'}"


class Admin:
    def __init__(self, gateway: GatewayServer) -> None:
        self.http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)

    def pending(self) -> list[dict[str, Any]]:
        response = self.http.get("/admin/approvals", params={"status": "pending"})
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def wait_for_pending(self, count: int = 1, limit: float = 10.0) -> list[dict[str, Any]]:
        """Poll until `count` holds are pending (the held request is in flight in another thread)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            pending = self.pending()
            if len(pending) >= count:
                return pending
            time.sleep(0.05)
        raise AssertionError(f"no {count} pending approval(s) appeared")

    def wait_for_waiting(self, target: str, limit: float = 10.0) -> None:
        """Poll until a request waits on the paused `target` (it is in flight in another thread)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for pause in self.http.get("/admin/pauses").json()["data"]:
                if pause["target"] == target and pause["waiting"] >= 1:
                    return
            time.sleep(0.05)
        raise AssertionError(f"no request waited on {target}")

    def decide(self, approval_id: str, action: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/admin/approvals/{approval_id}/{action}", json=body)
