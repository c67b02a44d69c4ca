"""How operator commands reach a running gateway's admin API: one call, errors printed for a person.

Shared by `lockgate keys|audit|spend` (cli_admin.py) and `lockgate approvals|pause|resume|stop`
(cli_oversight.py). A gateway that cannot be reached exits 2; an error answer prints the gateway's
own message (OpenAI's error shape) and exits 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

DEFAULT_URL = "http://127.0.0.1:4000"
Url = Annotated[str, typer.Option("--url", envvar="LOCKGATE_URL", help="The gateway's base URL.")]
Master = Annotated[str, typer.Option("--master-key", envvar="LOCKGATE_MASTER_KEY", help="The gateway's master key.")]

_err = Console(stderr=True, soft_wrap=True)


def admin_call(url: str, master_key: str, method: str, path: str, **kwargs: Any) -> Any:
    """`kwargs` go to httpx (`json=`, `params=`); returns the decoded JSON answer."""
    try:
        reply = httpx.request(
            method, url.rstrip("/") + path, headers={"authorization": f"Bearer {master_key}"}, timeout=30, **kwargs
        )
    except httpx.TransportError as exc:
        _err.print(f"[red]error[/] cannot reach the gateway at {escape(url)}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    if reply.status_code >= 400:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:500]
        _err.print(f"[red]error[/] {reply.status_code}: {escape(str(message))}", highlight=False)
        raise typer.Exit(1)
    return reply.json()
