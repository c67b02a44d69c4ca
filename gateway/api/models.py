"""`GET /v1/models` and `GET /v1/models/{id}`: the model groups this caller may use."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import json_response
from gateway.auth import Authenticator
from gateway.config.runtime import RuntimeConfig
from gateway.errors import ModelNotFound


class ModelsApi:
    def __init__(self, config: RuntimeConfig, authenticator: Authenticator) -> None:
        self._auth = authenticator
        self._created = int(time.time())
        self._models = {name: self._entry(name) for name in config.groups}

    def _entry(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self._created, "owned_by": "lockgate"}

    async def list(self, request: Request) -> Response:
        principal = self._auth.authenticate(request.headers)
        data = [m for name, m in self._models.items() if self._auth.visible(principal, name)]
        return json_response(orjson.dumps({"object": "list", "data": data}))

    async def retrieve(self, request: Request) -> Response:
        principal = self._auth.authenticate(request.headers)
        model_id = request.path_params["model_id"]
        entry = self._models.get(model_id)
        if entry is None or not self._auth.visible(principal, model_id):
            raise ModelNotFound(f"The model '{model_id}' does not exist on this gateway.", param="model")
        return json_response(orjson.dumps(entry))
