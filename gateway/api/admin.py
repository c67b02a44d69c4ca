"""The admin API's guard and helpers: master key only, JSON in and out, the actor for the audit log."""

from __future__ import annotations

import hmac
import math
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import parse_object, read_body
from gateway.auth import token_of
from gateway.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

M = TypeVar("M", bound=BaseModel)
ADMIN_BODY_LIMIT = 256 * 1024


class AdminGuard:
    def __init__(self, master_key: str | None) -> None:
        self._master = master_key

    def actor(self, request: Request) -> str:
        """Check the master key; return who acts (`x-lockgate-actor`, else "master") for the audit log."""
        if self._master is None:
            raise PermissionDenied(
                "The admin API is disabled: set general_settings.master_key to use it.", code="admin_disabled"
            )
        token = token_of(request.headers)
        if token is None or not hmac.compare_digest(token.encode(), self._master.encode()):
            raise AuthenticationFailed("The admin API needs the master key as 'Authorization: Bearer <key>'.")
        actor = request.headers.get("x-lockgate-actor", "").strip()
        return f"master:{actor[:100]}" if actor else "master"


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await read_body(request, ADMIN_BODY_LIMIT)
    body = parse_object(raw) if raw else {}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{path}: {first['msg']}", param=path or None) from None


def json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def query_float(request: Request, name: str) -> float | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # "NaN" and "inf" parse as floats; Redis refused them (a 503 for bad input)
        raise InvalidRequest(f"The query parameter '{name}' must be a number (epoch seconds).", param=name)
    return number
