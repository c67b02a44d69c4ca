"""The `store` config section: short and long forms, the default, and errors that name the path."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config


def test_store_defaults_to_an_embedded_sqlite_file() -> None:
    assert parse_config("{}").store.url == "sqlite:///lockgate.db"


def test_store_accepts_a_url_or_a_section() -> None:
    assert parse_config("store: redis://127.0.0.1:6379/2").store.url == "redis://127.0.0.1:6379/2"
    config = parse_config("store: {url: 'sqlite:////var/lib/lockgate.db', timeout: 0.5}")
    assert (config.store.url, config.store.timeout) == ("sqlite:////var/lib/lockgate.db", 0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("store: postgres://db/x", "store.url: Value error, the store must be 'sqlite:///path' or 'redis://"),
        ("store: {url: 'sqlite:///x.db', tiemout: 1}", "store.tiemout: unknown key; did you mean 'timeout'?"),
    ],
)
def test_store_errors_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert any(p.startswith(expected) for p in error.value.problems), error.value.problems
