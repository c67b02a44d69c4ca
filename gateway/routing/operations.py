"""What one attempt does with the provider it was routed to: a chat answer, embeddings, or a stream.

The router runs these per attempt; a stream counts as opened (and the attempt as succeeded) only once
its first event has arrived, so a stream that fails before that can still fail over.
"""

from __future__ import annotations

from gateway.errors import UpstreamFailure
from gateway.providers.base import JsonReply, Provider, UpstreamCall
from gateway.routing.streams import OpenStream


async def chat(provider: Provider, call: UpstreamCall) -> JsonReply:
    return await provider.chat(call)


async def embeddings(provider: Provider, call: UpstreamCall) -> JsonReply:
    return await provider.embeddings(call)


async def open_stream(provider: Provider, call: UpstreamCall) -> OpenStream:
    reply = await provider.chat_stream(call)
    events = aiter(reply)
    try:
        first = await anext(events)
    except StopAsyncIteration:
        await reply.aclose()
        raise UpstreamFailure("stream_cut", "the stream ended before its first event") from None
    except BaseException:
        await reply.aclose()
        raise
    return OpenStream(first, events, reply)
