"""A big request's pre-call rules run off the event loop: other requests keep being answered meanwhile.

A long agent conversation (megabytes: models take a million tokens now) takes the ten typical rules
hundreds of milliseconds to scan. On the event loop that stalled every other request of the gateway
for as long; the scan now runs on a worker thread, and it still rewrites what reaches the model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.policies.helpers import config

PARAGRAPH = "Write to jane.doe@example.com or call +1 415 555 0100 about invoice 4242, then report back. " * 10
MESSAGES = 16
CLIENTS = 4


def _big_body() -> bytes:
    content = (PARAGRAPH + "\n") * 250  # ~240 KB a message, ~3.9 MB in all (the default limit is 4 MiB), a redaction every ~90 characters
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": content} for i in range(MESSAGES)]
    return orjson.dumps({"model": "gpt-4o", "messages": messages, "max_tokens": 5})


def test_other_requests_are_answered_while_a_big_one_is_scanned_and_its_redaction_still_reaches_the_model(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, "pii: {action: redact, responses: false}\n"
                                               "deny_patterns: [{name: drops, pattern: 'drop\\s+table'}]"))
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    body = _big_body()
    sent = threading.Event()
    answered = threading.Event()
    big: list[httpx.Response] = []

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start:start + 65_536]
        sent.set()  # the whole body is on its way: from here on the gateway parses and scans it

    def send_big() -> None:
        with httpx.Client(timeout=60) as http:
            big.append(http.post(f"{gateway.url}/v1/chat/completions", content=chunks(), headers=headers))
        answered.set()

    sender = threading.Thread(target=send_big)
    sender.start()
    assert sent.wait(30)
    small = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

    def keep_asking() -> int:
        """Small requests one after another until the big one is answered: how many were answered first."""
        count = 0
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
            while not answered.is_set():
                reply = http.post("/v1/chat/completions", json=small)
                assert reply.status_code == 200
                count += 0 if answered.is_set() else 1
        return count

    with ThreadPoolExecutor(CLIENTS) as pool:
        meanwhile = sum(pool.map(lambda _: keep_asking(), range(CLIENTS)))
    sender.join()

    assert big[0].status_code == 200
    # On the event loop, only the requests answered while the body was still arriving (~9, measured);
    # on the worker thread, handing the GIL back every 0.5 ms, they go on all along (~250-300 here).
    assert meanwhile >= 100, meanwhile
    received = [r.body for r in upstream.upstream.received if len(r.body["messages"]) == MESSAGES]
    assert len(received) == 1
    redacted = received[0]["messages"][5]["content"]
    assert "jane.doe@example.com" not in redacted and "[REDACTED:email]" in redacted
    assert "[REDACTED:phone]" in redacted
