"""Store fixtures: a real SQLite file and the real Redis at 127.0.0.1:6379 under a unique prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.store import Store, open_store

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return f"{REDIS_URL}?prefix={redis_prefix}"


StoreFactory = Callable[[str], Store]


@pytest.fixture
async def store_factory() -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []

    def make(url: str) -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(store_url: str, store_factory: StoreFactory) -> Store:
    made = store_factory(store_url)
    await made.start()
    return made
