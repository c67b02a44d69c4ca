"""A gateway told to stop (a deploy, a scale-down) while requests wait for a reviewer.

A real `lockgate serve` process and SIGTERM, as an orchestrator sends it. The held clients must get
the ordinary "awaiting approval" answer at once, not a 500 or a broken stream when the server's
grace period runs out; the decision is then delivered by whichever gateway serves the retry.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from gateway.testing.upstream import UpstreamServer
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url
from tests.replicas import gateway_replicas


def test_requests_held_for_a_reviewer_answer_at_once_when_the_gateway_is_stopped(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(hold_config(upstream, sqlite_url(tmp_path), hold_window=600))
    with gateway_replicas(config, 1) as [(url, process)]:
        gateway = SimpleNamespace(url=url)
        agent = client(gateway, **{"x-lockgate-session-id": "s-deploy"})  # type: ignore[arg-type]
        agent.timeout = 120

        def ask_json() -> str:
            answer = agent.chat.completions.create(model="gpt-4o", messages=ask("pay invoice 1"), tools=[WIRE])
            return answer.choices[0].message.content or ""

        def ask_streaming() -> str:
            chunks = agent.chat.completions.create(
                model="gpt-4o", messages=ask("pay invoice 2"), tools=[WIRE], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        with ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(ask_json), pool.submit(ask_streaming)]
            held = Admin(gateway).wait_for_pending(2)  # type: ignore[arg-type]
            process.send_signal(signal.SIGTERM)
            texts = [answer.result(timeout=60) for answer in answers]
        process.wait(30)

    # Each client heard that its action awaits approval, with the id a reviewer sees.
    ids = {hold["id"] for hold in held}
    for text in texts:
        assert "is awaiting human approval" in text
        assert any(f"(approval id {approval_id})" in text for approval_id in ids)
    log = (tmp_path / "replica-0.log").read_text()
    assert "Traceback" not in log and "graceful shutdown exceeded" not in log, log


def test_a_paused_session_waiting_to_be_resumed_answers_at_once_when_the_gateway_is_stopped(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(hold_config(upstream, sqlite_url(tmp_path), hold_window=600))
    with gateway_replicas(config, 1) as [(url, process)]:
        gateway = SimpleNamespace(url=url)
        admin = Admin(gateway)  # type: ignore[arg-type]
        admin.http.post("/admin/pauses/session/s-paused/pause", json={"by": "olga"}).raise_for_status()
        agent = client(gateway, **{"x-lockgate-session-id": "s-paused"})  # type: ignore[arg-type]
        agent.timeout = 120
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(agent.chat.completions.create, model="gpt-4o", messages=ask("hello"))
            admin.wait_for_waiting("session:s-paused")
            process.send_signal(signal.SIGTERM)
            text = answer.result(timeout=60).choices[0].message.content or ""
        process.wait(30)

    assert "is paused by an operator" in text
    assert upstream.upstream.count("/chat/completions") == 0
    log = (tmp_path / "replica-0.log").read_text()
    assert "Traceback" not in log and "graceful shutdown exceeded" not in log, log


