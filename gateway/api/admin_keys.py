"""`/admin/keys`: create, list, read, update and revoke virtual keys (master key only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.admin import AdminGuard, json, parse_body
from gateway.keys.records import KeyCreate, KeyUpdate
from gateway.keys.registry import KeyRegistry

Endpoint = Callable[[Request], Awaitable[Response]]


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class AdminKeysApi:
    def __init__(self, guard: AdminGuard, registry: KeyRegistry) -> None:
        self._guard = guard
        self._keys = registry

    async def create(self, request: Request) -> Response:
        actor = self._guard.actor(request)
        secret, record = await self._keys.create(await parse_body(request, KeyCreate), actor)
        # The only time the secret is ever shown.
        return json({"key": secret, **record}, status=201)

    async def list_keys(self, request: Request) -> Response:
        self._guard.actor(request)
        team = request.query_params.get("team")
        include = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
        return json({"data": await self._keys.list(team=team, include_revoked=include)})

    async def get(self, request: Request) -> Response:
        self._guard.actor(request)
        return json(await self._keys.get(request.path_params["key_id"]))

    async def update(self, request: Request) -> Response:
        actor = self._guard.actor(request)
        patch = await parse_body(request, KeyUpdate)
        return json(await self._keys.update(request.path_params["key_id"], patch, actor))

    async def revoke(self, request: Request) -> Response:
        actor = self._guard.actor(request)
        body = await parse_body(request, Revoke)
        return json(await self._keys.revoke(request.path_params["key_id"], actor, body.reason))

    def routes(self) -> list[tuple[str, Endpoint, list[str]]]:
        return [
            ("/admin/keys", self.create, ["POST"]),
            ("/admin/keys", self.list_keys, ["GET"]),
            ("/admin/keys/{key_id}", self.get, ["GET"]),
            ("/admin/keys/{key_id}", self.update, ["PATCH"]),
            ("/admin/keys/{key_id}/revoke", self.revoke, ["POST"]),
            ("/admin/keys/{key_id}", self.revoke, ["DELETE"]),
        ]
