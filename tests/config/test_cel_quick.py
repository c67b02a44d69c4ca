"""The quick evaluator answers only what CEL would answer: checked against the real library."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.config.cel import VARIABLES, CelEnvironment
from gateway.config.cel_quick import compile_quick

NAMES = frozenset(VARIABLES)
EXPRESSIONS = [
    "team == 'interns' && request.temperature > 1.0",
    "size(request.messages) > 2",
    "response.content.contains('SECRET')",
    "request.max_tokens >= 100 || user == 'ivy'",
    "!(request.stream == true) && model != 'gpt-4o'",
    "!request.stream",
    "request.temperature < 1 && request.temperature > -0.5",
    "request.n == 1.0 || request.n != 2",
    "key.name.startsWith('sk') || key.team.endsWith('ops')",
    "size(request.user) <= 3 && request.user < 'm'",
    "request.seed == request.n",
    "request.user > request.model",
    "(team == 'a' || team == 'b') && session.id == ''",
    "tool.args.amount > 1000 && tool.name == 'wire_money'",
    "size(request) > 3",
    "request.big == 9007199254740993.0",
    "request.seed >= 1e3",
]
OUTSIDE = [
    "has(request.seed)",
    "request.messages.exists(m, m.role == 'tool')",
    "'x' in request.tags",
    "request.n + 1 > 2",
    "request.user == 'a\\'b'",
    "request.seed > 007",
    "request.n > 1u",
    "request.n > 1 ? true : false",
    "request['n'] == 1",
    "request.tags.size() > 1",
]
# What orjson can hand over: ints within [-2^63, 2^64), the rest as floats.
VALUES: list[Any] = [
    0, 1, 2, -1, 1000, 1001, 10**6, 2**53 + 1, 2**63, 2**64 - 1, -(2**63), 0.0, 1.0, 1.5, -0.25, 1e3,
    True, False, None, "", "a", "ivy", "zed", "é", "SECRET plans", "sk-x", "ops", [], [1, 2, 3],
    {}, {"role": "tool"}, {"amount": 5000},
]


def random_data(rng: random.Random) -> dict[str, Any]:
    def pick() -> Any:
        return rng.choice(VALUES)

    fields = ["temperature", "messages", "max_tokens", "stream", "n", "user", "seed", "model", "big", "tags"]
    request = {f: pick() for f in fields if rng.random() < 0.7}
    data: dict[str, Any] = {
        "request": request, "model": rng.choice(["gpt-4o", "gpt-4o-mini", pick()]),
        "team": rng.choice(["", "a", "b", "interns", pick()]), "user": rng.choice(["", "ivy", pick()]),
        "key": {"name": rng.choice(["sk-one", "ops", pick()]), "team": rng.choice(["", "ops", pick()])},
        "session": {"id": rng.choice(["", "s1", pick()])},
        "tool": rng.choice([{}, {"name": "wire_money", "args": {"amount": pick()}}]),
        "response": rng.choice([{}, {"content": pick()}]),
        "phase": "pre_call",
    }
    # The activation declares some variables as strings: keep those strings, as the engine does.
    for name in ("model", "team", "user"):
        if not isinstance(data[name], str):
            data[name] = str(data[name])
    return data


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_quick_answers_agree_with_cel(source: str) -> None:
    env = CelEnvironment()
    condition = env.compile(source)
    quick = compile_quick(source, NAMES)
    assert quick is not None, "inside the subset"
    rng = random.Random(source)
    answered = 0
    for _ in range(1500):
        data = random_data(rng)
        answer = quick(data)
        if answer is not None:
            answered += 1
            assert answer == condition.holds(env.activation(data)), (source, data)
    assert answered > 20  # it does answer, not only defer


@pytest.mark.parametrize("source", OUTSIDE)
def test_conditions_outside_the_subset_are_left_to_cel(source: str) -> None:
    assert compile_quick(source, NAMES) is None


def test_a_missing_field_or_a_refused_type_is_left_to_cel() -> None:
    quick = compile_quick("request.temperature > 1.0", NAMES)
    assert quick is not None
    assert quick({"request": {}}) is None
    assert quick({"request": {"temperature": "hot"}}) is None
    assert quick({"request": {"temperature": 1.5}}) is True
    short = compile_quick("team == 'interns' && request.temperature > 1.0", NAMES)
    assert short is not None and short({"team": "", "request": {}}) is False  # as CEL: false && error
