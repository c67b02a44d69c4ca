"""A client that leaves before the first event is relayed still frees the upstream and the budget."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from gateway.api.streaming import EventStreamResponse


async def test_close_runs_even_when_the_events_never_started() -> None:
    started = asyncio.Event()
    closed: list[str] = []

    async def events():  # type: ignore[no-untyped-def]
        started.set()
        yield b"data: {}\n\n"

    async def on_close() -> None:
        closed.append("upstream released")

    async def receive() -> Message:
        return {"type": "http.disconnect"}  # the client is already gone

    never = asyncio.Event()

    async def send(message: Message) -> None:
        await never.wait()  # a socket that accepts nothing: the disconnect wins the race

    response = EventStreamResponse(events(), on_close=on_close)
    await asyncio.wait_for(response({"type": "http"}, receive, send), timeout=5)

    assert closed == ["upstream released"]
    assert not started.is_set()
