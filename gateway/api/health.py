"""`GET /healthz` (the process answers) and `GET /readyz` (it can serve traffic)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import json_response


class HealthApi:
    def __init__(self, ready: Callable[[], dict[str, bool]]) -> None:
        # Returns each readiness check by name; the gateway is ready when all pass.
        self._ready = ready

    async def healthz(self, request: Request) -> Response:
        return json_response(b'{"status":"ok"}')

    async def readyz(self, request: Request) -> Response:
        checks = self._ready()
        ok = all(checks.values())
        body = {"status": "ready" if ok else "not_ready", "checks": checks}
        return json_response(orjson.dumps(body), status=200 if ok else 503)
