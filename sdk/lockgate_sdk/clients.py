"""The official `openai` and `anthropic` clients, configured for the gateway and a session.

Each client gets the gateway's URL and key, the session headers, and an http client whose
transport injects the current trace context into every request and handles held responses.
The libraries are optional extras, imported only when a client is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lockgate_sdk.transport import AsyncSessionTransport, SyncSessionTransport, httpx_flavour

if TYPE_CHECKING:
    from lockgate_sdk.session import Session


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"`{module}` is not installed: pip install 'lockgate-sdk[{extra}]'") from exc


def http_client(session: Session, library: str = "openai", *, async_: bool = False, **kwargs: Any) -> Any:
    """An http client of the flavour `library` uses, with the session's transport in front."""
    lib = _require(library, library)
    client_class = lib.DefaultAsyncHttpxClient if async_ else lib.DefaultHttpxClient
    httpx_like = httpx_flavour(client_class)
    limits = getattr(lib, "DEFAULT_CONNECTION_LIMITS", None)
    options = {"limits": limits} if limits is not None else {}
    if async_:
        transport: Any = AsyncSessionTransport(httpx_like.AsyncHTTPTransport(**options), session.approvals)
    else:
        transport = SyncSessionTransport(httpx_like.HTTPTransport(**options), session.approvals)
    return client_class(transport=transport, **kwargs)


def _options(session: Session, base_url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    headers = {**session.headers, **(kwargs.pop("default_headers", None) or {})}
    return {"base_url": base_url, "api_key": session.gateway.api_key, "default_headers": headers, **kwargs}


def openai_client(session: Session, *, async_: bool = False, **kwargs: Any) -> Any:
    openai = _require("openai", "openai")
    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    kwargs.setdefault("http_client", http_client(session, "openai", async_=async_))
    return cls(**_options(session, session.gateway.openai_base_url, kwargs))


def anthropic_client(session: Session, *, async_: bool = False, **kwargs: Any) -> Any:
    anthropic = _require("anthropic", "anthropic")
    cls = anthropic.AsyncAnthropic if async_ else anthropic.Anthropic
    kwargs.setdefault("http_client", http_client(session, "anthropic", async_=async_))
    return cls(**_options(session, session.gateway.root_url, kwargs))
