"""HTTP routes: validate, call one function, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from services.api import intake, live
from services.api.lane_health import degraded, lane_health
from services.api.log_client import LogClient, LogUnavailable
from services.api.read_model import ReadModel
from services.api.schemas import (
    BucketPage,
    CreateBucket,
    Health,
    Job,
    JobAccepted,
    Problem,
    SignerLaneHealth,
)
from shared.settings import Settings

router = APIRouter()


# Dependencies are `async def`: FastAPI runs plain `def` ones in a thread pool, a thread hop
# per dependency per request (measured in docs/benchmarks.md).
async def log_client(request: Request) -> LogClient:
    client: LogClient = request.app.state.log
    return client


async def read_model(request: Request) -> ReadModel:
    reads: ReadModel = request.app.state.reads
    return reads


async def settings(request: Request) -> Settings:
    current: Settings = request.app.state.settings
    return current


async def json_body(content_type: Annotated[str, Header()] = "") -> None:
    """Bodies are JSON only: anything else is refused before it is parsed."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
        )


Log = Annotated[LogClient, Depends(log_client)]
Reads = Annotated[ReadModel, Depends(read_model)]
Config = Annotated[Settings, Depends(settings)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key and same body: the same job is returned instead of a new one.",
    ),
]
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "a dependency is down; see Retry-After"}
}


@router.post(
    "/buckets",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={409: {"model": Problem}, 415: {"model": Problem}, **UNAVAILABLE},
    dependencies=[Depends(json_body)],
)
async def create_bucket(
    body: CreateBucket,
    response: Response,
    log: Log,
    reads: Reads,
    config: Config,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    accepted = await intake.request_bucket(
        log, reads, body.bucket_name, idempotency_key, config.idempotency_projection_wait_s
    )
    response.headers["Location"] = f"/buckets/jobs/{accepted.job_id}"
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return JobAccepted(
        job_id=accepted.job_id, bucket_name=accepted.bucket_name, status=accepted.status
    )


@router.get(
    "/buckets/jobs/{job_id}",
    response_model=Job,
    responses={404: {"model": Problem}, **UNAVAILABLE},
)
async def get_job(job_id: uuid.UUID, log: Log, reads: Reads, config: Config) -> Job:
    job = await intake.find_job(log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get(
    "/buckets/jobs/{job_id}/events",
    response_class=Response,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: one per state of the job (event = status, "
            "data = the job), until it is completed or failed",
        },
        204: {"description": "`Last-Event-ID` is already the job's final state"},
        404: {"model": Problem},
        **UNAVAILABLE,
    },
)
async def job_events(
    job_id: uuid.UUID,
    request: Request,
    log: Log,
    reads: Reads,
    config: Config,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    job = await intake.find_job(log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return live.stream(request.app.state.live, job, last_event_id, config)


@router.get("/buckets", response_model=BucketPage, responses=UNAVAILABLE)
async def list_buckets(
    reads: Reads,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BucketPage:
    items, next_cursor = await reads.buckets(limit, cursor)
    return BucketPage(items=items, next_cursor=next_cursor)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(log: Log, reads: Reads, config: Config) -> JSONResponse:
    checks = {"database": "ok", "log": "ok"}
    lanes: list[SignerLaneHealth] = []
    try:
        await reads.ping()
        lanes = lane_health(await reads.signer_lanes(), config.chain_lane_status_stale_s)
    except Exception:  # any failure means "down" here; the reason is in the logs
        checks["database"] = "down"
    try:
        await log.check()
    except LogUnavailable:
        checks["log"] = "down"
    down = [name for name, state in checks.items() if state != "ok"]
    lagging = degraded(lanes)
    said = "down: " + ", ".join(down) if down else "degraded: " + "; ".join(lagging)
    body = Health(status=said if down or lagging else "ok", checks=checks, lanes=lanes)
    code = status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK
    headers = {"Retry-After": str(config.retry_after_s)} if down else None
    return JSONResponse(body.model_dump(mode="json"), status_code=code, headers=headers)
