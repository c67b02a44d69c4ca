"""The moment the process is asked to stop (SIGTERM, SIGINT), heard before the server's own handler.

On SIGTERM uvicorn stops taking requests, gives the ones in flight `timeout_graceful_shutdown` to end
and then cancels them; the app hears of the shutdown (its lifespan's end) only after that. Most
requests end well within the grace period, but a request held for a reviewer can wait minutes: a
deploy cut it at the deadline (a JSON client got a 500, a stream broke off) and took the whole grace
period to do so. The app listens to the same signals itself, ahead of the server, so such requests
can answer at once and the server's drain finishes early.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signal(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on `loop` when a stop signal arrives, then the handler that was there before.

    Only where a Python handler is installed already (the server's, so it still shuts down as it
    would) and only on the main thread (the only one Python delivers signals to). Returns the undo.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Callable[[int, FrameType | None], object]] = {}

    def heard(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        previous[signum](signum, frame)

    for sig in _SIGNALS:
        installed = signal.getsignal(sig)
        if callable(installed):
            previous[sig] = installed
            signal.signal(sig, heard)

    def undo() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is heard:
                signal.signal(sig, handler)

    return undo
