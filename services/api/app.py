"""The FastAPI application: wiring of settings, the log client and the read model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api import errors
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.routes import router
from shared.db import make_engine
from shared.log_setup import configure_logging
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not logging.getLogger().handlers:  # a uvicorn worker process starts unconfigured
        configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings, pool_size=settings.api_db_pool_size, max_overflow=0)
        locks = make_engine(settings)  # idempotency-key locks: see ReadModel
        app.state.settings = settings
        app.state.log = LogClient(settings)
        app.state.reads = ReadModel(
            engine, locks, settings.bucket_events_topic, settings.db_timeout_s
        )
        try:
            yield
        finally:
            await app.state.log.close()
            await engine.dispose()
            await locks.dispose()

    app = FastAPI(
        title="Akave Async Gateway",
        version="0.1.0",
        summary="Create Akave buckets as tracked jobs: answer now, do the chain work behind it.",
        lifespan=lifespan,
    )

    errors.install(app, settings.retry_after_s)
    app.include_router(router)
    if settings.bench_noop_route:
        from services.api import bench_noop

        app.include_router(bench_noop.router)
    return app
