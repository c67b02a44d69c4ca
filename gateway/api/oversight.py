"""The admin API for human oversight (master key only): approvals, and pause/resume/stop.

    GET  /admin/approvals[?status=pending|decided]     GET /admin/approvals/{id}
    POST /admin/approvals/{id}/approve|deny            {"call_id"?: str, "reason"?: str, "by"?: str}
    POST /admin/approvals/{id}/edit                    {"call_id"?: str, "arguments": {...}, "reason"?: str}
    GET  /admin/pauses
    POST /admin/pauses/session/{id}/pause|resume|stop  {"reason"?: str, "by"?: str}
    POST /admin/pauses/key/{name}/pause|resume|stop

Without `call_id` a decision applies to every undecided call of the approval. Edited arguments are
validated against the tool's JSON schema. The reviewer is `by`, else `x-lockgate-user`, else "admin".
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import json_response, parse_object, read_body
from gateway.auth import Authenticator
from gateway.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.policies.approvals import ApprovalError, Approvals
from gateway.policies.pauses import Pauses
from gateway.policies.schema_check import schema_problems

_LIMIT = 1024 * 1024


class OversightApi:
    def __init__(self, authenticator: Authenticator, approvals: Approvals, pauses: Pauses) -> None:
        self._auth = authenticator
        self._approvals = approvals
        self._pauses = pauses

    def _master(self, request: Request) -> None:
        principal = self._auth.authenticate(request.headers)
        if not principal.is_master:
            raise PermissionDenied("The admin API needs the master key.", code="admin_only")

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, _LIMIT)
        return parse_object(raw) if raw.strip() else {}

    @staticmethod
    def _by(request: Request, body: dict[str, Any]) -> str:
        by = body.get("by") or request.headers.get("x-lockgate-user") or "admin"
        return str(by)[:200]

    async def list_approvals(self, request: Request) -> Response:
        self._master(request)
        status = request.query_params.get("status")
        if status not in (None, "pending", "decided"):
            raise InvalidRequest("status must be 'pending' or 'decided'.", param="status")
        order = request.query_params.get("order", "oldest")
        if order not in ("oldest", "newest"):
            raise InvalidRequest("order must be 'oldest' or 'newest'.", param="order")
        approvals = await self._approvals.list(status, newest=order == "newest")
        return json_response(orjson.dumps({"object": "list", "data": [a.public() for a in approvals]}))

    async def show(self, request: Request) -> Response:
        self._master(request)
        approval = await self._approvals.get(request.path_params["approval_id"])
        if approval is None:
            raise NotFound(f"There is no approval '{request.path_params['approval_id']}'.")
        return json_response(orjson.dumps(approval.public()))

    async def decide(self, request: Request) -> Response:
        self._master(request)
        approval_id, action = request.path_params["approval_id"], request.path_params["action"]
        if action not in ("approve", "edit", "deny"):
            raise NotFound(f"Unknown action '{action}': use approve, edit or deny.")
        body = await self._body(request)
        call_id = body.get("call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise InvalidRequest("call_id must be a string.", param="call_id")
        arguments: str | None = None
        if action == "edit":
            arguments = await self._edited_arguments(approval_id, call_id, body)
        try:
            approval = await self._approvals.decide(
                approval_id, action, by=self._by(request, body), reason=str(body.get("reason") or ""),
                call_id=call_id, arguments=arguments,
            )
        except ApprovalError as exc:
            raise InvalidRequest(str(exc), code="approval_not_pending") from None
        return json_response(orjson.dumps(approval.public()))

    async def _edited_arguments(self, approval_id: str, call_id: str | None, body: dict[str, Any]) -> str:
        given = body.get("arguments")
        if isinstance(given, str):
            try:
                given = orjson.loads(given)
            except orjson.JSONDecodeError:
                raise InvalidRequest("arguments is not valid JSON.", param="arguments") from None
        if not isinstance(given, dict):
            raise InvalidRequest("edit needs 'arguments': the tool call's new arguments object.", param="arguments")
        approval = await self._approvals.get(approval_id)
        if approval is None:
            raise NotFound(f"There is no approval '{approval_id}'.")
        pending = [c for c in approval.calls if not c.get("decision") and call_id in (None, c["id"])]
        if len(pending) != 1:
            raise InvalidRequest("edit applies to one tool call: name it with call_id.", param="call_id")
        problems = schema_problems(pending[0].get("schema"), given)
        if problems:
            raise InvalidRequest(
                f"The arguments do not fit the schema of '{pending[0]['name']}': {'; '.join(problems)}",
                param="arguments",
            )
        return orjson.dumps(given).decode()

    async def pauses(self, request: Request) -> Response:
        self._master(request)
        states = await self._pauses.list()
        waiting = self._pauses.waiting
        data = [
            {"target": s.target, "state": s.state, "by": s.by, "reason": s.reason, "waiting": waiting.get(s.target, 0)}
            for s in states
        ]
        return json_response(orjson.dumps({"object": "list", "data": data}))

    async def pause(self, request: Request) -> Response:
        self._master(request)
        kind = request.path_params["kind"]
        if kind not in ("session", "key"):
            raise NotFound(f"Unknown kind '{kind}': pause a 'session' or a 'key'.")
        target = f"{kind}:{request.path_params['name']}"
        action = request.path_params["action"]
        body = await self._body(request)
        by, reason = self._by(request, body), str(body.get("reason") or "")
        if action == "resume":
            await self._pauses.resume(target, by, reason)
            return json_response(orjson.dumps({"target": target, "state": "running"}))
        if action not in ("pause", "stop"):
            raise NotFound(f"Unknown action '{action}': use pause, resume or stop.")
        state = await self._pauses.set(target, "paused" if action == "pause" else "stopped", by, reason)
        return json_response(orjson.dumps({"target": target, "state": state.state, "by": by, "reason": reason}))

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [
            ("/admin/approvals", self.list_approvals, ["GET"]),
            ("/admin/approvals/{approval_id}", self.show, ["GET"]),
            ("/admin/approvals/{approval_id}/{action}", self.decide, ["POST"]),
            ("/admin/pauses", self.pauses, ["GET"]),
            ("/admin/pauses/{kind}/{name}/{action}", self.pause, ["POST"]),
        ]
