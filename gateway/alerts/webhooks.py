"""Webhook payloads (Slack-compatible and generic JSON) and delivery with retries and backoff.

aiohttp (already the gateway's HTTP client) enters here for outgoing alert posts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from gateway.config.governance import Webhook

log = logging.getLogger("lockgate.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    scope_kind: str
    scope_id: str
    period: str
    window: str
    threshold: float
    limit_micros: int
    spent_micros: int
    reset_at: float | None
    fired_at: float
    reason: str  # "crossed" (settled spend passed it) or "refused" (a request did not fit)

    @property
    def scope_name(self) -> str:
        return "global" if self.scope_kind == "global" else f"{self.scope_kind} '{self.scope_id}'"

    def text(self) -> str:
        reset = (
            "does not reset" if self.reset_at is None
            else "resets " + datetime.fromtimestamp(self.reset_at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        )
        return (
            f"Lockgate budget alert: {self.scope_name} reached {self.threshold:.0%} of its {self.period} budget "
            f"(spent ${self.spent_micros / 1e6:,.4f} of ${self.limit_micros / 1e6:,.2f}; {reset})."
        )


def payload(alert: Alert, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": alert.text()}
    return {
        "type": "lockgate.budget.threshold",
        "scope": {"kind": alert.scope_kind, "id": alert.scope_id},
        "period": alert.period,
        "window": alert.window,
        "threshold": alert.threshold,
        "limit_usd": alert.limit_micros / 1e6,
        "spent_usd": alert.spent_micros / 1e6,
        "reset_at": alert.reset_at,
        "fired_at": alert.fired_at,
        "reason": alert.reason,
        "message": alert.text(),
    }


class WebhookSender:
    def __init__(self, max_attempts: int, backoff: float, timeout: float = 10.0) -> None:
        self._attempts = max_attempts
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, hook: Webhook, alert: Alert) -> bool:
        """Post with exponential backoff on connection errors, 429 and 5xx; True once delivered."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = orjson.dumps(payload(alert, hook.format))
        for attempt in range(self._attempts):
            try:
                async with self._session.post(
                    hook.url, data=body, headers={"content-type": "application/json"}
                ) as reply:
                    if reply.status < 300:
                        return True
                    if reply.status != 429 and reply.status < 500:
                        log.warning("alert webhook %s refused the alert with HTTP %s", _host(hook.url), reply.status)
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("alert webhook %s attempt %d failed: %s", _host(hook.url), attempt + 1, exc)
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._backoff * 2**attempt)
        log.warning("alert webhook %s: gave up after %d attempts", _host(hook.url), self._attempts)
        return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _host(url: str) -> str:
    """Webhook URLs often embed a secret token (Slack): log the host only."""
    return url.split("/")[2] if "//" in url else "?"
