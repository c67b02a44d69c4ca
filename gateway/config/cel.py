"""CEL conditions for policy rules: the one module that imports `cel_expr_python`.

Expressions are compiled once, when the config loads (a bad one is a config error naming its key
path), and evaluated on the hot path in microseconds. The variables an expression may use are fixed
here, so a typo in a variable name fails at load time rather than on a request:

- `request`  the request body (map): `request.max_tokens`, `request.messages`, `request.tools`
- `model`    the model group the client asked for (string)
- `key`      the caller: `key.name`, `key.team`, `key.user`
- `team`, `user`  shorthands for the caller's team and user ("" when unknown)
- `session`  `session.id` ("" when the client sent no `x-lockgate-session-id`)
- `tool`     in `tool_call` rules: `tool.name` and `tool.args` (the parsed arguments)
- `response` in `post_call` rules: `response.content`, `response.finish_reason`, `response.tool_names`
- `phase`    the phase being evaluated (string)

Building an activation converts every bound value into CEL values, which for a whole request body
costs more than evaluating the rules (~14 us against ~2.5 us a rule). So each condition says what it
reads (`Needs`), and the engine binds only that: the variables named in the source, and of the
request body only the fields selected as `request.<field>` when that is the only way it is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

_MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
VARIABLES: dict[str, Any] = {
    "request": _MAP,
    "model": cel.Type.STRING,
    "key": _MAP,
    "team": cel.Type.STRING,
    "user": cel.Type.STRING,
    "session": _MAP,
    "tool": _MAP,
    "response": _MAP,
    "phase": cel.Type.STRING,
}


@dataclass(frozen=True, slots=True)
class Needs:
    """What a set of conditions reads: variables, and the request fields (None: the whole body)."""

    variables: frozenset[str]
    request_fields: frozenset[str] | None

    @classmethod
    def of(cls, source: str) -> Needs:
        """Over-approximated from the source text: a name anywhere (even in a string) counts.

        Only the way `request` is used is looked at closely: every use must be `request.<field>`
        not followed by `(` (a macro like `request.exists(...)` ranges over the whole map);
        otherwise (`request[...]`, `size(request)`, `request.?f`, ...) the whole body is bound.
        """
        variables = frozenset(name for name in VARIABLES if re.search(rf"\b{name}\b", source))
        uses = list(_REQUEST_USE.finditer(source))
        if any(use.group(1) is None or use.group(2) for use in uses):
            return cls(variables, None)
        return cls(variables, frozenset(use.group(1) for use in uses))

    @classmethod
    def union(cls, needs: Iterable[Needs]) -> Needs:
        variables: frozenset[str] = frozenset()
        fields: frozenset[str] | None = frozenset()
        for need in needs:
            variables |= need.variables
            if fields is not None:
                fields = None if need.request_fields is None else fields | need.request_fields
        return cls(variables, fields)


# `request` as a variable (not a field of something else), and the field it selects, if any.
_REQUEST_USE = re.compile(r"(?<![\w.])request\b(?:\s*\.\s*([A-Za-z_]\w*)(\s*\()?)?")
NOTHING = Needs(frozenset(), frozenset())


class CelCompileError(ValueError):
    """An expression that does not parse, names an unknown variable, or is not a condition."""


class Condition:
    """A compiled CEL expression that yields true or false."""

    __slots__ = ("_expression", "needs", "source")

    def __init__(self, source: str, expression: Any) -> None:
        self.source = source
        self._expression = expression
        self.needs = Needs.of(source)

    def holds(self, activation: Any) -> bool | None:
        """True or false; None when evaluation failed (a missing field, a type mismatch)."""
        # An error's value() is its message (a str), so one check covers errors and non-booleans
        # (asking value.type() first cost ~1.5 us a rule).
        result = self._expression.eval(activation).value()
        return result if result is True or result is False else None


class CelEnvironment:
    """The declared variables and extensions; builds conditions and per-request activations."""

    def __init__(self) -> None:
        self._env = cel.NewEnv(variables=VARIABLES, extensions=[ext_strings.ExtStrings()])

    def compile(self, source: str) -> Condition:
        try:
            expression = self._env.compile(source)
        except RuntimeError as exc:
            # The library's message carries the position and a caret line; keep its first line.
            text = str(exc).removeprefix("INVALID_ARGUMENT: ").replace("ERROR: <input>:", "at ")
            raise CelCompileError(" ".join(text.split("\n")[0:1]).strip()) from None
        kind = expression.return_type()
        if kind != cel.Type.BOOL and kind != cel.Type.DYN:
            raise CelCompileError(f"the expression must be a condition (true/false), not {kind.name()}")
        return Condition(source, expression)

    def activation(self, data: Mapping[str, Any]) -> Any:
        """Bindings shared by every rule evaluated for one request and phase."""
        return self._env.Activation(data)
