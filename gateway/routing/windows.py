"""Context windows: how many input tokens a deployment takes, and a cheap estimate of a prompt's size.

A window comes from the deployment's `model_info.max_input_tokens`, else from litellm's bundled
model map (`model_prices_and_context_window_backup.json`). The map is read as a JSON file, without
importing litellm (which costs seconds and much memory), lazily and at most once: only when a group
with a context-window fallback has a deployment whose window the config does not give.

The prompt estimate is deliberately low (about four characters per token), so a prompt that fits is
never sent away; one that does not fit after all is caught by the upstream's context-length error,
which the router also turns into the context-window fallback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.config.runtime import Deployment, ModelGroup

MAP_FILE = "model_prices_and_context_window_backup.json"
_CHARS_PER_TOKEN = 4

ModelMap = dict[str, Any]


def load_litellm_map() -> ModelMap:
    """litellm's model map, found through its package location; empty when litellm is absent."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for location in spec.submodule_search_locations:
        path = Path(location) / MAP_FILE
        if path.is_file():
            parsed = orjson.loads(path.read_bytes())
            return parsed if isinstance(parsed, dict) else {}
    return {}


class ContextWindows:
    """Input-token limits of the deployments that need one, resolved at startup."""

    def __init__(
        self, deployments: Iterable[Deployment], load_map: Callable[[], ModelMap] = load_litellm_map
    ):
        self._load_map = load_map
        self._map: ModelMap | None = None
        self._by_id: dict[str, int] = {}
        for deployment in deployments:
            window = deployment.max_input_tokens or self._from_map(deployment)
            if window:
                self._by_id[deployment.id] = window
        # Every window is resolved: the map (thousands of entries, tens of MB as objects) can go.
        self._map = None

    def get(self, deployment_id: str) -> int | None:
        return self._by_id.get(deployment_id)

    def _from_map(self, deployment: Deployment) -> int | None:
        if self._map is None:
            self._map = self._load_map()
        name = deployment.upstream_model
        for key in (name, f"{deployment.provider}/{name}", name.rpartition("/")[2]):
            entry = self._map.get(key)
            if isinstance(entry, dict):
                for field in ("max_input_tokens", "max_tokens"):
                    value = entry.get(field)
                    if isinstance(value, int) and value > 0:
                        return value
        return None


def could_exceed(raw: bytes, window: int) -> bool:
    """Cheap pre-check: a body this small cannot hold more than `window` tokens by our estimate."""
    return len(raw) > window * _CHARS_PER_TOKEN


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A low estimate of the prompt's tokens: the characters of its text over four."""
    chars = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return chars // _CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class TooLong:
    """The prompt is estimated over some deployments' context windows."""

    tokens: int
    # Deployments whose window the prompt does not fit.
    small: frozenset[str]
    # Every deployment of the chain's first group is too small: go straight to the fallback.
    skip_primary: bool


def check_prompt(
    windows: ContextWindows,
    groups: Mapping[str, ModelGroup],
    chain: Sequence[str],
    raw: bytes,
    body: dict[str, Any],
) -> TooLong | None:
    """Which deployments of the chain's groups the prompt is too long for, if any."""
    sized = [(d.id, w) for g in chain for d in groups[g].deployments if (w := windows.get(d.id))]
    if not any(could_exceed(raw, w) for _, w in sized):
        return None
    tokens = estimate_prompt_tokens(body)
    small = frozenset(i for i, w in sized if tokens > w)
    if not small:
        return None
    return TooLong(tokens, small, all(d.id in small for d in groups[chain[0]].deployments))
