"""The FastAPI application: wiring of settings, the log client and the read model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from services.api import errors, http_metrics, openapi_docs
from services.api.access import DOCS_ASSETS_URL, AccessControl
from services.api.api_keys import load_key_ring
from services.api.console.routes import router as console_router
from services.api.deadline import Deadline
from services.api.live import JobWatch
from services.api.log_client import LogClient
from services.api.rate_limit import TokenBuckets
from services.api.read_model import ReadModel
from services.api.request_limits import RequestLimits
from services.api.routes import router
from services.api.webhook_routes import router as webhook_router
from services.api.webhook_store import WebhookStore
from shared.db import make_engine, make_sessionmaker
from shared.log_setup import configure_logging
from shared.settings import Settings
from shared.tracing import start_tracing, tracing_on
from shared.webhook_targets import parse_deny_list


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not logging.getLogger().handlers:  # a uvicorn worker process starts unconfigured
        configure_logging(settings.log_level, settings.log_format)
    parse_deny_list(settings.webhook_deny_targets)  # a bad entry stops start-up, not a request
    stop_tracing = start_tracing(settings, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings, pool_size=settings.api_db_pool_size, max_overflow=0)
        locks = make_engine(settings)  # idempotency-key locks: see ReadModel
        app.state.settings = settings
        app.state.event_log = LogClient(settings)
        app.state.reads = ReadModel(
            engine, locks, settings.bucket_events_topic, settings.db_timeout_s
        )
        app.state.live = JobWatch(
            app.state.reads, settings.live_poll_interval_s, settings.live_max_streams
        )
        app.state.webhooks = WebhookStore(make_sessionmaker(engine), settings.db_timeout_s)
        try:
            yield
        finally:
            await app.state.live.close()
            await app.state.event_log.close()
            await engine.dispose()
            await locks.dispose()
            stop_tracing()

    app = FastAPIOffline(  # /docs and /redoc with their assets served from here, not a CDN
        static_url=DOCS_ASSETS_URL,
        title="Akave Async Gateway",
        version="0.1.0",
        summary="Create Akave buckets as tracked jobs: answer now, do the chain work behind it.",
        lifespan=lifespan,
    )

    errors.install(app, settings.retry_after_s)
    app.add_middleware(
        Deadline, seconds=settings.request_deadline_s, retry_after_s=settings.retry_after_s
    )
    app.include_router(router)
    app.include_router(webhook_router)
    app.include_router(console_router)
    if settings.bench_noop_route:
        from services.api import bench_noop

        app.include_router(bench_noop.router)
    install_protections(app, settings)
    http_metrics.install(app, settings)
    if tracing_on(settings):  # off, not even the middleware: the accept path pays nothing
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="/health,/metrics", exclude_spans=["receive", "send"]
        )
    return app


def install_protections(app: FastAPI, settings: Settings) -> None:
    """App-wide: header and body size limits, then (outermost) API keys and rate limits."""
    keys = load_key_ring(settings.api_keys, settings.api_keys_file)
    app.state.keys = keys  # the console's login checks a key against the same ring
    limiter = (
        TokenBuckets(settings.api_rate_limit_per_s, settings.api_rate_limit_burst)
        if keys.enabled and settings.api_rate_limit_per_s > 0
        else None
    )
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(AccessControl, keys=keys, limiter=limiter)
    openapi_docs.install(
        app,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        keys=keys.enabled,
        rate_limited=limiter is not None,
    )
