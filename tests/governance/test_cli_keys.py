"""`lockgate keys ...` against a running gateway, as an operator runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.governance.helpers import governed_yaml


def lockgate(*args: str, url: str, master_key: str = MASTER_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKGATE_MASTER_KEY": master_key, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--url", url], check=False, capture_output=True, text=True, env=env, timeout=60
    )


def test_keys_create_list_revoke(upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gateway = gateway_factory(governed_yaml(upstream, f"sqlite:///{tmp_path / 'db.sqlite'}"))
    created = lockgate(
        "keys", "create", "--name", "nightly-evals", "--team", "research", "--budget", "25/daily",
        "--model", "gpt-4o-mini", "--rpm", "60", url=gateway.url,
    )
    assert created.returncode == 0, created.stderr
    secret = re.search(r"sk-lg-[A-Za-z0-9_\-]+", created.stdout)
    assert secret and "shown once" in created.stdout
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret.group(0), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    listed = lockgate("keys", "list", url=gateway.url)
    assert listed.returncode == 0, listed.stderr
    assert "nightly-evals" in listed.stdout and "$25/daily" in listed.stdout and "research" in listed.stdout
    assert secret.group(0) not in listed.stdout
    key_id = re.search(r"\b[0-9a-f]{16}\b", listed.stdout)
    assert key_id

    revoked = lockgate("keys", "revoke", key_id.group(0), "--reason", "rotated", url=gateway.url)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert "nightly-evals" not in lockgate("keys", "list", url=gateway.url).stdout


def test_a_wrong_master_key_is_a_clear_error(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = gateway_factory(governed_yaml(upstream, f"sqlite:///{tmp_path / 'db.sqlite'}"))
    result = lockgate("keys", "list", url=gateway.url, master_key="sk-wrong-wrong-wrong")
    assert result.returncode == 1 and "401" in result.stderr and "master key" in result.stderr
