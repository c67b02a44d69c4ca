"""Identifiers made on the request path (request ids, trace ids, reservations): unique and cheap.

They come from the `random` module (seeded from the OS at start, reseeded in a forked child), not
from `os.urandom`: that is a system call, and it releases the GIL, which on the event loop is a
chance for the span export thread to take it mid-request. py-spy showed the loop's time piling up
at those calls with tracing on; replacing them moved that wait elsewhere rather than removing it
(bench/telemetry_threads.py: no change beyond noise), but the ids are cheaper this way and no
request-path call hands the GIL over any more. None of these ids is a secret (they appear in
headers, logs and traces); key secrets still come from `secrets`, approval ids from `os.urandom`.
"""

from __future__ import annotations

import random

_bits = random.getrandbits


def hex_id(prefix: str, nbytes: int) -> str:
    """`prefix` and `nbytes` random bytes in lower-case hex (`2 * nbytes` digits)."""
    return prefix + (_bits(nbytes * 8) | 1 << nbytes * 8).to_bytes(nbytes + 1, "big").hex()[2:]
