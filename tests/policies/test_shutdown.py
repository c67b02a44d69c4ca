"""A gateway told to stop (a deploy, a scale-down) while requests wait for a reviewer.

A real `lockgate serve` process and SIGTERM, as an orchestrator sends it. The held clients must get
the ordinary "awaiting approval" answer at once, not a 500 or a broken stream when the server's
grace period runs out; the decision is then delivered by whichever gateway serves the retry.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import openai

from gateway.testing.upstream import UpstreamServer
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url
from tests.replicas import gateway_replicas


@contextmanager
def stopped_gateway(upstream: UpstreamServer, tmp_path: Path) -> Iterator[tuple[Admin, subprocess.Popen[bytes]]]:
    """A `lockgate serve` process whose holds (and paused sessions) may wait ten minutes, for a test to
    stop with SIGTERM; its log is checked afterwards: no traceback, the grace period never ran out."""
    config = tmp_path / "lockgate.yaml"
    config.write_text(hold_config(upstream, sqlite_url(tmp_path), hold_window=600))
    with gateway_replicas(config, 1) as [(url, process)]:
        yield Admin(SimpleNamespace(url=url)), process  # type: ignore[arg-type]
        process.wait(30)
    log = (tmp_path / "replica-0.log").read_text()
    assert "Traceback" not in log and "graceful shutdown exceeded" not in log, log


def agent(admin: Admin, session: str) -> openai.OpenAI:
    return client(SimpleNamespace(url=str(admin.http.base_url).rstrip("/")),  # type: ignore[arg-type]
                  **{"x-lockgate-session-id": session}).with_options(timeout=120)


def test_requests_held_for_a_reviewer_answer_at_once_when_the_gateway_is_stopped(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    with stopped_gateway(upstream, tmp_path) as (admin, process):
        deploying = agent(admin, "s-deploy")

        def ask_json() -> str:
            answer = deploying.chat.completions.create(model="gpt-4o", messages=ask("pay invoice 1"), tools=[WIRE])
            return answer.choices[0].message.content or ""

        def ask_streaming() -> str:
            chunks = deploying.chat.completions.create(
                model="gpt-4o", messages=ask("pay invoice 2"), tools=[WIRE], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        with ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(ask_json), pool.submit(ask_streaming)]
            held = admin.wait_for_pending(2)
            process.send_signal(signal.SIGTERM)
            texts = [answer.result(timeout=60) for answer in answers]

    # Each client heard that its action awaits approval, with the id a reviewer sees.
    ids = {hold["id"] for hold in held}
    for text in texts:
        assert "is awaiting human approval" in text
        assert any(f"(approval id {approval_id})" in text for approval_id in ids)


def test_a_paused_session_waiting_to_be_resumed_answers_at_once_when_the_gateway_is_stopped(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    with stopped_gateway(upstream, tmp_path) as (admin, process):
        admin.http.post("/admin/pauses/session/s-paused/pause", json={"by": "olga"}).raise_for_status()
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(agent(admin, "s-paused").chat.completions.create, model="gpt-4o",
                                 messages=ask("hello"))
            admin.wait_for_waiting("session:s-paused")
            process.send_signal(signal.SIGTERM)
            text = answer.result(timeout=60).choices[0].message.content or ""

    assert "is paused by an operator" in text
    assert upstream.upstream.count("/chat/completions") == 0
