"""PII redaction and refusal in both directions, JSON and streaming, through the real gateway."""

from __future__ import annotations

import openai
import pytest

from gateway.config.policies import ALL_PII_KINDS
from gateway.policies.pii import PiiDetector, StreamRedactor
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import ask, client, config

SECRETS = "mail bob@example.com card 4111 1111 1111 1111 ssn 123-45-6789"


def test_request_pii_is_redacted_before_it_reaches_the_model(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, "pii: {action: redact, responses: false}"))
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask(SECRETS))
    sent = upstream.upstream.received[-1].body["messages"][0]["content"]
    assert sent == "mail [REDACTED:email] card [REDACTED:card] ssn [REDACTED:national_id]"


@pytest.mark.parametrize("stream", [False, True])
def test_response_pii_is_redacted_before_it_reaches_the_client(
    upstream: UpstreamServer, gateway_factory: GatewayFactory, stream: bool
) -> None:
    # Requests pass untouched, so the fake model echoes the data back and the response rule must catch it.
    gateway = gateway_factory(config(upstream, "pii: {action: redact, requests: false}"))
    c = client(gateway)
    if stream:
        # The model streams one word per chunk: the card number's four groups arrive in four chunks.
        text = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in c.chat.completions.create(model="gpt-4o", messages=ask(SECRETS), stream=True)
            if chunk.choices
        )
    else:
        text = c.chat.completions.create(model="gpt-4o", messages=ask(SECRETS)).choices[0].message.content or ""
    assert upstream.upstream.received[-1].body["messages"][0]["content"] == SECRETS
    assert text == (
        "This is Lockgate's fake provider. You said: mail [REDACTED:email] card [REDACTED:card] "
        "ssn [REDACTED:national_id]"
    )


def test_pii_deny_refuses_the_request(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, "pii: {action: deny, kinds: [secret, iban]}"))
    with pytest.raises(openai.PermissionDeniedError, match=r"personal data or secrets \(secret\)"):
        client(gateway).chat.completions.create(
            model="gpt-4o", messages=ask("my key is sk-proj-abcdefghijklmnop1234 ok")
        )
    # Kinds not listed pass.
    client(gateway).chat.completions.create(model="gpt-4o", messages=ask("write to bob@example.com"))
    assert upstream.upstream.count("/chat/completions") == 1


def test_checksums_keep_look_alikes_out() -> None:
    detector = PiiDetector(ALL_PII_KINDS)
    text = "card 4111 1111 1111 1112, iban DE89 3704 0044 0532 0130 01, order 12345678, v1.2.3"
    assert detector.redact(text) == (text, [])
    assert detector.redact("iban DE89 3704 0044 0532 0130 00.")[0] == "iban [REDACTED:iban]."


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 500])
def test_stream_redactor_catches_matches_split_anywhere(piece: int) -> None:
    detector = PiiDetector(ALL_PII_KINDS)
    text = "write to john.doe@example.com, call +1 415-555-0132, pay 4111111111111111. " * 3
    redactor = StreamRedactor(detector)
    out = "".join(redactor.feed(text[i : i + piece]) for i in range(0, len(text), piece)) + redactor.flush()
    assert out == detector.redact(text)[0]
    assert "4111" not in out and "john" not in out and "415" not in out


@pytest.mark.parametrize(("text", "expected"), [
    ("a.b+c@x-y.co.uk and d@e.org", "[REDACTED:email] and [REDACTED:email]"),
    ("x@y@z.com", "x@[REDACTED:email]"),  # the first '@' has no domain; the second's local part is 'y'
    ("@example.com, me@host, ok@fine.io", "@example.com, me@host, [REDACTED:email]"),
    ("one@two.com@three.com", "[REDACTED:email]@three.com"),
])
def test_emails_are_found_from_their_at_sign(text: str, expected: str) -> None:
    assert PiiDetector(ALL_PII_KINDS).redact(text)[0] == expected


def test_one_scan_of_all_texts_finds_what_a_scan_of_each_finds() -> None:
    detector = PiiDetector(ALL_PII_KINDS)
    texts = ["call +1 415-555-0132", "", "4111 1111 1111 1111\nbob@example.com", "12", "3-45-6789 sk-", "none"]
    assert [list(found) for found in detector.find_each(texts)] == [detector.find(t) for t in texts]
    assert [len(found) for found in detector.find_each(texts)] == [1, 0, 2, 0, 0, 0]
    # The second time every text comes from the cache, with the same matches; new texts are scanned.
    again = [*texts, "bob@example.com again"]
    assert [list(found) for found in detector.find_each(again)] == [detector.find(t) for t in again]


def test_request_pii_in_every_message_and_part_is_redacted(
    upstream: UpstreamServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(config(upstream, "pii: {action: redact, responses: false}"))
    messages = [
        {"role": "system", "content": "Escalate to ops@example.com."},
        {"role": "user", "content": [{"type": "text", "text": "I am 123-45-6789"}, {"type": "text", "text": "hi"}]},
        {"role": "user", "content": "no data here"},
    ]
    client(gateway).chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    sent = upstream.upstream.received[-1].body["messages"]
    assert sent[0]["content"] == "Escalate to [REDACTED:email]."
    assert sent[1]["content"] == [{"type": "text", "text": "I am [REDACTED:national_id]"}, {"type": "text", "text": "hi"}]
    assert sent[2]["content"] == "no data here"
