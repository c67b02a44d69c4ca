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

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli_http import DEFAULT_URL, Master, Url, admin_call

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

By = Annotated[str, typer.Option("--by", envvar="LOCKGATE_USER", help="Who is deciding (for the audit trail).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (for the audit trail and the agent).")]
Call = Annotated[str | None, typer.Option("--call", help="One tool call's id; default: every pending call.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]

approvals_app = typer.Typer(no_args_is_help=True, help="Held tool calls: list, show, approve, edit, deny.")


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
    data = admin_call(url, master_key, "GET", "/admin/approvals" + ("" if all_ else "?status=pending"))["data"]
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
    approval = admin_call(url, master_key, "GET", f"/admin/approvals/{approval_id}")
    if as_json:
        out.print_json(json.dumps(approval))
    else:
        _show(approval)


def _decide(url: str, master_key: str, approval_id: str, action: str, body: dict[str, Any]) -> None:
    _show(admin_call(url, master_key, "POST", f"/admin/approvals/{approval_id}/{action}", json=body))


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
    result = admin_call(url, master_key, "POST", _target(session, key) + "/pause", json={"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def resume(session: Session = None, key: Key = None, reason: Reason = "", by: By = "cli",
           url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Let a paused or stopped session or key run again."""
    result = admin_call(url, master_key, "POST", _target(session, key) + "/resume", json={"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def stop(session: Session = None, key: Key = None, reason: Reason = "", by: By = "cli",
         url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Refuse a session's or key's requests (403) until it is resumed."""
    result = admin_call(url, master_key, "POST", _target(session, key) + "/stop", json={"reason": reason, "by": by})
    out.print(f"{result['target']} {result['state']}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
    app.command()(pause)
    app.command()(resume)
    app.command()(stop)
