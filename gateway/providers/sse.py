"""Incremental Server-Sent Events decoding: bytes from the network in, `data:` payloads out."""

from __future__ import annotations


class SSEDecoder:
    """Splits a byte stream into events and returns each event's data (comments are dropped)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # A trailing "\r" stays in the buffer, so a "\r\n" split across reads is still normalised.
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        payloads = []
        for event in events:
            data = _event_data(event)
            if data is not None:
                payloads.append(data)
        return payloads

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event (a cut stream leaves them here)."""
        return self._buffer


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the common case: one data line
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in lines)
