"""Operator commands for human oversight, against a running gateway's admin API.

    lockgate approvals list [--all]          lockgate approvals show ID
    lockgate approvals approve ID [--call CALL_ID] [--reason TEXT]
    lockgate approvals edit ID --args '{"amount": 10}' [--call CALL_ID] [--reason TEXT]
    lockgate approvals deny ID [--call CALL_ID] [--reason TEXT]
    lockgate pause|resume|stop (--session ID | --key NAME) [--reason TEXT]

Every command takes `--url` (env LOCKGATE_URL, default http://127.0.0.1:4000), `--master-key`
(env LOCKGATE_MASTER_KEY) and `--by` (who decides; env LOCKGATE_USER).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Url = Annotated[str, typer.Option("--url", envvar="LOCKGATE_URL", help="The gateway's base URL.")]
Master = Annotated[str, typer.Option("--master-key", envvar="LOCKGATE_MASTER_KEY", help="The master key.")]
By = Annotated[str, typer.Option("--by", envvar="LOCKGATE_USER", help="Who is deciding (for the audit trail).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (for the audit trail and the agent).")]
Call = Annotated[str | None, typer.Option("--call", help="One tool call's id; default: every pending call.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_URL = "http://127.0.0.1:4000"

approvals_app = typer.Typer(no_args_is_help=True, help="Held tool calls: list, show, approve, edit, deny.")


def _call(url: str, master_key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        reply = httpx.request(method, url.rstrip("/") + path, json=body, timeout=30,
                              headers={"authorization": f"Bearer {master_key}"})
    except httpx.TransportError as exc:
        err.print(f"[red]error[/] cannot reach the gateway at {url}: {exc}")
        raise typer.Exit(2) from None
    if reply.status_code >= 400:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:500]
        err.print(f"[red]error[/] {reply.status_code}: {escape(message)}", highlight=False)
        raise typer.Exit(1)
    return reply.json()


def _show(approval: dict[str, Any]) -> None:
    out.print(f"[bold]{approval['id']}[/] {approval['status']}  key {approval['key']}  model {approval['model']}"
              f"  session {approval.get('session_id') or '-'}")
    for call in approval["calls"]:
        decision = call.get("decision")
        state = f"{decision['action']} by {decision['by']}" if decision else "pending"
        out.print(f"  {call['id']}  {call['name']}({call['arguments']})  {state}  {call.get('message') or ''}",
                  markup=False, highlight=False)


@approvals_app.command("list")
def list_(
    url: Url = DEFAULT_URL, master_key: Master = "", all_: Annotated[bool, typer.Option("--all")] = False,
    as_json: AsJson = False,
) -> None:
    """Pending approvals (or all of them with --all)."""
    data = _call(url, master_key, "GET", "/admin/approvals" + ("" if all_ else "?status=pending"))["data"]
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table()
    # The id is what a reviewer copies into `approve`/`deny`: it is never truncated.
    table.add_column("id", no_wrap=True, min_width=22)
    for column in ("status", "key", "session", "tools", "why"):
        table.add_column(column)
    for a in data:
        pending = [c for c in a["calls"] if c.get("rule")]
        table.add_row(a["id"], a["status"], a["key"], a.get("session_id") or "-",
                      ", ".join(c["name"] for c in pending), "; ".join(c["message"] for c in pending))
    out.print(table)


@approvals_app.command()
def show(approval_id: str, url: Url = DEFAULT_URL, master_key: Master = "", as_json: AsJson = False) -> None:
    """One approval with its tool calls and decisions."""
    approval = _call(url, master_key, "GET", f"/admin/approvals/{approval_id}")
    if as_json:
        out.print_json(json.dumps(approval))
    else:
        _show(approval)


def _decide(url: str, master_key: str, approval_id: str, action: str, body: dict[str, Any]) -> None:
    _show(_call(url, master_key, "POST", f"/admin/approvals/{approval_id}/{action}", body))


@approvals_app.command()
def approve(approval_id: str, call: Call = None, reason: Reason = "", by: By = "cli",
            url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Approve the held call(s): the agent receives them as ordinary tool calls."""
    _decide(url, master_key, approval_id, "approve", {"call_id": call, "reason": reason, "by": by})


@approvals_app.command()
def edit(approval_id: str, args: Annotated[str, typer.Option("--args", help="The new arguments, as JSON.")],
         call: Call = None, reason: Reason = "", by: By = "cli",
         url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Approve with new arguments (checked against the tool's JSON schema)."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--args is not JSON: {exc}") from None
    _decide(url, master_key, approval_id, "edit", {"call_id": call, "arguments": arguments, "reason": reason, "by": by})


@approvals_app.command()
def deny(approval_id: str, call: Call = None, reason: Reason = "", by: By = "cli",
         url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Deny the held call(s): the agent is told so in plain text."""
    _decide(url, master_key, approval_id, "deny", {"call_id": call, "reason": reason, "by": by})


def _target(session: str | None, key: str | None) -> str:
    if (session is None) == (key is None):
        raise typer.BadParameter("give exactly one of --session ID or --key NAME")
    return f"/admin/pauses/session/{session}" if session is not None else f"/admin/pauses/key/{key}"


Session = Annotated[str | None, typer.Option("--session", help="A session id (x-lockgate-session-id).")]
Key = Annotated[str | None, typer.Option("--key", help="A key's name.")]


def pause(session: Session = None, key: Key = None, reason: Reason = "", by: By = "cli",
          url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Hold a session's or key's requests until it is resumed."""
    result = _call(url, master_key, "POST", _target(session, key) + "/pause", {"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def resume(session: Session = None, key: Key = None, reason: Reason = "", by: By = "cli",
           url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Let a paused or stopped session or key run again."""
    result = _call(url, master_key, "POST", _target(session, key) + "/resume", {"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def stop(session: Session = None, key: Key = None, reason: Reason = "", by: By = "cli",
         url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Refuse a session's or key's requests (403) until it is resumed."""
    result = _call(url, master_key, "POST", _target(session, key) + "/stop", {"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
    app.command()(pause)
    app.command()(resume)
    app.command()(stop)
