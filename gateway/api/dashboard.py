"""`GET /ui`: the reviewers' dashboard, three static files (`gateway/ui/`) that act through the admin API.

The page holds no secret and the gateway renders nothing into it: the reviewer signs in with the
master key in the browser, and every action is an admin API call with it. The headers keep the page
to itself: its own scripts and styles only (no inline script, so injected markup could not run even
if it reached the page), no framing (an approve button under someone else's page), no referrer.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import NotFound

_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


class Dashboard:
    def __init__(self) -> None:
        folder = resources.files("gateway") / "ui"
        # Read once: served from memory, and a file missing from an install fails at start-up, not on a click.
        self._files = {name: (folder / name).read_bytes() for name in _FILES}

    async def page(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        body = self._files.get(name)
        if body is None:
            raise NotFound(f"Unknown path: GET {request.url.path}.")
        return Response(body, media_type=_FILES[name], headers=_HEADERS)

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [("/ui", self.page, ["GET"]), ("/ui/{name}", self.page, ["GET"])]
