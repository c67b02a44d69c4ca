"""Pass-through to OpenAI-compatible upstreams: forward the body, stream the bytes back.

The only module that imports aiohttp's client. The client's body is forwarded with the model name
swapped (and, on streams, usage requested); the upstream's bytes go back untouched, and only what the
gateway needs is parsed on the way (usage, finish reasons, tool calls). aiohttp was chosen over httpx
by measurement: see `bench/README.md`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.egress import proxy_for
from gateway.errors import UpstreamFailure, scrub_secrets
from gateway.providers.base import DONE_EVENT, JsonReply, Summary, UpstreamCall, Usage, parse_retry_after
from gateway.providers.sse import SSEDecoder

_USER_AGENT = "lockgate/0.1"
# How much of an upstream error body is read to find its message.
_ERROR_BODY_LIMIT = 64 * 1024


class OpenAICompatProvider:
    """One shared connection pool for every OpenAI-compatible deployment."""

    _session: aiohttp.ClientSession

    async def start(self) -> None:
        """Build the pool; must run inside the event loop (the app's lifespan)."""
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        # No cookie jar: one provider's cookies must not ride along on other clients' requests, and
        # filtering the jar was ~1 % of the gateway's CPU per request (bench/README.md).
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": _USER_AGENT}, cookie_jar=aiohttp.DummyCookieJar()
        )
        # The environment's egress proxy per upstream base URL, read once (see gateway/egress.py).
        self._proxies: dict[str, tuple[str | None, aiohttp.BasicAuth | None]] = {}

    async def aclose(self) -> None:
        if hasattr(self, "_session"):
            await self._session.close()

    async def chat(self, call: UpstreamCall) -> JsonReply:
        body = await self._post_json(call, "/chat/completions", _forward_body(call))
        summary = Summary()
        parsed = _parse_object(body, call)
        if not isinstance(parsed.get("choices"), list):
            raise UpstreamFailure("bad_response", "the response has no 'choices' list")
        summary.read_completion(parsed)
        return JsonReply(body, summary, parsed)

    async def embeddings(self, call: UpstreamCall) -> JsonReply:
        body = await self._post_json(call, "/embeddings", _forward_body(call))
        parsed = _parse_object(body, call)
        if not isinstance(parsed.get("data"), list):
            raise UpstreamFailure("bad_response", "the response has no 'data' list")
        summary = Summary(response_model=parsed.get("model"))
        if isinstance(parsed.get("usage"), dict):
            summary.usage = _embedding_usage(parsed["usage"])
        return JsonReply(body, summary)

    async def chat_stream(self, call: UpstreamCall) -> PassthroughStream:
        timeouts = call.deployment.timeouts
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + call.timeout
        # Time to first token runs from the request, so slow response headers count against it too.
        first_by = deadline if timeouts.first_token is None else min(deadline, started + timeouts.first_token)
        response = await self._send(
            call,
            "/chat/completions",
            _forward_body(call),
            aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            first_by,
        )
        return PassthroughStream(response, call, started, deadline)

    async def _post_json(self, call: UpstreamCall, path: str, body: bytes) -> bytes:
        timeouts = call.deployment.timeouts
        timeout = aiohttp.ClientTimeout(total=call.timeout, sock_connect=timeouts.connect)
        deadline = asyncio.get_running_loop().time() + call.timeout
        response = await self._send(call, path, body, timeout, deadline)
        try:
            return await response.read()
        except TimeoutError:
            raise UpstreamFailure("timeout", f"no complete response within {call.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure("bad_response", f"the response was cut off ({type(exc).__name__})") from None
        finally:
            response.release()

    async def _send(
        self,
        call: UpstreamCall,
        path: str,
        body: bytes,
        timeout: aiohttp.ClientTimeout,
        deadline: float,
    ) -> aiohttp.ClientResponse:
        deployment = call.deployment
        headers = {"Content-Type": "application/json"}
        if deployment.api_key:
            headers["Authorization"] = f"Bearer {deployment.api_key}"
        if call.traceparent is not None:
            headers["traceparent"] = call.traceparent
        base = deployment.api_base or ""
        url = f"{base}{path}"
        proxy = self._proxies.get(base) or self._proxy(base)
        loop = asyncio.get_running_loop()
        limit = deadline - loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.post(
                    url, data=body, headers=headers, timeout=timeout, proxy=proxy[0], proxy_auth=proxy[1]
                )
        except aiohttp.ConnectionTimeoutError:
            # Nothing was sent: as safe to retry as a refused connection.
            raise UpstreamFailure("connect", f"no connection within {timeout.sock_connect:g}s") from None
        except TimeoutError:
            raise UpstreamFailure("timeout", f"no response headers within {max(limit, 0):.3g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamFailure("connect", f"cannot connect ({exc.os_error.strerror or exc})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure("connect", f"connection failed ({type(exc).__name__})") from None
        if response.status >= 400:
            try:
                raise await _status_failure(response, deployment.api_key)
            finally:
                response.release()
        return response

    def _proxy(self, api_base: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
        found = proxy_for(api_base)
        auth = aiohttp.BasicAuth(found.username, found.password or "") if found and found.username else None
        entry = self._proxies[api_base] = (found.url if found else None, auth)
        return entry


class PassthroughStream:
    """An upstream SSE stream relayed event by event, with the gateway's bookkeeping on the side."""

    def __init__(self, response: aiohttp.ClientResponse, call: UpstreamCall, started: float, deadline: float):
        self.summary = Summary()
        self._response = response
        self._call = call
        self._started = started
        self._deadline = deadline

    async def aclose(self) -> None:
        # close(), not release(): an unfinished stream must not go back into the pool.
        self._response.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[bytes]:
        timeouts = self._call.deployment.timeouts
        loop = asyncio.get_running_loop()
        strip_usage = not self._call.include_usage
        decoder = SSEDecoder()
        summary = self.summary
        content = self._response.content
        first = True
        try:
            first_by = self._deadline
            if timeouts.first_token is not None:
                first_by = min(first_by, self._started + timeouts.first_token)
            while True:
                if first:
                    limit = first_by
                else:
                    gap = timeouts.idle
                    limit = self._deadline if gap is None else min(self._deadline, loop.time() + gap)
                try:
                    async with asyncio.timeout_at(limit):
                        chunk = await content.readany()
                except TimeoutError:
                    what = "the first token" if first else "the next chunk"
                    raise UpstreamFailure("timeout", f"stalled waiting for {what}") from None
                if not chunk:
                    break
                out = []
                parsed = []
                for data in decoder.feed(chunk):
                    if data == b"[DONE]":
                        continue  # sent by us once the stream is known to be complete
                    event = _parse_chunk(data)
                    summary.read_chunk(event)
                    if strip_usage and not event.get("choices") and event.get("usage"):
                        continue  # the usage chunk we asked for on the client's behalf
                    line = b"data: " + data + b"\n\n"
                    out.append(line)
                    parsed.append((line, event))
                if out:
                    if first:
                        summary.time_to_first_chunk = loop.time() - self._started
                        first = False
                    block = b"".join(out) if len(out) > 1 else out[0]
                    summary.last_block, summary.last_events = block, parsed
                    yield block
        except aiohttp.ClientError as exc:
            raise UpstreamFailure("stream_cut", f"the stream broke ({type(exc).__name__})") from None
        finally:
            self._response.close()
            # The relayed block's parsed events are for the relay only. Kept, they would live as long
            # as the request's record: with tracing on, until the export thread builds its spans,
            # which then freed ~20 parsed chunks per stream long after they had left the CPU cache
            # (bench/telemetry_threads.py --stream: x0.84 -> x0.88 against metrics alone).
            summary.last_block, summary.last_events = None, []
        if not summary.finish_reasons:
            raise UpstreamFailure("stream_cut", "the stream ended before a finish reason")
        yield DONE_EVENT


def _forward_body(call: UpstreamCall) -> bytes:
    """The client's body for this deployment; re-encoded only when something must change."""
    body = call.body
    swap = body.get("model") != call.deployment.upstream_model
    ask_usage = call.stream and not call.include_usage
    if not swap and not ask_usage:
        return call.raw
    changed = dict(body)
    changed["model"] = call.deployment.upstream_model
    if ask_usage:
        changed["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(changed)


def _parse_object(body: bytes, call: UpstreamCall) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamFailure("bad_response", "the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise UpstreamFailure("bad_response", "the body is not a JSON object")
    return parsed


def _parse_chunk(data: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamFailure("bad_response", "a stream chunk is not JSON") from None
    if not isinstance(event, dict):
        raise UpstreamFailure("bad_response", "a stream chunk is not a JSON object")
    error = event.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamFailure("stream_cut", f"the upstream reported an error mid-stream: {message}")
    return event


def _embedding_usage(usage: dict[str, Any]) -> Usage:
    return Usage(input_tokens=int(usage.get("prompt_tokens") or 0))


async def _status_failure(response: aiohttp.ClientResponse, api_key: str | None) -> UpstreamFailure:
    """An upstream error status as a failure, with the upstream's own message when it sent one."""
    try:
        raw = await response.content.read(_ERROR_BODY_LIMIT)
    except (TimeoutError, aiohttp.ClientError):
        raw = b""
    message, code, param, error_type = f"HTTP {response.status}", None, None, None
    try:
        parsed = orjson.loads(raw)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code") if isinstance(error.get("code"), str) else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
            error_type = error.get("type") if isinstance(error.get("type"), str) else None
        elif isinstance(error, str):
            message = error
    except orjson.JSONDecodeError:
        text = raw[:200].decode("utf-8", "replace").strip()
        if text:
            message = text
    known = (api_key,) if api_key else ()
    return UpstreamFailure(
        "status",
        scrub_secrets(message, known),
        status=response.status,
        retry_after=parse_retry_after(response.headers),
        code=code,
        param=param,
        error_type=error_type,
    )
