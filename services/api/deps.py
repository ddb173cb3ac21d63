"""Every FastAPI dependency of the routes: the process's resources, request headers, JSON bodies.

The resources are created by the app's lifespan (`app.py`) and kept on `app.state`; a route
names what it needs by one of the `Annotated` types below, never by reading `app.state`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status

from services.api.api_keys import KeyRing
from services.api.live import JobWatch
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.schemas import Problem
from services.api.webhook_store import WebhookStore
from shared.settings import Settings


# Dependencies are `async def`: FastAPI runs plain `def` ones in a thread pool, a thread hop
# per dependency per request (measured in docs/benchmarks.md).
async def event_log(request: Request) -> LogClient:
    client: LogClient = request.app.state.event_log
    return client


async def read_model(request: Request) -> ReadModel:
    reads: ReadModel = request.app.state.reads
    return reads


async def job_watch(request: Request) -> JobWatch:
    watch: JobWatch = request.app.state.live
    return watch


async def webhook_store(request: Request) -> WebhookStore:
    store: WebhookStore = request.app.state.webhooks
    return store


async def key_ring(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


async def settings(request: Request) -> Settings:
    current: Settings = request.app.state.settings
    return current


async def json_body(content_type: Annotated[str, Header()] = "") -> None:
    """Bodies are JSON only: anything else is refused before it is parsed."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
        )


EventLog = Annotated[LogClient, Depends(event_log)]
Reads = Annotated[ReadModel, Depends(read_model)]
Watch = Annotated[JobWatch, Depends(job_watch)]
Store = Annotated[WebhookStore, Depends(webhook_store)]
Config = Annotated[Settings, Depends(settings)]
Keys = Annotated[KeyRing, Depends(key_ring)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key and same body: the same job is returned instead of a new one.",
    ),
]
# The OpenAPI answer of every route that needs Postgres or Kafka.
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "a dependency is down; see Retry-After"}
}
