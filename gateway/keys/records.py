"""What a virtual key is: the admin API's request bodies and the record kept in the store.

The secret is shown once, at creation; the store keeps only its sha256 (the secret is 256 random
bits, so a fast hash is enough). A key's id is the first 16 hex digits of that hash, which lets the
admin API find a key by id with one prefix lookup and never needs the secret again.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.config.governance import BudgetLimit, RateLimit
from gateway.config.runtime import Principal

SECRET_PREFIX = "sk-lg-"
ID_LENGTH = 16
NAMESPACE = "vkeys"


class KeyFields(BaseModel):
    """Fields an admin may set on creation and change later."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    team: str | None = None
    user: str | None = None
    # Model groups the key may call; None (or omitted) means every model.
    models: list[str] | None = None
    budgets: list[BudgetLimit] | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    # Epoch seconds after which the key stops working.
    expires_at: float | None = None
    metadata: dict[str, Any] | None = None


class KeyCreate(KeyFields):
    name: str = Field(min_length=1, max_length=200)


class KeyUpdate(KeyFields):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id(digest: str) -> str:
    return digest[:ID_LENGTH]


def new_record(spec: KeyCreate, digest: str, now: float, actor: str) -> dict[str, Any]:
    record = spec.model_dump(mode="json")
    record.update(id=key_id(digest), created_at=now, created_by=actor, revoked_at=None, revoked_reason=None)
    return record


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the admin API shows it (never the hash)."""
    return {k: v for k, v in record.items() if k != "hash"}


def status(record: dict[str, Any], now: float) -> str:
    if record.get("revoked_at") is not None:
        return "revoked"
    expires = record.get("expires_at")
    if expires is not None and expires <= now:
        return "expired"
    return "active"


def principal_of(record: dict[str, Any]) -> Principal:
    rpm, tpm = record.get("rpm"), record.get("tpm")
    models = record.get("models")
    return Principal(
        name=record["name"],
        team=record.get("team"),
        user=record.get("user"),
        models=frozenset(models) if models else None,
        key_id=record["id"],
        budgets=tuple(BudgetLimit.model_validate(b) for b in record.get("budgets") or ()),
        rate_limit=RateLimit(rpm=rpm, tpm=tpm) if rpm is not None or tpm is not None else None,
        expires_at=record.get("expires_at"),
    )
