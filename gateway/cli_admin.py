"""Operator commands that talk to a running gateway's admin API: `lockgate keys|audit|spend|budgets|deployments`.

Every command takes `--url` (default http://127.0.0.1:4000, env LOCKGATE_URL) and `--master-key`
(env LOCKGATE_MASTER_KEY). Output is a rich table, or JSON with `--json`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.audit.folding import FIRST_AT, OCCURRENCES
from gateway.cli_http import DEFAULT_URL, Master, Url, admin_call

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

keys_app = typer.Typer(no_args_is_help=True, help="Virtual keys: create, list, show, revoke.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: list entries, verify the chain.")
spend_app = typer.Typer(no_args_is_help=True, help="Spend reports by key, team, user, session or model.")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _budgets(budgets: list[dict[str, Any]] | None) -> str:
    return ", ".join(f"${b['limit_usd']:g}/{b['period']}" for b in budgets or ()) or "-"


def _parse_budget(text: str) -> dict[str, Any]:
    amount, _, period = text.partition("/")
    try:
        return {"limit_usd": float(amount.lstrip("$")), "period": period or "monthly"}
    except ValueError:
        raise typer.BadParameter(f"'{text}': write a budget as AMOUNT or AMOUNT/PERIOD, e.g. 10/daily") from None


def _key_table(keys: list[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True)  # copied into `keys revoke`: never truncated
    for column in ("name", "team", "user", "models", "budgets", "rpm", "tpm", "expires", "status"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            k["id"], k["name"], k.get("team") or "-", k.get("user") or "-", ", ".join(k.get("models") or ()) or "all",
            _budgets(k.get("budgets")), str(k.get("rpm") or "-"), str(k.get("tpm") or "-"),
            _when(k.get("expires_at")), k["status"],
        )
    return table


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name people recognise.")],
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    team: Annotated[str | None, typer.Option()] = None,
    user: Annotated[str | None, typer.Option()] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model (repeat); default all.")] = None,
    budget: Annotated[list[str] | None, typer.Option("--budget", help="AMOUNT or AMOUNT/PERIOD, e.g. 10/daily.")] = None,
    rpm: Annotated[int | None, typer.Option()] = None,
    tpm: Annotated[int | None, typer.Option()] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="Expire after this many days.")] = None,
    metadata: Annotated[str | None, typer.Option(help="JSON object of metadata.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key. The secret is printed once: store it now."""
    body: dict[str, Any] = {"name": name, "team": team, "user": user, "models": model or None, "rpm": rpm, "tpm": tpm}
    if budget:
        body["budgets"] = [_parse_budget(b) for b in budget]
    if expires_in_days is not None:
        body["expires_at"] = time.time() + expires_in_days * 86400
    if metadata:
        body["metadata"] = json.loads(metadata)
    created = admin_call(url, master_key, "POST", "/admin/keys", json={k: v for k, v in body.items() if v is not None})
    if as_json:
        out.print_json(data=created)
        return
    out.print(_key_table([created]))
    out.print(f"[bold]secret[/] {created['key']}", highlight=False)
    out.print("[yellow]This secret is shown once. Store it now; the gateway keeps only its hash.[/]")


@keys_app.command("list")
def keys_list(
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    team: Annotated[str | None, typer.Option()] = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List keys."""
    params = {"include_revoked": "true" if all_keys else "false", **({"team": team} if team else {})}
    keys = admin_call(url, master_key, "GET", "/admin/keys", params=params)["data"]
    if as_json:
        out.print_json(data=keys)
    else:
        out.print(_key_table(keys))


@keys_app.command("show")
def keys_show(key_id: str, url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Show one key, metadata included."""
    out.print_json(data=admin_call(url, master_key, "GET", f"/admin/keys/{key_id}"))


@keys_app.command("revoke")
def keys_revoke(
    key_id: str,
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
) -> None:
    """Revoke a key: every replica refuses it within seconds."""
    revoked = admin_call(url, master_key, "POST", f"/admin/keys/{key_id}/revoke", json={"reason": reason})
    out.print(f"[green]revoked[/] {revoked['id']} ({revoked['name']})", highlight=False)


def _parse_time(text: str | None) -> float | None:
    """Epoch seconds, an ISO date/time (UTC if no zone), or a relative '7d' / '12h'."""
    if text is None:
        return None
    if text[:-1].isdigit() and text[-1] in "dh":
        return time.time() - int(text[:-1]) * (86400 if text[-1] == "d" else 3600)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}': use epoch seconds, an ISO date (2026-11-01) or 7d / 12h") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@audit_app.command("list")
def audit_list(
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    action: Annotated[str | None, typer.Option(help="e.g. key.revoke, or key for every key.* action.")] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    target: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="Epoch, ISO date or 7d/12h.")] = None,
    until: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOption = False,
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, Any] = {"limit": limit}
    for name, text in (("action", action), ("actor", actor), ("target", target)):
        if text:
            params[name] = text
    for name, value in (("since", _parse_time(since)), ("until", _parse_time(until))):
        if value is not None:
            params[name] = value
    entries = admin_call(url, master_key, "GET", "/admin/audit", params=params)["data"]
    if as_json:
        out.print_json(data=entries)
        return
    table = Table("seq", "when (UTC)", "actor", "action", "target", "reason", "hash")
    for e in entries:
        reason = e["reason"] or "-"
        repeats = e["details"].get(OCCURRENCES)
        if isinstance(repeats, int):  # a folded entry: the repeats of the entry before it with these fields
            reason += f" ({repeats} repeats since {_when(e['details'].get(FIRST_AT, e['ts']))})"
        table.add_row(str(e["seq"]), _when(e["ts"]), e["actor"], e["action"], e["target"], reason, e["hash"][:12])
    out.print(table)


