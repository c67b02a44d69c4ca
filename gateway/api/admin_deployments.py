"""`GET /admin/deployments`: each deployment's health as this replica sees it, for operators on a bad day.

Per deployment: its group, provider and upstream model; its breaker (per replica: `closed`, `open`,
`half_open`) and the failures counted toward it; and whether it is cooling down after a 429, until
when (shared by replicas through the store). The dashboard shows it; metrics carry the same breaker
states over time. Nothing here reads a key: the API base is reduced to its host and port.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.admin import AdminGuard, json
from gateway.config.runtime import RuntimeConfig
from gateway.routing.router import Router
from gateway.telemetry.attributes import DeploymentAttributes


class DeploymentsApi:
    def __init__(self, guard: AdminGuard, config: RuntimeConfig, router: Router) -> None:
        self._guard = guard
        self._router = router
        attributes = DeploymentAttributes(config)
        self._deployments: dict[str, dict[str, Any]] = {
            d.id: {"id": d.id, "group": d.group, "provider": d.provider, "model": d.upstream_model,
                   "server": attributes.server_of(d.id)}
            for group in config.groups.values() for d in group.deployments
        }

    async def health(self, request: Request) -> Response:
        self._guard.actor(request)
        breakers = self._router.breakers
        # (Shared cooldowns fall back to this replica's own while the store is away.)
        cooling = await self._router.cooldowns.active(list(self._deployments))
        data = [
            {**fixed, "breaker": breakers.state(ident), "failures": breakers.failures(ident),
             "cooling_until": cooling.get(ident)}
            for ident, fixed in self._deployments.items()
        ]
        return json({"object": "list", "data": data})

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [("/admin/deployments", self.health, ["GET"])]
