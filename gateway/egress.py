"""The egress proxy the environment names for a host: HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY.

Read as requests and httpx read it (so as the official SDKs and litellm do), once per destination
rather than per request: `urllib.request.getproxies()` walks the whole environment, which costs
more than a request's own bookkeeping on the pass-through path. Where egress must go through a
proxy, calls that ignored it failed to connect while litellm's and the metric exporter's got through.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line

    @property
    def url(self) -> str:
        """The proxy's address, without its credentials (those go in `headers`, or a client's auth)."""
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Proxy-Authorization, when the proxy has credentials."""
        if self.username is None:
            return {}
        token = f"{self.username}:{self.password or ''}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(token).decode()}


def proxy_for(url: str) -> Proxy | None:
    """The proxy to reach `url` through, or None to go direct."""
    parts = urlsplit(url)
    address = urllib.request.getproxies().get(parts.scheme)
    if not address or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = urlsplit(address if "://" in address else f"http://{address}")
    username = unquote(proxy.username) if proxy.username is not None else None
    password = unquote(proxy.password) if proxy.password is not None else None
    return Proxy(proxy.hostname or "127.0.0.1", proxy.port or 80, username, password)
