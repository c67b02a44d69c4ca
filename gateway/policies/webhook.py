"""Announces each new hold to the configured webhooks (generic JSON, or Slack-compatible text).

What is posted is decided here; `gateway/webhooks.py` delivers it in the background, with retries
(a webhook that is briefly down still hears of the hold), so a slow or failing webhook never delays
the held request.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.config.policies import Webhook
from gateway.webhooks import WebhookPoster


class WebhookAnnouncer:
    def __init__(self, hooks: list[Webhook]) -> None:
        self._hooks = hooks
        self._poster = WebhookPoster("hold announcement")

    def announce(self, approval: dict[str, Any]) -> None:
        for hook in self._hooks:
            self._poster.post(hook.url, orjson.dumps(announcement(approval, hook.format)), hook.timeout)

    async def aclose(self) -> None:
        await self._poster.aclose()


def announcement(approval: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The body announcing a new hold, in the webhook's format."""
    if fmt != "slack":
        return {"event": "approval.hold", "approval": approval}
    calls = [c for c in approval["calls"] if not c.get("decision")]
    lines = [f"*Lockgate hold {approval['id']}* (key {approval['key']}, model {approval['model']})"]
    lines += [f"• `{c['name']}` {c['arguments']}: {c['message']}" for c in calls]
    lines.append(f"Approve: `lockgate approvals approve {approval['id']}`")
    return {"text": "\n".join(lines)}
