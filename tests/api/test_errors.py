"""Bad input and upstream garbage: each gets OpenAI's error shape, the right SDK exception, no leaked key."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from gateway.testing.server import GatewayServer
from gateway.testing.upstream import Fault, UpstreamServer
from tests.conftest import MASTER_KEY, UPSTREAM_KEY, GatewayFactory, openai_model
from tests.openapi import assert_matches

MESSAGES = [{"role": "user", "content": "hi"}]


def sdk(gateway: GatewayServer, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def post(gateway: GatewayServer, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.post(
            f"{gateway.url}/v1/chat/completions",
            content=content,
            headers={"Authorization": f"Bearer {MASTER_KEY}", **(headers or {})},
        )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert_matches("ErrorResponse", body)
    assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


def test_malformed_json_is_a_400_with_invalid_json(basic_gateway: GatewayServer) -> None:
    error = assert_error(post(basic_gateway, b'{"model": "gpt-4o", "messages": ['), 400, "invalid_json")
    assert "not valid JSON" in str(error["message"])
    with pytest.raises(openai.BadRequestError):
        sdk(basic_gateway).post("/chat/completions", content=b"{nope", cast_to=object)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": 7, "messages": MESSAGES}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "gpt-4o", "messages": MESSAGES, "stream": {"a": 1}}, "stream"),  # was forwarded: upstream streamed
    ],
)
def test_missing_fields_name_their_param(basic_gateway: GatewayServer, body: dict[str, object], param: str) -> None:
    error = assert_error(post(basic_gateway, orjson.dumps(body)), 400, "invalid_request")
    assert error["param"] == param


def test_array_body_is_refused(basic_gateway: GatewayServer) -> None:
    assert_error(post(basic_gateway, b"[1, 2]"), 400, "invalid_request")


def test_unknown_model_is_not_found(basic_gateway: GatewayServer, upstream: UpstreamServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(basic_gateway).chat.completions.create(model="gpt-9", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message
    assert upstream.upstream.received == []


@pytest.mark.parametrize("key", ["sk-wrong-key-000000000", ""])
def test_bad_key_is_401_and_the_key_is_not_echoed(basic_gateway: GatewayServer, key: str) -> None:
    with httpx.Client() as http:
        response = http.post(
            f"{basic_gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
    error = assert_error(response, 401, "invalid_api_key")
    assert "sk-wrong-key-000000000" not in response.text
    assert response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.AuthenticationError):
        sdk(basic_gateway, key or "x").chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert error["type"] == "invalid_request_error"


def test_x_api_key_header_is_accepted(basic_gateway: GatewayServer) -> None:
    with httpx.Client() as http:
        response = http.post(
            f"{basic_gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"x-api-key": MASTER_KEY},
        )
    assert response.status_code == 200


def test_oversized_body_is_413_before_anything_is_sent(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        "model_list:\n" + openai_model("gpt-4o", upstream) + "server: {max_body_bytes: 1024}\n"
    )
    big = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 2000}]})
    with pytest.raises(openai.APIStatusError) as caught:
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 2000}]
        )
    assert caught.value.status_code == 413
    # Chunked (no Content-Length) bodies are counted as they arrive.
    with httpx.Client() as http:
        response = http.post(f"{gateway.url}/v1/chat/completions", content=iter([big[:600], big[600:]]))
    assert_error(response, 413, "request_too_large")
    assert upstream.upstream.received == []


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(body=b"<html>502 Bad Gateway</html>"), 502, "upstream_bad_response"),
        (Fault(body=b'{"id": "x"}'), 502, "upstream_bad_response"),
        (Fault.error(500, "boom"), 502, "upstream_error"),
    ],
)
def test_upstream_garbage_is_a_5xx_the_sdk_raises(
    basic_gateway: GatewayServer, upstream: UpstreamServer, fault: Fault, status: int, code: str
) -> None:
    upstream.upstream.default = fault  # every retry meets it too
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(basic_gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.response.headers["x-should-retry"] == "true"


def test_upstream_key_never_reaches_the_client(basic_gateway: GatewayServer, upstream: UpstreamServer) -> None:
    upstream.upstream.script(Fault.error(401, f"Incorrect API key provided: {UPSTREAM_KEY}. Get one at ..."))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(basic_gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    text = caught.value.response.text
    assert UPSTREAM_KEY not in text and UPSTREAM_KEY[:12] not in text
    assert "HTTP 401" in caught.value.message


def test_upstream_client_error_is_the_clients_error(basic_gateway: GatewayServer, upstream: UpstreamServer) -> None:
    upstream.upstream.script(Fault.error(400, "Invalid value for 'temperature': must be <= 2.", code="invalid_value"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(basic_gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=5)
    assert "temperature" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_unknown_path_and_method_are_openai_errors(basic_gateway: GatewayServer) -> None:
    with httpx.Client() as http:
        assert_error(http.get(f"{basic_gateway.url}/v1/nothing-here"), 404, "not_found")
        response = http.get(f"{basic_gateway.url}/v1/chat/completions")
    assert response.status_code == 405
    assert_matches("ErrorResponse", response.json())
