"""Providers: the one object per route kind, and the choice of which serves a deployment."""

from __future__ import annotations

from gateway.config.runtime import Deployment, RuntimeConfig
from gateway.providers.base import Provider
from gateway.providers.fake import FakeProvider
from gateway.providers.litellm_adapter import LitellmProvider
from gateway.providers.openai_compat import OpenAICompatProvider


class Providers:
    """Built in the app's lifespan; `for_deployment` is a dict lookup on the hot path."""

    def __init__(self, passthrough: OpenAICompatProvider, litellm: LitellmProvider, fake: FakeProvider) -> None:
        self._by_route: dict[str, Provider] = {"passthrough": passthrough, "litellm": litellm, "fake": fake}
        self.litellm = litellm
        self._passthrough = passthrough

    @classmethod
    def create(cls, config: RuntimeConfig) -> Providers:
        return cls(OpenAICompatProvider(), LitellmProvider(), FakeProvider())

    async def start(self, config: RuntimeConfig) -> None:
        """Open connection pools, and load litellm now if a deployment needs it."""
        await self._passthrough.start()
        if any(d.route == "litellm" for g in config.groups.values() for d in g.deployments):
            self.litellm.preload()

    def for_deployment(self, deployment: Deployment) -> Provider:
        return self._by_route[deployment.route]

    async def aclose(self) -> None:
        for provider in self._by_route.values():
            await provider.aclose()
