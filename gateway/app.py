"""The app factory: builds every component from the runtime config and wires the HTTP routes.

No module globals: everything a request touches is created here (or in the lifespan, for what must
live inside the event loop) and passed explicitly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.admin_deployments import DeploymentsApi
from gateway.api.chat import ChatApi
from gateway.api.dashboard import Dashboard
from gateway.api.embeddings import EmbeddingsApi
from gateway.api.health import HealthApi
from gateway.api.models import ModelsApi
from gateway.api.oversight import OversightApi
from gateway.api.sessions import SessionsApi
from gateway.api.traces import TracesApi
from gateway.api.translated import ANTHROPIC_MESSAGES, OPENAI_RESPONSES, TranslatedChatApi
from gateway.auth import Authenticator
from gateway.config.runtime import RuntimeConfig
from gateway.errors import (
    ANTHROPIC_PATHS,
    GatewayError,
    GovernanceUnavailable,
    InternalError,
    InvalidRequest,
    NotFound,
    render_error,
    scrub_secrets,
)
from gateway.governance import Governance
from gateway.keys.resolver import KeyResolverMiddleware
from gateway.middleware import ErrorBoundaryMiddleware, RequestIdMiddleware
from gateway.pipeline import Pipeline
from gateway.policies.approvals import Approvals
from gateway.policies.audit import VerdictAudit
from gateway.policies.engine import PolicyEngine
from gateway.policies.holds import HoldDesk
from gateway.policies.pauses import Pauses
from gateway.policies.pending import PendingHolds
from gateway.policies.stage import PolicyStage
from gateway.policies.webhook import WebhookAnnouncer
from gateway.providers import Providers
from gateway.routing.capacity import Capacity
from gateway.routing.router import Router
from gateway.routing.shared_cooldowns import StoreCooldowns
from gateway.sessions.service import SessionBusy, Sessions
from gateway.stop_signal import on_stop_signal
from gateway.store import StoreUnavailable, open_store
from gateway.telemetry import Telemetry, TelemetryMiddleware

log = logging.getLogger("lockgate")


def create_app(config: RuntimeConfig, *, span_exporter: Any = None) -> FastAPI:
    """`span_exporter` (an OpenTelemetry SDK SpanExporter) receives every span; tests pass an in-memory one."""
    telemetry = Telemetry(config, span_exporter=span_exporter)
    # Durable state shared by governance, approvals and sessions; opened lazily, never at import.
    store = open_store(config.store.url, timeout=config.store.timeout)
    governance = Governance.create(config, store)
    authenticator = Authenticator(config, governance.key_cache)
    providers = Providers.create(config)
    # 429 cooldowns live in the store, so every replica sharing it keeps away from a rate-limited deployment.
    # Deployment rpm/tpm are counted in the store too: a capacity is shared by every replica.
    capacity = Capacity(store, (d for group in config.groups.values() for d in group.deployments))
    router = Router(
        config, providers, cooldowns=StoreCooldowns(store, config.router.cooldown_refresh), capacity=capacity
    )
    policies = PolicyStage(PolicyEngine(config.policies))
    pipeline = Pipeline(
        authenticator, router, config.router.timeout, budgets=governance.budgets, policies=policies
    )
    started = {"providers": False}
    traces = TracesApi(pipeline, telemetry.settings, config.server.max_body_bytes)
    approvals = Approvals(store, config.approvals)
    pauses = Pauses(store)
    policies.attach(HoldDesk(approvals, pauses, WebhookAnnouncer(config.approvals.webhooks)), VerdictAudit(governance.audit))
    pending = PendingHolds(approvals, telemetry.metrics.set_pending_holds) if telemetry.metrics else None
    if pending is not None and telemetry.prometheus is not None:
        telemetry.prometheus.before_scrape.append(pending.refresh)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Held requests answer as soon as a stop is asked for, not when the grace period runs out.
        undo_stop_signal = on_stop_signal(asyncio.get_running_loop(), policies.stop_waiting)
        await governance.start()
        await providers.start(config)
        await traces.start()
        started["providers"] = True
        if pending is not None:
            pending.start(min(telemetry.settings.metrics_export_interval, 15.0))
        log.info(telemetry.describe())
        # Everything built so far lives as long as the process: move it out of the collector's
        # sight, so a full collection under load scans only request garbage (measured in
        # bench/README.md: full-collection pauses dropped from ~200 ms to ~15 ms).
        gc.collect()
        gc.freeze()
        # A young collection every 700 allocations ran hundreds of times a second under load, each
        # scanning the live requests' objects; every 20,000 keeps request garbage short-lived and
        # cost about 25 us less CPU per request (bench/run.py A/B, noisy machine: see the note).
        gc.set_threshold(20_000, 20, 100)
        if not config.auth_enabled:
            log.warning("no master_key and no keys configured: the gateway accepts requests without a key")
        try:
            yield
        finally:
            undo_stop_signal()
            started["providers"] = False
            if pending is not None:
                await pending.aclose()
            await providers.aclose()
            await traces.aclose()
            await policies.aclose()
            await capacity.drain()  # settlements in flight, while the store is still open
            await governance.aclose()  # closes the store too
            await asyncio.to_thread(telemetry.shutdown)

    app = FastAPI(title="Lockgate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=_NO_FASTAPI_TELEMETRY)
    # Telemetry hooks `router.breakers.listeners`; tests read breaker states through it.
    app.state.router = router
    if telemetry.metrics is not None:
        router.breakers.listeners.append(telemetry.metrics.breaker_transition)
    app.state.store = store
    chat = ChatApi(pipeline, config.server.max_body_bytes)
    embeddings = EmbeddingsApi(pipeline, config.server.max_body_bytes)
    messages = TranslatedChatApi(pipeline, config.server.max_body_bytes, ANTHROPIC_MESSAGES)
    responses = TranslatedChatApi(pipeline, config.server.max_body_bytes, OPENAI_RESPONSES)
    models = ModelsApi(config, authenticator)
    health = HealthApi(lambda: dict(started))

    # Plain Starlette routes: the hot path skips FastAPI's parameter machinery it does not use.
    for prefix in ("/v1", ""):
        app.router.add_route(f"{prefix}/chat/completions", chat.create, methods=["POST"])
        app.router.add_route(f"{prefix}/embeddings", embeddings.create, methods=["POST"])
        app.router.add_route(f"{prefix}/responses", responses.create, methods=["POST"])
        app.router.add_route(f"{prefix}/models", models.list, methods=["GET"])
        app.router.add_route(f"{prefix}/models/{{model_id:path}}", models.retrieve, methods=["GET"])
    app.router.add_route("/v1/messages", messages.create, methods=["POST"])  # Anthropic's API: /v1 only
    app.router.add_route("/healthz", health.healthz, methods=["GET"])
    app.router.add_route("/readyz", health.readyz, methods=["GET"])
    for path, endpoint, methods in governance.routes():
        app.router.add_route(path, endpoint, methods=methods)
    for path, endpoint, methods in OversightApi(authenticator, approvals, pauses).routes():
        app.router.add_route(path, endpoint, methods=methods)
    for path, endpoint, methods in DeploymentsApi(governance.guard, config, router).routes():
        app.router.add_route(path, endpoint, methods=methods)
    for path, endpoint, methods in Dashboard().routes():
        app.router.add_route(path, endpoint, methods=methods)
    SessionsApi(pipeline, Sessions(store, governance.audit), config.server.max_body_bytes, approvals).install(app)
    app.router.add_route("/v1/traces", traces.export, methods=["POST"])
    if telemetry.prometheus is not None:
        app.router.add_route("/metrics", telemetry.prometheus.handle, methods=["GET"])

    secrets = config.secrets()
    _install_error_handlers(app, secrets)
    # Added innermost first: RequestId -> Telemetry -> KeyResolver -> ErrorBoundary -> routes.
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(KeyResolverMiddleware, authenticator=authenticator, cache=governance.key_cache)
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)  # inside RequestIdMiddleware: sees the id
    app.add_middleware(RequestIdMiddleware, access_log=config.server.access_log)
    return app


# FastAPI's own OpenTelemetry hooks: Lockgate writes its own SERVER span and HTTP metrics, so these
# would only duplicate them under a global provider, and even idle they asked the global providers
# on every request whether they were configured (about 3% of the gateway's CPU under py-spy).
_NO_FASTAPI_TELEMETRY: Any = {
    "tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False,
}


def _install_error_handlers(app: FastAPI, secrets: tuple[str, ...]) -> None:
    def respond(request: Request, error: GatewayError, status: int | None = None) -> Response:
        if secrets:
            error.message = scrub_secrets(error.message, secrets)
        anthropic = request.scope["path"] in ANTHROPIC_PATHS
        own_status, body, headers = render_error(error, anthropic=anthropic)
        return Response(body, status_code=status or own_status, media_type="application/json", headers=headers)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return respond(request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return respond(request, NotFound(f"Unknown path: {request.method} {request.url.path}."))
        if exc.status_code == 405:  # 405, not the error class's 400
            error = InvalidRequest(f"{request.method} is not allowed on {request.url.path}.")
            return respond(request, error, 405)
        return respond(request, InvalidRequest(str(exc.detail)))

    async def unexpected(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "?")
        log.exception("unexpected error in request %s", rid)
        return respond(
            request, InternalError(f"The gateway hit an unexpected error (request {rid}). It has been logged.")
        )

    async def store_down(request: Request, exc: Exception) -> Response:
        # Any route (admin, oversight, sessions) while the store is down: a clear 503 to retry, never a 500.
        if isinstance(exc, SessionBusy):
            message = "Other writers kept changing this session's state; try again."
        else:
            message = (f"The gateway's store is unreachable, so {request.method} {request.url.path} cannot be "
                       f"served right now: {exc}")
        return respond(request, GovernanceUnavailable(message, retry_after=1.0))

    app.add_exception_handler(StoreUnavailable, store_down)
    app.add_exception_handler(SessionBusy, store_down)
    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


CONFIG_ENV = "LOCKGATE_CONFIG"


def create_app_from_env() -> FastAPI:
    """uvicorn's factory for `lockgate serve`: the config path arrives in LOCKGATE_CONFIG (per worker)."""
    from gateway.config.loader import load_config

    config = load_config(os.environ[CONFIG_ENV])
    for warning in config.warnings:
        log.warning("config: %s", warning)
    return create_app(config)