@audit_app.command("verify")
def audit_verify(url: Url = DEFAULT_URL, master_key: Master = "") -> None:
    """Check the hash chain: exits 1 if any entry was edited, removed or reordered."""
    verdict = admin_call(url, master_key, "GET", "/admin/audit/verify")
    if verdict["ok"]:
        first = verdict.get("first_seq", 1)
        kept = f", from entry {first}: retention deleted the older ones" if first > 1 else ""
        out.print(f"[green]ok[/] the audit chain is intact ({verdict['checked']} entries{kept})")
        return
    err.print(f"[red]TAMPERED[/] {verdict['problem']} ({verdict['checked']} entries verified before it)")
    raise typer.Exit(1)


@spend_app.command("report")
def spend_report(
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    by: Annotated[str, typer.Option("--by", help="key, team, user, session or model.")] = "key",
    since: Annotated[str | None, typer.Option(help="Epoch, ISO date or 7d/12h (default 30d).")] = None,
    until: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOption = False,
) -> None:
    """Spend grouped by key, team, user, session or model over a time range."""
    params: dict[str, Any] = {"group_by": by}
    for name, value in (("since", _parse_time(since)), ("until", _parse_time(until))):
        if value is not None:
            params[name] = value
    report = admin_call(url, master_key, "GET", "/admin/spend", params=params)
    if as_json:
        out.print_json(data=report)
        return
    table = Table(by, "requests", "spend (USD)", "tokens",
                  title=f"Spend by {by}, {_when(report['since'])} to {_when(report['until'])} UTC")
    for row in report["data"]:
        table.add_row(row["group"], str(row["requests"]), f"${row['spend_usd']:,.6f}", f"{row['tokens']:,}")
    total = sum(r["spend_micros"] for r in report["data"])
    table.add_row("[bold]total[/]", str(sum(r["requests"] for r in report["data"])), f"[bold]${total / 1e6:,.6f}[/]",
                  f"{sum(r['tokens'] for r in report['data']):,}")
    out.print(table)


budgets_app = typer.Typer(no_args_is_help=True, help="Budgets now: spent, reserved, left and when each resets.")


@budgets_app.command("status")
def budgets_status(
    url: Url = DEFAULT_URL,
    master_key: Master = "",
    session: Annotated[str | None, typer.Option(help="Also show this session's budget.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every budget's standing in its current window, as the next request will be checked against it."""
    rows = admin_call(url, master_key, "GET", "/admin/budgets", params={"session": session} if session else None)["data"]
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("scope", "id", "window", "limit", "spent", "in flight", "left", "used", "resets (UTC)",
                  title="Budgets in their current window")
    for r in rows:
        pct = r["used_pct"]
        colour = "red" if pct is not None and pct >= 100 else "yellow" if pct is not None and pct >= 80 else "green"
        used = f"[{colour}]{pct:g}%[/]" if pct is not None else "-"
        if r.get("max_tokens") is not None:
            used += f" · {r['tokens_used']:,}/{r['max_tokens']:,} tok"
        window = r["period"] if r["window"] == r["period"] else f"{r['period']} {r['window']}"
        reserved = _usd(r["reserved_usd"])
        if r.get("leased_usd"):  # other replicas' leases: room they hold, their recent spend included
            reserved += f" ({_usd(r['leased_usd'])} leased)"
        table.add_row(r["scope"], r["id"], window, _usd(r["limit_usd"]), _usd(r["spent_usd"]),
                      reserved, _usd(r["remaining_usd"]), used, _when(r["resets_at"]))
    out.print(table)


def deployments(url: Url = DEFAULT_URL, master_key: Master = "", as_json: JsonOption = False) -> None:
    """Each deployment's breaker and cooldown, as the gateway at --url sees them (breakers are per replica)."""
    rows = admin_call(url, master_key, "GET", "/admin/deployments")["data"]
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("deployment", "group", "provider / model", "upstream", "breaker", "failures",
                  "cooling down until (UTC)", title="Deployments")
    for r in rows:
        colour = {"open": "red", "half_open": "yellow"}.get(r["breaker"], "green")
        cooling = r["cooling_until"] if r["cooling_until"] and r["cooling_until"] > time.time() else None
        table.add_row(r["id"], r["group"], f"{r['provider']} / {r['model']}", r["server"] or "(provider default)",
                      f"[{colour}]{r['breaker']}[/]", str(r["failures"]), _when(cooling) if cooling else "")
    out.print(table)


def _usd(amount: float) -> str:
    """Cents for whole amounts, micro-dollars for the small ones a few requests cost."""
    if amount == 0 or amount >= 100:
        return f"${amount:,.2f}"
    return "$" + f"{amount:,.6f}".rstrip("0").rstrip(".")
