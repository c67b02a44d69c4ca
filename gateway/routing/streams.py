"""An upstream stream after the router committed to it: its outcome reported back exactly once.

Once the first event is in hand the router hands the stream to the pipeline and is gone; the stream's
end (finished, failed mid-way, or abandoned by a disconnecting client) still decides the attempt's
outcome for the breaker, the in-flight count and the attempt record. `TrackedStream` relays the
events untouched and calls `on_end` once, whichever way the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from gateway.errors import UpstreamFailure
from gateway.providers.base import StreamReply, Summary

# Called with the failure that ended the stream (None when it finished) and whether it was abandoned.
OnEnd = Callable[[UpstreamFailure | None, bool], None]


@dataclass(slots=True)
class OpenStream:
    """A stream whose first event has arrived: nothing has reached the client yet."""

    first: bytes
    rest: AsyncIterator[bytes]
    reply: StreamReply

    @property
    def summary(self) -> Summary:
        return self.reply.summary


class TrackedStream:
    """A `StreamReply` that reports how it ended."""

    def __init__(self, reply: StreamReply, events: AsyncIterator[bytes], on_end: OnEnd) -> None:
        self._reply = reply
        self._events = events
        self._on_end: OnEnd | None = on_end
        self._relay: AsyncGenerator[bytes, None] | None = None

    @property
    def summary(self) -> Summary:
        return self._reply.summary

    @summary.setter
    def summary(self, value: Summary) -> None:
        self._reply.summary = value

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._relay is None:
            self._relay = self._run()
        return self._relay

    async def _run(self) -> AsyncGenerator[bytes, None]:
        try:
            async for event in self._events:
                yield event
        except UpstreamFailure as failure:
            self._end(failure, False)
            raise
        except BaseException:
            self._end(None, True)  # cancelled or closed: the client went away
            raise
        self._end(None, False)

    def _end(self, failure: UpstreamFailure | None, abandoned: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(failure, abandoned)

    async def aclose(self) -> None:
        self._end(None, True)
        try:
            if self._relay is not None:
                await self._relay.aclose()
        finally:
            await self._reply.aclose()
