"""The reviewers' dashboard (`/ui`) in a real browser (headless Chromium, driven by Playwright) against
a real gateway: signing in, a held call approved, edited and denied by clicks, pauses, and model-written
markup shown as text."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.policies.helpers import ask, client
from tests.policies.oversight import WIRE, Admin, hold_config, sqlite_url

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extras install it
    sync_playwright = None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or sync_playwright is None:
        missing = "chromium (apt-get install chromium)" if CHROMIUM is None else "playwright (pip install -e '.[test]')"
        if os.environ.get("CI"):  # .ci/run installs both: there the dashboard is always tested in a browser
            pytest.fail(f"the dashboard tests need {missing}")
        pytest.skip(f"the dashboard tests need {missing}")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def held(upstream: UpstreamServer, gateway_factory: GatewayFactory, tmp_path: Path) -> GatewayServer:
    return gateway_factory(hold_config(upstream, sqlite_url(tmp_path), hold_window=30))


@pytest.fixture
def page(browser: Any, held: GatewayServer) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    opened.goto(f"{held.url}/ui")
    opened.fill("#key", MASTER_KEY)
    opened.click("#sign-in button")
    opened.wait_for_selector("#board", state="visible")
    opened.fill("#reviewer", "alice")
    opened.dispatch_event("#reviewer", "change")
    yield opened
    context.close()


def pay(gateway: GatewayServer, pool: ThreadPoolExecutor, session: str = "ses-ui") -> Future[Any]:
    held_client = client(gateway, **{"x-lockgate-session-id": session})
    return pool.submit(held_client.chat.completions.create, model="gpt-4o", messages=ask("pay"), tools=[WIRE])


def test_the_page_keeps_to_itself(held: GatewayServer) -> None:
    page = httpx.get(f"{held.url}/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(f"{held.url}/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{held.url}/ui/nothing.js").status_code == 404


def test_a_wrong_key_is_refused_and_the_right_one_shows_the_board(browser: Any, held: GatewayServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{held.url}/ui")
    page.fill("#key", "sk-not-the-master-0123456789")
    page.click("#sign-in button")
    page.wait_for_selector("#status:has-text('not this gateway')")  # (not wait_for_function: the CSP forbids eval)
    assert page.is_visible("#sign-in") and not page.is_visible("#board")
    page.fill("#key", MASTER_KEY)
    page.click("#sign-in button")
    page.wait_for_selector("#board", state="visible")
    assert page.text_content("#pending") == "Nothing is waiting."
    context.close()


def test_a_held_call_is_approved_with_a_click(page: Any, held: GatewayServer, upstream: UpstreamServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pay(held, pool)
        page.wait_for_selector(".call .approve")
        assert json.loads(page.text_content(".call .arguments")) == {"account": "example", "amount": 1}
        assert "money leaves the company" in page.text_content(".call .rule")
        page.fill(".call .reason", "invoice checked")
        page.click(".call .approve")
        reply = waiting.result(10)
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "wire_money"
    page.wait_for_selector(".approval", state="detached")
    row = page.text_content("#decided tbody tr")
    assert "approve" in row and "alice" in row and "invoice checked" in row
    assert upstream.upstream.count("/chat/completions") == 1


def test_an_edit_is_checked_then_delivered(page: Any, held: GatewayServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pay(held, pool)
        page.wait_for_selector(".call .edit-open")
        page.click(".call .edit-open")
        page.fill(".call textarea.edit", '{"account": "checked"}')
        page.click(".call .save")
        page.wait_for_selector(".call .error:has-text('schema')")
        assert not waiting.done()  # a refused edit decides nothing
        page.fill(".call textarea.edit", '{"account": "checked", "amount": 2}')
        page.click(".call .save")
        reply = waiting.result(10)
    [call] = reply.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"account": "checked", "amount": 2}


def test_a_denial_reaches_the_agent_as_text(page: Any, held: GatewayServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pay(held, pool)
        page.wait_for_selector(".call .deny")
        page.fill(".call .reason", "not this week")
        page.click(".call .deny")
        reply = waiting.result(10)
    assert not reply.choices[0].message.tool_calls
    assert "not this week" in (reply.choices[0].message.content or "")


def test_markup_a_model_wrote_is_shown_as_text(page: Any, held: GatewayServer, upstream: UpstreamServer) -> None:
    markup = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    upstream.upstream.script(Fault(body=json.dumps({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o-upstream",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                     "tool_calls": [{"id": "call_x", "type": "function", "function": {
                         "name": "wire_money", "arguments": json.dumps({"account": markup, "amount": 1})}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()))
    with ThreadPoolExecutor(1) as pool:
        waiting = pay(held, pool)
        page.wait_for_selector(".call .arguments")
        assert json.loads(page.text_content(".call .arguments"))["account"] == markup
        assert page.query_selector(".approval img") is None and page.query_selector(".approval b") is None
        assert page.evaluate("window.pwned") is None
        Admin(held).decide(Admin(held).pending()[0]["id"], "deny")
        waiting.result(10)


def test_a_session_is_paused_and_resumed(page: Any, held: GatewayServer) -> None:
    page.fill("#pause-name", "ses-ui")
    page.fill("#pause-reason", "looks stuck")
    page.click("#pause-form button[value=pause]")
    page.wait_for_selector("#pauses tr[data-target='session:ses-ui']")
    assert "looks stuck" in page.text_content("#pauses tr[data-target='session:ses-ui']")
    states = httpx.get(f"{held.url}/admin/pauses", headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()["data"]
    assert [(s["target"], s["state"], s["by"]) for s in states] == [("session:ses-ui", "paused", "alice")]
    page.click("#pauses tr[data-target='session:ses-ui'] .resume")
    page.wait_for_selector("#pauses tr[data-target='session:ses-ui']", state="detached")


def test_an_open_breaker_shows_in_the_deployments_table(
    browser: Any, upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        "model_list:\n"
        f"  - model_name: gpt-4o\n    litellm_params: {{model: openai/broken, api_base: '{upstream.url}', api_key: x}}\n"
        "    model_info: {id: broken}\n"
        f"general_settings: {{master_key: {MASTER_KEY}}}\n"
        "router_settings: {num_retries: 0}\nbreakers: {failure_threshold: 1, reset_timeout: 60}\n"
    )
    upstream.upstream.model_default["broken"] = Fault.error(500, "down")
    with pytest.raises(openai.InternalServerError):  # its one failure opens the breaker
        client(gateway).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/ui")
    page.fill("#key", MASTER_KEY)
    page.click("#sign-in button")
    row = page.wait_for_selector("#deployments tr[data-deployment='broken']")
    assert row.get_attribute("class") == "open"
    assert page.text_content("#deployments tr[data-deployment='broken'] .breaker") == "open"
    context.close()
