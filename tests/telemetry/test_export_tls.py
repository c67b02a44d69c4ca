"""Export to a collector behind TLS with a private CA and client certificates (mTLS), as enterprises run it.

A real gateway process, an OTLP/HTTP receiver on 127.0.0.1 serving HTTPS that requires a client
certificate, and a throwaway PKI made with the `openssl` command. Before, the gateway's own span
writer ignored the standard certificate variables (the SDK's metric exporter honoured them): metrics
arrived, every span failed certificate verification.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.testing.otlp_grpc_receiver import grpc_trace_service
from gateway.testing.otlp_receiver import Receiver, ReceiverServer
from gateway.testing.tcp_proxy import ConnectProxy
from gateway.testing.upstream import UpstreamServer
from tests.conftest import openai_model
from tests.telemetry.test_export_e2e import SERVER, free_port, start_gateway, stop_gateway, traced_chat

# The throwaway PKI is made with the openssl command, on every Linux machine and this one's CI.
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    folder = tmp_path / "pki"
    folder.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=lockgate-test-ca", cwd=folder)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=lockgate-test-{name}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
    return folder


@pytest.fixture
def mtls_receiver(pki: Path) -> Iterator[ReceiverServer]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    tls.load_cert_chain(pki / "server.pem", pki / "server.key")
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    server = ReceiverServer(tls=tls).start()
    yield server
    server.stop()


def mtls_env(pki: Path, receiver: ReceiverServer) -> dict[str, str]:
    """The standard variables for export to `receiver` with the test CA and client certificate."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki / "ca.pem"),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(pki / "client.pem"),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pki / "client.key"),
    }


def chat_and_see_its_spans(
    tmp_path: Path, upstream: UpstreamServer, receiver: Receiver, environ: dict[str, str],
    telemetry: str = "{metrics: false}", metric: str | None = None,
) -> None:
    """A gateway process with `environ` serves one chat; its SERVER span (and `metric`, when named)
    reaches `receiver` before the gateway stops."""
    config = tmp_path / "lockgate.yaml"
    config.write_text("model_list:\n" + openai_model("gpt-4o", upstream) + f"telemetry: {telemetry}\n")
    port = free_port()
    process = start_gateway(config, port, environ)
    try:
        _, trace_id = traced_chat(port)
        receiver.wait_for(lambda r: any(s.kind == SERVER and s.trace_id == trace_id for s in r.spans))
        if metric is not None:
            receiver.wait_for(lambda r: metric in r.metric_names)
    finally:
        stop_gateway(process)


def test_spans_and_metrics_reach_a_collector_that_requires_client_certificates(
    tmp_path: Path, upstream: UpstreamServer, pki: Path, mtls_receiver: ReceiverServer
) -> None:
    chat_and_see_its_spans(tmp_path, upstream, mtls_receiver.receiver, mtls_env(pki, mtls_receiver),
                           telemetry="{metrics_export_interval: 0.5}", metric="gen_ai.client.operation.duration")


def test_the_config_file_names_tls_files_that_must_exist_and_a_client_key_with_its_certificate(pki: Path) -> None:
    base = "model_list:\n  - model_name: m\n    litellm_params: {model: fake/m}\n"
    good = parse_config(base + f"telemetry: {{otlp: {{endpoint: 'https://collector:4318', certificate: '{pki}/ca.pem',"
                               f" client_certificate: '{pki}/client.pem', client_key: '{pki}/client.key'}}}}\n")
    assert good.telemetry.otlp_tls == (f"{pki}/ca.pem", f"{pki}/client.pem", f"{pki}/client.key")
    with pytest.raises(ConfigError) as missing:
        parse_config(base + f"telemetry: {{otlp: {{certificate: '{pki}/nowhere.pem'}}}}\n")
    assert any(p.startswith("telemetry.otlp.certificate: ") and "no such file" in p for p in missing.value.problems)
    with pytest.raises(ConfigError) as alone:
        parse_config(base + f"telemetry: {{otlp: {{client_certificate: '{pki}/client.pem'}}}}\n")
    assert any("client_certificate and client_key go together" in p for p in alone.value.problems), alone.value.problems


