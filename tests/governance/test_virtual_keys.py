"""Virtual keys through the admin API, used by the official openai SDK against a real gateway."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.testing.upstream import UpstreamServer
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.governance.helpers import Admin, governed_yaml

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lockgate.db'}"


def test_a_created_key_works_until_revoked(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, store_url: str
) -> None:
    gateway = gateway_factory(governed_yaml(upstream, store_url))
    admin = Admin(gateway.url)
    created = admin.create_key(name="ci-bot", team="eng", user="alice", metadata={"ticket": "OPS-1"})
    secret = created["key"]
    assert secret.startswith("sk-lg-") and created["status"] == "active" and created["team"] == "eng"

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content

    # The secret is never shown again, nor its hash.
    listed = admin.http.get("/admin/keys").json()["data"]
    assert [k["name"] for k in listed] == ["ci-bot"]
    shown = admin.http.get(f"/admin/keys/{created['id']}").json()
    assert secret not in str(listed) + str(shown) and "hash" not in shown
    assert shown["metadata"] == {"ticket": "OPS-1"}

    revoked = admin.http.post(f"/admin/keys/{created['id']}/revoke", json={"reason": "leaked"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert denied.value.code == "invalid_api_key" and "revoked" in denied.value.message
    assert admin.http.get("/admin/keys").json()["data"] == []
    assert len(admin.http.get("/admin/keys?include_revoked=true").json()["data"]) == 1
    admin.close()


def test_a_revocation_reaches_another_replica_within_seconds(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, store_url: str
) -> None:
    first = gateway_factory(governed_yaml(upstream, store_url))
    second = gateway_factory(governed_yaml(upstream, store_url))
    admin = Admin(first.url)
    created = admin.create_key(name="shared")
    other = openai.OpenAI(base_url=f"{second.url}/v1", api_key=created["key"], max_retries=0)
    other.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]  # now cached there

    admin.http.post(f"/admin/keys/{created['id']}/revoke", json={})
    revoked_at = time.monotonic()
    # Poll the other replica (bounded) until it refuses the key: its cache TTL is 5 seconds.
    while True:
        try:
            other.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 10, "the revocation never reached the other replica"
    admin.close()


def test_unknown_expired_and_wrong_model_keys_are_refused(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, store_url: str
) -> None:
    gateway = gateway_factory(governed_yaml(upstream, store_url))
    admin = Admin(gateway.url)
    unknown = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-lg-not-a-real-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        unknown.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert denied.value.code == "invalid_api_key" and "sk-...0000" in denied.value.message

    expired = admin.create_key(name="old", expires_at=time.time() - 1)
    assert expired["status"] == "expired"
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=expired["key"], max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert "expired" in denied.value.message

    limited = admin.create_key(name="mini-only", models=["gpt-4o-mini"])
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=limited["key"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]

    # Updating the key takes effect at once on the replica that made the change.
    patched = admin.http.patch(f"/admin/keys/{limited['id']}", json={"models": ["gpt-4o", "gpt-4o-mini"]})
    assert patched.status_code == 200, patched.text
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    admin.close()


def test_the_admin_api_needs_the_master_key_and_valid_input(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, store_url: str
) -> None:
    gateway = gateway_factory(governed_yaml(upstream, store_url))
    admin = Admin(gateway.url)
    key = admin.create_key(name="user-key")["key"]
    for token in (None, key, "sk-wrong-0000000000"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        reply = httpx.get(f"{gateway.url}/admin/keys", headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"

    bad = admin.http.post("/admin/keys", json={"name": "x", "rpm": -1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    unknown_model = admin.http.post("/admin/keys", json={"name": "x", "models": ["nope"]})
    assert unknown_model.status_code == 400 and unknown_model.json()["error"]["param"] == "models[0]"
    typo = admin.http.post("/admin/keys", json={"name": "x", "buget": []})
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "buget"
    missing = admin.http.get("/admin/keys/0123456789abcdef")
    assert missing.status_code == 404
    admin.close()


def test_static_keys_keep_working_and_a_dead_store_is_a_clear_503(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    extra = "keys: [{name: static, key: sk-static-key-123456}]\n"
    gateway = gateway_factory(governed_yaml(upstream, "redis://127.0.0.1:1/0", extra))
    static = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-static-key-123456", max_retries=0)
    static.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]

    virtual = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-lg-some-virtual-key-0000", max_retries=0)
    with pytest.raises(openai.InternalServerError) as unavailable:
        virtual.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert unavailable.value.status_code == 503
    assert "key store is unreachable" in unavailable.value.message
    admin = httpx.post(
        f"{gateway.url}/admin/keys", json={"name": "x"}, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert admin.status_code == 503 and "unreachable" in admin.json()["error"]["message"]
    # Every route that needs the store says so the same way: the approvals and session APIs too.
    for path in ("/admin/approvals", "/v1/lockgate/sessions/s-1/state"):
        down = httpx.get(f"{gateway.url}{path}", headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert down.status_code == 503 and "unreachable" in down.json()["error"]["message"], (path, down.text)
        assert down.headers["retry-after"] and down.headers["x-request-id"]
