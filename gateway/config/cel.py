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

Converting the bound values into CEL values (done by the library on a variable's first use, deeply)
costs more than evaluating the rules: ~14 us for a short request body, ~40 us for an agent's
conversation of 20 messages, against ~2 us a rule. So each condition says what it reads (`Needs`),
and the engine binds only that: the variables named in the source, of the request body only the
fields selected as `request.<field>` when that is the only way it is used, and of a field used only
through its size (`size(request.messages)`), a stand-in of the same size instead of its contents:
the condition is still evaluated by CEL, over a value whose size is all it reads.

A phase's conditions are evaluated together, as one CEL list expression, with one call into the
library (`ConditionGroup`); when that list fails (one condition's runtime error fails the list),
each condition is evaluated alone, so one rule's error never changes another rule's verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
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
    """What a set of conditions reads: variables, and the request fields (None: the whole body).

    `sized_fields` are the request fields read only through their size: a stand-in is bound.
    """

    variables: frozenset[str]
    request_fields: frozenset[str] | None
    sized_fields: frozenset[str] = frozenset()

    @classmethod
    def of(cls, source: str) -> Needs:
        """Over-approximated from the source text: a name anywhere (even in a string) counts.

        Only the way `request` is used is looked at closely: every use must be `request.<field>`
        not followed by `(` (a macro like `request.exists(...)` ranges over the whole map);
        otherwise (`request[...]`, `size(request)`, `request.?f`, ...) the whole body is bound.
        A field is sized when every use of it is `size(request.<field>)` or `request.<field>.size()`;
        any other use anywhere (even inside a string) binds it whole.
        """
        variables = frozenset(name for name in VARIABLES if re.search(rf"\b{name}\b", source))
        uses = list(_REQUEST_USE.finditer(source))
        if any(use.group(1) is None or use.group(2) for use in uses):
            return cls(variables, None)
        fields = frozenset(use.group(1) for use in uses)
        whole = {use.group(1) for use in uses if not _sized(source, use)}
        return cls(variables, fields, fields - whole)

    @classmethod
    def union(cls, needs: Iterable[Needs]) -> Needs:
        variables: frozenset[str] = frozenset()
        fields: frozenset[str] | None = frozenset()
        whole: set[str] = set()
        for need in needs:
            variables |= need.variables
            if fields is not None:
                fields = None if need.request_fields is None else fields | need.request_fields
            if need.request_fields is not None:
                whole |= need.request_fields - need.sized_fields
        if fields is None:
            return cls(variables, None)
        return cls(variables, fields, fields - whole)

    def stand_in(self, field: str, value: Any) -> Any:
        """What to bind for a request field: the value, or for a sized one a value of its size.

        The stand-in for a list or a map is a string of as many characters: `size()` gives the same
        number, and the library converts it at once, where a list costs ~0.1-0.3 us an element
        even of nulls (22 messages: 8.4 us against 4.3 us for the whole evaluation).
        """
        if field in self.sized_fields and isinstance(value, (list, dict)):
            return " " * len(value)
        return value


def _sized(source: str, use: re.Match[str]) -> bool:
    """Whether this use of `request.<field>` is the argument of `size()` or the receiver of `.size()`."""
    return bool(
        (_SIZE_OPEN.search(source, 0, use.start()) and _CLOSE.match(source, use.end()))
        or _SIZE_CALL.match(source, use.end())
    )


# `request` as a variable (not a field of something else), and the field it selects, if any.
_REQUEST_USE = re.compile(r"(?<![\w.])request\b(?:\s*\.\s*([A-Za-z_]\w*)(\s*\()?)?")
_SIZE_OPEN = re.compile(r"(?<![\w.])size\s*\(\s*\Z")  # searched in the source up to the use
_CLOSE = re.compile(r"\s*\)")
_SIZE_CALL = re.compile(r"\s*\.\s*size\s*\(\s*\)")
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
        return _truth(self._expression.eval(activation).value())

    def holds_for(self, data: Mapping[str, Any]) -> bool | None:
        """`holds` over these values, without building an activation first (~0.7 us less)."""
        return _truth(self._expression.eval(data=data).value())


def _truth(result: Any) -> bool | None:
    # An error's value() is its message (a str), so one check covers errors and non-booleans
    # (asking value.type() first cost ~1.5 us a rule).
    return result if result is True or result is False else None


class ConditionGroup:
    """Several conditions evaluated with one call into the library, each with its own result.

    Compiled as the CEL list `[c1, c2, ...]`: one evaluation instead of one per rule (~2 us each,
    mostly the call's fixed cost). A list with a failing element fails as a whole, so then each
    condition is evaluated alone: the results are always those of evaluating each one by itself.
    """

    __slots__ = ("_activation", "_conditions", "_list")

    def __init__(self, conditions: Sequence[Condition], combined: Any, activation: Any) -> None:
        self._conditions = tuple(conditions)
        self._list = combined
        self._activation = activation

    def __len__(self) -> int:
        return len(self._conditions)

    def results(self, data: Mapping[str, Any]) -> list[bool | None]:
        """Each condition's `holds` over these values: true, false, or None when it failed."""
        conditions = self._conditions
        if self._list is not None:
            values = self._list.eval(data=data).plain_value()
            if isinstance(values, list):
                return [v if v is True or v is False else None for v in values]
        elif len(conditions) == 1:
            return [conditions[0].holds_for(data)]
        activation = self._activation(data)  # converted once for all of them
        return [condition.holds(activation) for condition in conditions]


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

    def group(self, conditions: Sequence[Condition]) -> ConditionGroup:
        """The conditions as one list expression (each on lines of its own: a `//` comment in one
        ends with its line). Only a group of two or more is worth it."""
        if len(conditions) < 2:
            return ConditionGroup(conditions, None, self._env.Activation)
        source = "[" + ",".join(f"(\n{c.source}\n)" for c in conditions) + "]"
        try:
            combined = self._env.compile(source)
        except RuntimeError:  # e.g. a nesting limit: evaluate them one by one
            combined = None
        return ConditionGroup(conditions, combined, self._env.Activation)

    def activation(self, data: Mapping[str, Any]) -> Any:
        """An activation over these values: conditions evaluated one by one over it convert them once."""
        return self._env.Activation(data)
