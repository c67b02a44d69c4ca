"""The opt-in access log: one line per request with what an operator greps for."""

from __future__ import annotations

import logging
import time

import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory, openai_model


def access_lines(caplog: pytest.LogCaptureFixture, count: int, seconds: float = 10.0) -> list[str]:
    """The access log's lines once there are `count` of them (bounded: the test fails after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "lockgate.access"]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count
            return lines
        time.sleep(0.01)  # written on the gateway's own thread, which offers no event to wait on


def test_each_request_is_one_line_with_its_ids_status_model_and_deployment(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = gateway_factory(
        "model_list:\n" + openai_model("gpt-4o", upstream)
        + f"general_settings: {{master_key: {MASTER_KEY}}}\nserver: {{access_log: true}}\n"
    )
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    with caplog.at_level(logging.INFO, logger="lockgate.access"):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-lockgate-session-id": "sess 9"},
        )
        with pytest.raises(openai.NotFoundError):  # a newline in a client's value cannot forge a line
            client.chat.completions.create(model="no-such\nstatus=200", messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                stream=True)
        assert [chunk for chunk in stream]
        # A stream's line is written once its last byte has gone, on the server's thread: the client
        # can have read that byte first. Wait for the line itself (while the level still lets it in).
        lines = access_lines(caplog, 3)

    served, missing, streamed = (dict(field.split("=", 1) for field in line.split(" ")) for line in lines)
    assert served["request_id"] == raw.headers["x-request-id"]
    assert served["trace_id"] == raw.headers["x-lockgate-trace-id"]
    assert (served["status"], served["model"], served["deployment"], served["attempts"]) == ("200", "gpt-4o",
                                                                                              "gpt-4o#0", "1")
    assert served["method"] == "POST" and served["path"] == "/v1/chat/completions" and served["key"] == "master"
    assert served["session"] == "sess_9"  # no spaces in a value: a line splits on them
    assert missing["status"] == "404" and missing["deployment"] == "-" and missing["model"] == "no-such_status=200"
    assert streamed["stream"] == "true" and streamed["status"] == "200" and float(streamed["duration_ms"]) > 0


def test_no_access_log_unless_asked(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = gateway_factory("model_list:\n" + openai_model("gpt-4o", upstream))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with caplog.at_level(logging.INFO, logger="lockgate.access"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert not [r for r in caplog.records if r.name == "lockgate.access"]
