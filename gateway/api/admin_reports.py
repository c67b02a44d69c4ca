"""`/admin/audit` (query, verify), `/admin/spend` (grouped spend over a time range), `/admin/budgets` (standing now)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.admin import AdminGuard, json, query_float
from gateway.api.admin_keys import Endpoint
from gateway.api.common import parse_count
from gateway.audit.trail import AuditTrail
from gateway.budgets.report import GROUPS, spend_report
from gateway.errors import InvalidRequest
from gateway.store import Store


class AdminReportsApi:
    def __init__(
        self, guard: AdminGuard, audit: AuditTrail, store: Store, before_spend: Callable[[], Awaitable[None]] | None = None,
        budget_report: Callable[[str | None], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._guard = guard
        self._budget_report = budget_report
        self._audit = audit
        self._store = store
        # Flushes this replica's queued spend entries, so a report is never behind what it served.
        self._before_spend = before_spend

    async def audit(self, request: Request) -> Response:
        self._guard.actor(request)
        q = request.query_params
        after = _int(q.get("after_seq"), "after_seq", 0)
        limit = min(_int(q.get("limit"), "limit", 100), 10_000)
        entries = await self._audit.query(
            after_seq=after, limit=limit, action=q.get("action") or None, actor=q.get("actor") or None,
            target=q.get("target") or None, since=query_float(request, "since"), until=query_float(request, "until"),
        )
        return json({"data": entries})

    async def verify(self, request: Request) -> Response:
        self._guard.actor(request)
        verdict = await self._audit.verify()
        return json({"ok": verdict.ok, "checked": verdict.checked, "problem": verdict.problem,
                     "at_seq": verdict.at_seq, "first_seq": verdict.first_seq})

    async def spend(self, request: Request) -> Response:
        self._guard.actor(request)
        group_by = request.query_params.get("group_by", "key")
        if group_by not in GROUPS:
            raise InvalidRequest(f"group_by must be one of: {', '.join(GROUPS)}.", param="group_by")
        until = query_float(request, "until") or time.time()
        since = query_float(request, "since")
        if since is None:
            since = until - 30 * 86400
        if self._before_spend is not None:
            await self._before_spend()
        rows = await spend_report(self._store, group_by, since, until)
        return json({"group_by": group_by, "since": since, "until": until, "data": [r.as_dict() for r in rows]})

    async def budgets(self, request: Request) -> Response:
        self._guard.actor(request)
        session = request.query_params.get("session") or None
        rows = await self._budget_report(session) if self._budget_report is not None else []
        return json({"data": rows})

    def routes(self) -> list[tuple[str, Endpoint, list[str]]]:
        return [
            ("/admin/budgets", self.budgets, ["GET"]),
            ("/admin/audit", self.audit, ["GET"]),
            ("/admin/audit/verify", self.verify, ["GET"]),
            ("/admin/spend", self.spend, ["GET"]),
        ]


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    number = parse_count(value)
    if number is None:
        raise InvalidRequest(f"The query parameter '{name}' must be a non-negative integer.", param=name)
    return number
