"""Creating, reading, changing and revoking virtual keys; every change is audited.

Changes are compare-and-set on the key's document, so two admins editing one key cannot lose each
other's change silently: the second gets a conflict and retries on the fresh record.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.audit.trail import AuditTrail
from gateway.errors import InvalidRequest, NotFound
from gateway.keys.cache import KeyCache
from gateway.keys.records import (
    ID_LENGTH,
    NAMESPACE,
    KeyCreate,
    KeyUpdate,
    hash_secret,
    new_record,
    new_secret,
    public_view,
    status,
)
from gateway.store import Doc, Store, VersionConflict

_CAS_RETRIES = 5


class KeyRegistry:
    def __init__(self, store: Store, cache: KeyCache, audit: AuditTrail, known_models: set[str]) -> None:
        self._store = store
        self._cache = cache
        self._audit = audit
        self._models = known_models

    def _check_models(self, models: list[str] | None) -> None:
        for i, model in enumerate(models or ()):
            if model not in self._models:
                raise InvalidRequest(f"No model group is named '{model}'.", param=f"models[{i}]")

    async def create(self, spec: KeyCreate, actor: str) -> tuple[str, dict[str, Any]]:
        """A new key: returns the secret (shown once) and the stored record."""
        self._check_models(spec.models)
        secret = new_secret()
        digest = hash_secret(secret)
        now = time.time()
        record = new_record(spec, digest, now, actor)
        await self._store.doc_put(NAMESPACE, digest, record, now, expect_version=0)
        self._cache.invalidate(digest)
        await self._audit.record(actor, "key.create", f"key:{record['id']}", "", _audited(record))
        return secret, self._view(record, now)

    async def list(self, *, team: str | None = None, include_revoked: bool = False) -> list[dict[str, Any]]:
        now = time.time()
        docs = await self._store.doc_list(NAMESPACE, now, limit=100_000)
        out = []
        for doc in docs:
            if team is not None and doc.value.get("team") != team:
                continue
            if not include_revoked and doc.value.get("revoked_at") is not None:
                continue
            out.append(self._view(doc.value, now))
        return out

    async def _doc(self, key_id: str) -> Doc:
        key_id = key_id.removeprefix("vk-")
        if len(key_id) != ID_LENGTH or any(c not in "0123456789abcdef" for c in key_id):
            raise NotFound(f"No key has the id '{key_id}'.")
        docs = await self._store.doc_list(NAMESPACE, time.time(), prefix=key_id, limit=2)
        if not docs:
            raise NotFound(f"No key has the id '{key_id}'.")
        return docs[0]

    async def get(self, key_id: str) -> dict[str, Any]:
        return self._view((await self._doc(key_id)).value, time.time())

    async def update(self, key_id: str, patch: KeyUpdate, actor: str) -> dict[str, Any]:
        changes = patch.model_dump(mode="json", exclude_unset=True)
        self._check_models(changes.get("models"))
        return await self._change(key_id, actor, "key.update", "", lambda r: r.update(changes), changes)

    async def revoke(self, key_id: str, actor: str, reason: str) -> dict[str, Any]:
        now = time.time()

        def revoke(record: dict[str, Any]) -> None:
            if record.get("revoked_at") is None:
                record.update(revoked_at=now, revoked_reason=reason or None)

        return await self._change(key_id, actor, "key.revoke", reason, revoke, {})

    async def _change(
        self, key_id: str, actor: str, action: str, reason: str, apply: Any, details: Any
    ) -> dict[str, Any]:
        for _ in range(_CAS_RETRIES):
            doc = await self._doc(key_id)
            record = dict(doc.value)
            apply(record)
            try:
                await self._store.doc_put(NAMESPACE, doc.key, record, time.time(), expect_version=doc.version)
            except VersionConflict:
                continue
            self._cache.invalidate(doc.key)
            await self._audit.record(actor, action, f"key:{record['id']}", reason, details)
            return self._view(record, time.time())
        raise InvalidRequest(f"The key '{key_id}' is being changed concurrently; try again.")

    @staticmethod
    def _view(record: dict[str, Any], now: float) -> dict[str, Any]:
        return {**public_view(record), "status": status(record, now)}


def _audited(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("name", "team", "user", "models", "budgets", "rpm", "tpm", "expires_at")}
