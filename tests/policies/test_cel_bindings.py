"""CEL activations bind only what a phase's conditions read: rules still see everything they use."""

from __future__ import annotations

import openai
import pytest

from gateway.config.cel import CelEnvironment, Needs
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


@pytest.mark.parametrize(("source", "sized"), [
    ("size(request.messages) > 200", {"messages"}),
    ("request.messages.size() > 2 && size( request . tools ) == 1", {"messages", "tools"}),
    # Any other use of the field, anywhere, binds it whole.
    ("size(request.messages) > 2 && request.messages[0].role == 'system'", set()),
    ("size(request.messages[0].content) > 2", set()),
    ("size(request.messages) > 2 || has(request.messages)", set()),
    ("'size(request.messages)' == request.messages[0].content", set()),
    ("xsize(request.messages)", set()),
])
def test_fields_read_only_through_their_size(source: str, sized: set[str]) -> None:
    assert Needs.of(source).sized_fields == sized


def test_a_field_sized_in_one_condition_and_read_in_another_is_bound_whole() -> None:
    union = Needs.union([Needs.of("size(request.messages) > 2"), Needs.of("request.messages[0].role == 'x'"),
                         Needs.of("size(request.tools) > 1")])
    assert union.request_fields == {"messages", "tools"} and union.sized_fields == {"tools"}
    assert union.stand_in("tools", [{"type": "function"}] * 3) == "   "  # size 3, nothing to convert
    messages = [{"role": "user"}]
    assert union.stand_in("messages", messages) is messages


def test_one_conditions_error_does_not_change_the_others_results() -> None:
    env = CelEnvironment()
    conditions = [env.compile("request.nope > 1"), env.compile("size(request.messages) > 1"), env.compile("request.n")]
    group = env.group(conditions)
    failing = {"request": {"messages": [1, 2], "n": 3}}
    activation = env.activation(failing)
    assert group.results(failing) == [None, True, None] == [c.holds(activation) for c in conditions]
    fine = {"request": {"messages": [1], "nope": 2, "n": True}}
    assert group.results(fine) == [True, False, True] == [c.holds(env.activation(fine)) for c in conditions]
    # One with a `//` comment at its end is still one condition; a group of one is that condition.
    commented = env.group([env.compile("true // a comment"), env.compile("false")])
    assert commented.results(failing) == [True, False]
    assert env.group(conditions[:1]).results(failing) == [None]


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


SIZES = """
rules:
  - {name: broken, when: "request.no_such_field > 1", action: deny, message: never}
  - {name: three-at-most, when: "size(request.messages) > 3 && request.messages.size() < 100", action: deny,
     message: too many messages}
  - {name: one-tool, when: "size(request.tools) == 1", action: deny, message: not just one tool}
"""


def test_rules_over_sizes_see_the_sizes(upstream: UpstreamServer, gateway_factory: GatewayFactory) -> None:
    # Only the sizes of `messages` and `tools` are read: stand-ins of their size are bound, and the
    # rule that fails on every request ('broken') changes nobody else's verdict.
    gateway = gateway_factory(config(upstream, SIZES))
    c = client(gateway)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    c.chat.completions.create(model="gpt-4o", messages=ask("hi") * 3)
    c.chat.completions.create(model="gpt-4o", messages=ask("hi"), tools=[tool, tool])  # type: ignore[list-item]
    with pytest.raises(openai.PermissionDeniedError, match="too many messages"):
        c.chat.completions.create(model="gpt-4o", messages=ask("hi") * 4)
    with pytest.raises(openai.PermissionDeniedError, match="not just one tool"):
        c.chat.completions.create(model="gpt-4o", messages=ask("hi"), tools=[tool])  # type: ignore[list-item]
    assert upstream.upstream.count("/chat/completions") == 2
