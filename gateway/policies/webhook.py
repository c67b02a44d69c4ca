"""Announces each new hold to the configured webhooks (generic JSON, or Slack-compatible text).

The one module that posts to webhooks (with httpx). Deliveries run in the background: a slow or
failing webhook never delays the held request; failures are logged without the URL's secrets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from gateway.config.policies import Webhook

log = logging.getLogger("lockgate.approvals")


class WebhookAnnouncer:
    def __init__(self, hooks: list[Webhook]) -> None:
        self._hooks = hooks
        self._client: httpx.AsyncClient | None = None
        # Deliveries in flight: kept so they are not garbage-collected, and awaited on close.
        self._tasks: set[asyncio.Task[None]] = set()

    def announce(self, approval: dict[str, Any]) -> None:
        for hook in self._hooks:
            task = asyncio.get_running_loop().create_task(self._post(hook, approval))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, hook: Webhook, approval: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient()
        calls = [c for c in approval["calls"] if not c.get("decision")]
        if hook.format == "slack":
            lines = [f"*Lockgate hold {approval['id']}* (key {approval['key']}, model {approval['model']})"]
            lines += [f"• `{c['name']}` {c['arguments']}: {c['message']}" for c in calls]
            lines.append(f"Approve: `lockgate approvals approve {approval['id']}`")
            body: dict[str, Any] = {"text": "\n".join(lines)}
        else:
            body = {"event": "approval.hold", "approval": approval}
        try:
            response = await self._client.post(hook.url, json=body, timeout=hook.timeout)
            if response.status_code >= 400:
                log.warning("approval webhook answered HTTP %s", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("approval webhook failed: %s", type(exc).__name__)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
