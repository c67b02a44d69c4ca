"""Durable state: the `Store` protocol and `open_store(url)`, which picks SQLite or Redis by URL.

    sqlite:///relative/path.db   sqlite:////absolute/path.db   sqlite://:memory:
    redis://host:port/db[?prefix=name]   rediss://... (TLS)

See `base.py` for the primitives and what each is for.
"""

from __future__ import annotations

from gateway.store.base import (
    AuditEntry,
    AuditRecord,
    Charge,
    CounterState,
    Doc,
    LeaseResult,
    LeaseUpdate,
    LedgerEntry,
    ReserveResult,
    SettleResult,
    Store,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)

DEFAULT_STORE_URL = "sqlite:///lockgate.db"


def validate_store_url(url: str) -> str:
    """The URL if it names a supported store; otherwise a ValueError saying what is accepted."""
    if url.startswith("sqlite://"):
        if not url[len("sqlite://"):].lstrip("/"):
            raise ValueError("a sqlite store URL needs a path: sqlite:///path/to/lockgate.db")
        return url
    if url.startswith(("redis://", "rediss://", "unix://")):
        return url
    raise ValueError("the store must be 'sqlite:///path' or 'redis://host:port/db'")


def open_store(url: str, timeout: float = 2.0) -> Store:
    validate_store_url(url)
    if url.startswith("sqlite://"):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url, _sqlite_path(url))
    from gateway.store.redis_store import RedisStore

    return RedisStore(url, timeout=timeout)


def store_problem(url: str) -> str | None:
    """Why the store cannot work at all, checked before serving: a SQLite file that cannot be written.
    A Redis that does not answer is not one (it may come back; the gateway degrades meanwhile)."""
    if not url.startswith("sqlite://"):
        return None
    from gateway.store.sqlite import open_problem

    return open_problem(_sqlite_path(url))


def _sqlite_path(url: str) -> str:
    # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db ; sqlite://:memory: -> :memory:
    return url[len("sqlite://"):].removeprefix("/")


__all__ = [
    "DEFAULT_STORE_URL",
    "AuditEntry",
    "AuditRecord",
    "Charge",
    "CounterState",
    "Doc",
    "LeaseResult",
    "LeaseUpdate",
    "LedgerEntry",
    "ReserveResult",
    "SettleResult",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
    "open_store",
    "store_problem",
    "validate_store_url",
]
