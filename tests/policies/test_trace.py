"""Policy verdicts, loop notes and holds appear on the request's trace as span events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.config import parse_config
from gateway.testing.server import GatewayServer
from gateway.testing.upstream import UpstreamServer
from tests.policies.helpers import ask, client, config
from tests.policies.oversight import HOLD_WIRES, WIRE, Admin, sqlite_url
from tests.telemetry.conftest import SpanSink


@pytest.fixture
def traced(tmp_path: Path, upstream: UpstreamServer) -> Iterator[tuple[GatewayServer, SpanSink]]:
    sink = SpanSink()
    text = config(
        upstream,
        HOLD_WIRES + "pii: {action: redact, responses: false}\ndeny_patterns: [{name: no-drops, pattern: drop table}]",
        f"approvals: {{hold_window: 0}}\nstore: '{sqlite_url(tmp_path)}'\n",
    )
    server = GatewayServer(parse_config(text), span_exporter=sink).start()
    yield server, sink
    server.stop()


def events(span: object, name: str) -> list[dict[str, object]]:
    return [dict(e.attributes or {}) for e in getattr(span, "events", ()) if e.name == name]


def test_verdicts_and_holds_are_span_events(traced: tuple[GatewayServer, SpanSink]) -> None:
    gateway, sink = traced
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("drop table users"))
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("mail bob@example.com"))
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("pay"), tools=[WIRE])
    denied, redacted, held = sink.wait_servers(3)
    assert events(denied, "lockgate.policy.verdict") == [
        {"rule": "no-drops", "action": "deny", "phase": "pre_call", "detail": "the request matches a denied pattern"}
    ]
    assert events(redacted, "lockgate.policy.verdict")[0]["action"] == "redact"
    [pending] = Admin(gateway).pending()
    assert events(held, "lockgate.approval.hold")[0]["approval_id"] == pending["id"]
    assert events(held, "lockgate.approval.awaiting")[0]["approval_id"] == pending["id"]