def test_spans_reach_a_grpc_collector_with_client_certificates_named_in_the_config_file(
    tmp_path: Path, upstream: UpstreamServer, pki: Path
) -> None:
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(), require_client_auth=True,
    )
    with grpc_trace_service(credentials) as (receiver, grpc_port):
        config = tmp_path / "lockgate.yaml"
        config.write_text(
            "model_list:\n" + openai_model("gpt-4o", upstream)
            + f"telemetry: {{metrics: false, otlp: {{endpoint: 'https://127.0.0.1:{grpc_port}', protocol: grpc,"
            + f" certificate: '{pki}/ca.pem', client_certificate: '{pki}/client.pem', client_key: '{pki}/client.key'}}}}\n"
        )
        port = free_port()
        process = start_gateway(config, port, {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
        try:
            _, trace_id = traced_chat(port)
            receiver.wait_for(lambda r: any(s.kind == SERVER and s.trace_id == trace_id for s in r.spans))
        finally:
            stop_gateway(process)


def test_spans_go_through_the_egress_proxy_the_environment_names(
    tmp_path: Path, upstream: UpstreamServer, pki: Path, mtls_receiver: ReceiverServer
) -> None:
    # Where egress must go through a proxy (a SaaS collector from a corporate network), the SDK's
    # metric exporter followed HTTPS_PROXY and the span writer went direct.
    proxy = ConnectProxy().start()
    try:
        chat_and_see_its_spans(tmp_path, upstream, mtls_receiver.receiver, {
            **mtls_env(pki, mtls_receiver),
            "HTTPS_PROXY": f"http://egress:s3cret@127.0.0.1:{proxy.port}", "NO_PROXY": "", "no_proxy": "",
        })
    finally:
        proxy.stop()
    assert proxy.tunnels[0] == ("CONNECT", f"127.0.0.1:{mtls_receiver.port}",
                                "Basic " + base64.b64encode(b"egress:s3cret").decode())


def test_spans_to_a_plain_http_collector_go_to_the_proxy_as_whole_urls(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    # Not a CONNECT tunnel: many proxies tunnel only to port 443 (requests, for the metrics, does the same).
    proxy = ConnectProxy().start()
    receiver = ReceiverServer().start()
    try:
        chat_and_see_its_spans(tmp_path, upstream, receiver.receiver, {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "HTTP_PROXY": f"http://egress:s3cret@127.0.0.1:{proxy.port}", "NO_PROXY": "", "no_proxy": "",
        })
    finally:
        proxy.stop()
        receiver.stop()
    # (The chat's own upstream call goes through the proxy too, as plain HTTP.)
    assert ("POST", f"127.0.0.1:{receiver.port}", "Basic " + base64.b64encode(b"egress:s3cret").decode()) \
        in proxy.tunnels


def test_an_agents_spans_forwarded_by_the_gateway_reach_the_collector_with_the_same_certificates(
    tmp_path: Path, upstream: UpstreamServer, pki: Path, mtls_receiver: ReceiverServer
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text("model_list:\n" + openai_model("gpt-4o", upstream) + "telemetry: {metrics: false}\n")
    port = free_port()
    process = start_gateway(config, port, mtls_env(pki, mtls_receiver))
    agent_span = Span(trace_id=bytes.fromhex("ab" * 16), span_id=bytes.fromhex("cd" * 8), name="tool search",
                      start_time_unix_nano=1, end_time_unix_nano=2)
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[agent_span])])])
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body.SerializeToString(),
                            headers={"content-type": "application/x-protobuf", "authorization": "Bearer unused"})
        assert answer.status_code == 200, answer.text
        mtls_receiver.receiver.wait_for(lambda r: any(s.name == "tool search" for s in r.spans))
    finally:
        stop_gateway(process)
