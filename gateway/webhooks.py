"""Outgoing webhooks (budget alerts, announcements of holds): JSON posted off the request path, retried.

aiohttp, the gateway's HTTP client, enters here for them. A delivery retries connection errors,
timeouts, 429 and 5xx with exponential backoff; any other 4xx is a refusal, not retried. Webhook
URLs often carry a secret token (Slack's do): only the host is ever logged.

Deliveries run as background tasks. Closing (the gateway stopping) waits a little for those in
flight, then gives up on them and says how many, so a webhook that is down cannot hold a stopping
gateway up for its retries.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

log = logging.getLogger("lockgate.webhooks")

# How long a stopping gateway waits for deliveries in flight (retries included) before giving up.
CLOSE_SECONDS = 3.0


class WebhookPoster:
    """Posts JSON bodies to webhooks in the background, each with up to `max_attempts` attempts."""

    def __init__(self, purpose: str, max_attempts: int = 5, backoff: float = 0.5, timeout: float = 10.0) -> None:
        self._purpose = purpose  # what the posts are, for the log: "alert", "hold announcement"
        self._attempts = max_attempts
        self._backoff = backoff
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        # Deliveries in flight: kept so they are not garbage-collected, and waited for on close.
        self._deliveries: set[asyncio.Task[bool]] = set()

    def post(self, url: str, body: bytes, timeout: float | None = None) -> None:
        """Deliver `body` to `url` in the background (`timeout`: each attempt's, default the poster's)."""
        task = asyncio.get_running_loop().create_task(self.deliver(url, body, timeout))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def deliver(self, url: str, body: bytes, timeout: float | None = None) -> bool:
        """Post with exponential backoff between attempts; True once the webhook took it."""
        if self._session is None:
            # trust_env: the egress proxy the environment names (Slack is outside the network).
            self._session = aiohttp.ClientSession(trust_env=True)
        limit = aiohttp.ClientTimeout(total=timeout or self._timeout)
        for attempt in range(self._attempts):
            try:
                async with self._session.post(
                    url, data=body, headers={"content-type": "application/json"}, timeout=limit
                ) as reply:
                    if reply.status < 300:
                        return True
                    if reply.status != 429 and reply.status < 500:
                        log.warning("%s webhook %s refused it with HTTP %s", self._purpose, host(url), reply.status)
                        return False
                    failure = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = type(exc).__name__
            log.info("%s webhook %s attempt %d failed: %s", self._purpose, host(url), attempt + 1, failure)
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._backoff * 2**attempt)
        log.warning("%s webhook %s: gave up after %d attempts", self._purpose, host(url), self._attempts)
        return False

    async def aclose(self, seconds: float = CLOSE_SECONDS) -> None:
        if self._deliveries:
            _, unfinished = await asyncio.wait(set(self._deliveries), timeout=seconds)
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.warning("%d %s webhook deliveries given up at shutdown", len(unfinished), self._purpose)
                await asyncio.gather(*unfinished, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def host(url: str) -> str:
    """The URL's host: the rest (a path, a query) may hold a secret token."""
    return url.split("/")[2] if "//" in url else "?"
