"""CEL activations bind only what a phase's conditions read: rules still see everything they use."""

from __future__ import annotations

import openai
import pytest

from gateway.config.cel import Needs
from gateway.testing.upstream import UpstreamServer
from tests.conftest import GatewayFactory
from tests.policies.helpers import INTERN_KEY, ask, client, config


@pytest.mark.parametrize(("source", "variables", "fields"), [
    ("team == 'interns' && request.temperature > 1.0", {"team", "request"}, {"temperature"}),
    ("size(request.messages) > 200", {"request"}, {"messages"}),
    ("has(request . seed) && tool.args.request == 1", {"request", "tool"}, {"seed"}),
    ("response.content.contains('x')", {"response"}, set()),
    # The whole body: the map itself is used, not one of its fields.
    ("size(request) > 3", {"request"}, None),
    ("request.exists(k, k == 'seed')", {"request"}, None),
    ("request['seed'] == 1", {"request"}, None),
    ("request.?seed.orValue(0) == 1", {"request"}, None),
])
def test_what_a_condition_reads(source: str, variables: set[str], fields: set[str] | None) -> None:
    needs = Needs.of(source)
    assert needs.variables == variables
    assert needs.request_fields == (None if fields is None else frozenset(fields))


def test_union_of_a_field_reader_and_a_whole_body_reader_binds_the_whole_body() -> None:
    union = Needs.union([Needs.of("request.seed == 1"), Needs.of("size(request) > 3"), Needs.of("user == 'x'")])
    assert union.variables == {"request", "user"} and union.request_fields is None


RULES = """
rules:
  - {name: no-seeds, when: "request.exists(k, k == 'seed')", action: deny, message: no seeds}
  - {name: short-bodies, when: "size(request) > 5", action: deny, message: too many fields}
  - {name: no-mallory, when: "user == 'mallory' || session.id == 'blocked'", action: deny, message: not you}
  - {name: intern-mini, when: "model == 'gpt-4o-mini' && key.team == 'interns' && request.temperature > 0.5",
     action: deny, message: cool it}
  - {name: seven, phase: post_call, when: "response.content.contains('fake') && request.max_tokens == 7",
     action: deny, message: seven is unlucky}
"""


def test_rules_see_every_variable_and_field_they_read(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(config(upstream, RULES))
    c = client(gateway)
    c.chat.completions.create(model="gpt-4o", messages=ask("hi"), temperature=0.9)
    cases = [
        ({"seed": 1}, "no seeds"),
        ({"temperature": 0.2, "top_p": 0.5, "n": 1, "stop": "x"}, "too many fields"),
        ({"user": "mallory"}, "not you"),
        ({"max_tokens": 7}, "seven is unlucky"),
    ]
    for extra, message in cases:
        with pytest.raises(openai.PermissionDeniedError, match=message):
            c.chat.completions.create(model="gpt-4o", messages=ask("hi"), **extra)  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError, match="not you"):
        client(gateway, **{"x-lockgate-session-id": "blocked"}).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    with pytest.raises(openai.PermissionDeniedError, match="cool it"):
        client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), temperature=0.9)
    client(gateway, INTERN_KEY).chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), temperature=0.2)
    assert upstream.upstream.count("/chat/completions") == 3  # the post_call denial came after the model
