"""Upstream calls follow the egress proxy the environment names, as the official SDKs and litellm do.

Where a corporate network lets traffic out only through a proxy, the pass-through provider went
direct and every OpenAI-compatible call failed to connect (the breakers opened), while deployments
routed through litellm got through. A real gateway process; the proxy on loopback forwards plain
HTTP requests (and tunnels HTTPS), recording each one.
"""

from __future__ import annotations

import base64
from pathlib import Path

import openai

from gateway.testing.tcp_proxy import ConnectProxy
from gateway.testing.upstream import UpstreamServer
from tests.conftest import openai_model
from tests.replicas import gateway_replicas


def test_json_and_streamed_calls_reach_the_upstream_through_the_proxy(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    proxy = ConnectProxy().start()
    config = tmp_path / "lockgate.yaml"
    config.write_text("model_list:\n" + openai_model("gpt-4o", upstream))
    environ = {"HTTP_PROXY": f"http://egress:s3cret@127.0.0.1:{proxy.port}", "NO_PROXY": "", "no_proxy": ""}
    try:
        with gateway_replicas(config, 1, environ=environ) as [(url, _)]:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            chunks = list(client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    finally:
        proxy.stop()
    assert reply.choices[0].finish_reason == "stop" and chunks[-1].choices[0].finish_reason == "stop"
    credentials = "Basic " + base64.b64encode(b"egress:s3cret").decode()
    assert proxy.tunnels == [("POST", f"127.0.0.1:{upstream.port}", credentials)] * 2
    assert upstream.upstream.count("/chat/completions") == 2
