"""Providers that do not speak the OpenAI API (Anthropic, Bedrock, Vertex, ...) through litellm.

The only module that imports litellm, and it does so lazily: a gateway whose deployments are all
OpenAI-compatible never loads it (it costs seconds and a large share of the memory budget). Nothing
here sets `litellm.*` globals; every call carries its own parameters. litellm's exceptions become
`UpstreamFailure`s, and its response objects become OpenAI JSON.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import orjson

from gateway.errors import UpstreamFailure, scrub_secrets
from gateway.providers.base import DONE_EVENT, JsonReply, Summary, UpstreamCall, Usage, parse_retry_after

# Request fields the adapter passes itself; every other OpenAI field goes to litellm as it came.
_OWN_FIELDS = {"model", "messages", "stream", "stream_options", "input"}


def _load_litellm() -> ModuleType:
    # litellm fetches its price map from the network at import unless told not to; the gateway
    # must start offline and deterministically, so the bundled map is used.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class LitellmProvider:
    def __init__(self) -> None:
        self._litellm: ModuleType | None = None

    def _lib(self) -> ModuleType:
        if self._litellm is None:
            self._litellm = _load_litellm()
        return self._litellm

    def preload(self) -> None:
        """Import litellm now (at startup) rather than on the first request."""
        self._lib()

    async def aclose(self) -> None:
        return None

    def _params(self, call: UpstreamCall) -> dict[str, Any]:
        deployment = call.deployment
        params: dict[str, Any] = dict(deployment.extra_params)
        params.update((k, v) for k, v in call.body.items() if k not in _OWN_FIELDS)
        params["model"] = deployment.upstream_model
        params["timeout"] = call.timeout
        params["num_retries"] = 0  # retries are the router's job
        if deployment.api_base:
            params["api_base"] = deployment.api_base
        if deployment.api_key:
            params["api_key"] = deployment.api_key
        if call.traceparent is not None:
            params["extra_headers"] = {**(params.get("extra_headers") or {}), "traceparent": call.traceparent}
        return params

    async def chat(self, call: UpstreamCall) -> JsonReply:
        params = self._params(call)
        try:
            response = await self._lib().acompletion(messages=call.body.get("messages"), **params)
        except Exception as exc:
            raise self._translate(exc, call) from None
        body = _openai_completion(_to_dict(response))
        summary = Summary()
        summary.read_completion(body)
        return JsonReply(orjson.dumps(body), summary)

    async def chat_stream(self, call: UpstreamCall) -> LitellmStream:
        params = self._params(call)
        params["stream_options"] = {"include_usage": True}
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + call.timeout
        first_token = call.deployment.timeouts.first_token
        # Time to first token runs from the request, as on the pass-through path.
        first_by = deadline if first_token is None else min(deadline, started + first_token)
        try:
            async with asyncio.timeout_at(first_by):
                stream = await self._lib().acompletion(messages=call.body.get("messages"), stream=True, **params)
        except TimeoutError:
            raise UpstreamFailure("timeout", "stalled waiting for the first token") from None
        except Exception as exc:
            raise self._translate(exc, call) from None
        return LitellmStream(stream, call, self._translate, first_by, deadline)

    async def embeddings(self, call: UpstreamCall) -> JsonReply:
        params = self._params(call)
        try:
            response = await self._lib().aembedding(input=call.body.get("input"), **params)
        except Exception as exc:
            raise self._translate(exc, call) from None
        body = _to_dict(response)
        usage = body.get("usage") or {}
        summary = Summary(response_model=body.get("model"), usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0)))
        return JsonReply(orjson.dumps(body), summary)

    def _translate(self, exc: BaseException, call: UpstreamCall) -> UpstreamFailure:
        """litellm's exception classes, by name, as the gateway's failure kinds."""
        if isinstance(exc, UpstreamFailure):
            return exc
        lib = self._lib()
        known = (call.deployment.api_key,) if call.deployment.api_key else ()
        message = scrub_secrets(str(getattr(exc, "message", None) or exc), known)
        # litellm prefixes messages with its own class path; the reader wants the provider's words.
        message = message.split(" - ", 1)[-1] if message.startswith("litellm.") else message
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        retry_after = parse_retry_after(response.headers) if response is not None and hasattr(response, "headers") else None
        if isinstance(exc, lib.exceptions.ContextWindowExceededError):
            return UpstreamFailure("status", message, status=400, code="context_length_exceeded")
        if isinstance(exc, lib.exceptions.Timeout):
            return UpstreamFailure("timeout", message)
        if isinstance(exc, lib.exceptions.APIConnectionError):
            return UpstreamFailure("connect", message)
        if isinstance(status, int) and status >= 400:
            return UpstreamFailure("status", message, status=status, retry_after=retry_after)
        return UpstreamFailure("bad_response", message)


class LitellmStream:
    def __init__(
        self, stream: Any, call: UpstreamCall, translate: Any, first_by: float, deadline: float
    ) -> None:
        self.summary = Summary()
        self._stream = stream
        self._call = call
        self._translate = translate
        # Loop times: the first chunk must come by `first_by`, every chunk by `deadline`, and
        # no two chunks further apart than the deployment's idle timeout.
        self._first_by = first_by
        self._deadline = deadline

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # closing a half-read provider stream must not mask the real outcome
                pass

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        include_usage = self._call.include_usage
        idle = self._call.deployment.timeouts.idle
        loop = asyncio.get_running_loop()
        items = aiter(self._stream)
        limit = self._first_by
        try:
            while True:
                try:
                    async with asyncio.timeout_at(limit):
                        item = await anext(items)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    what = "the first token" if limit == self._first_by else "the next chunk"
                    raise UpstreamFailure("timeout", f"stalled waiting for {what}") from None
                limit = self._deadline if idle is None else min(self._deadline, loop.time() + idle)
                chunk = _openai_chunk(_to_dict(item))
                self.summary.read_chunk(chunk)
                if not chunk.get("choices"):
                    if not include_usage or not chunk.get("usage"):
                        continue
                elif not include_usage:
                    chunk.pop("usage", None)
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        except UpstreamFailure:
            raise
        except Exception as exc:
            failure = self._translate(exc, self._call)
            raise UpstreamFailure("stream_cut", failure.message) from None
        if not self.summary.finish_reasons:
            raise UpstreamFailure("stream_cut", "the stream ended before a finish reason")
        yield DONE_EVENT


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped = obj.model_dump(exclude_none=False)
    # litellm adds its own bookkeeping fields; the client gets OpenAI's shape.
    for private in ("_hidden_params", "_response_ms"):
        dumped.pop(private, None)
    return dumped  # type: ignore[no-any-return]


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _openai_completion(body: dict[str, Any]) -> dict[str, Any]:
    """litellm's object in OpenAI's exact shape: no stray nulls, and the nullable fields it requires."""
    clean: dict[str, Any] = _drop_none(body)
    for choice in clean.get("choices") or ():
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", None)
        message = choice.setdefault("message", {})
        message.setdefault("content", None)
        message.setdefault("refusal", None)
    return clean


def _openai_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = _drop_none(chunk)
    for choice in clean.get("choices") or ():
        choice.setdefault("finish_reason", None)
        choice.setdefault("delta", {})
    return clean
