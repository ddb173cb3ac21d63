"""HTTP routes: validate, call one function, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse

from services.api import intake, live, retries
from services.api.deps import (
    UNAVAILABLE,
    Config,
    EventLog,
    IdempotencyKey,
    Reads,
    Watch,
    json_body,
)
from services.api.health import health_report
from services.api.read_your_writes import find_job
from services.api.schemas import (
    BucketPage,
    CreateBucket,
    Health,
    Job,
    JobAccepted,
    Problem,
    RetryAccepted,
)

router = APIRouter()


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
    event_log: EventLog,
    reads: Reads,
    config: Config,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    accepted = await intake.request_bucket(
        event_log, reads, body.bucket_name, idempotency_key, config.idempotency_projection_wait_s
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
async def get_job(job_id: uuid.UUID, event_log: EventLog, reads: Reads, config: Config) -> Job:
    job = await find_job(event_log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return await retries.with_retried_by(reads, job)


@router.post(
    "/buckets/jobs/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryAccepted,
    responses={
        404: {"model": Problem},
        409: {"model": Problem, "description": "not failed, or another job owns the name"},
        422: {"model": Problem, "description": "malformed id, or a failure no retry can heal"},
        **UNAVAILABLE,
    },
)
async def retry_job(
    job_id: uuid.UUID, response: Response, event_log: EventLog, reads: Reads, config: Config
) -> RetryAccepted:
    """Retry a failed job as a new job (`retry_of` = this one); the same call twice gives the
    same new job."""
    retry = await retries.retry_job(event_log, reads, job_id, config.idempotency_projection_wait_s)
    response.headers["Location"] = f"/buckets/jobs/{retry.job_id}"
    if retry.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return RetryAccepted(
        job_id=retry.job_id,
        bucket_name=retry.bucket_name,
        status=retry.status,
        retry_of=retry.retry_of,
    )


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
    event_log: EventLog,
    reads: Reads,
    watch: Watch,
    config: Config,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    job = await find_job(event_log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return live.stream(watch, job, last_event_id, config)


@router.get("/buckets", response_model=BucketPage, responses=UNAVAILABLE)
async def list_buckets(
    reads: Reads,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BucketPage:
    items, next_cursor = await reads.buckets(limit, cursor)
    return BucketPage(items=items, next_cursor=next_cursor)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(event_log: EventLog, reads: Reads, config: Config) -> JSONResponse:
    """503 when the database or the log is down (the API cannot serve); 200 "degraded" when
    only the projector is behind by more than HEALTH_MAX_PROJECTOR_LAG (reads are late)."""
    report = await health_report(
        event_log, reads, config.health_max_projector_lag, config.chain_lane_status_stale_s
    )
    headers = {"Retry-After": str(config.retry_after_s)} if report.down else None
    code = status.HTTP_503_SERVICE_UNAVAILABLE if report.down else status.HTTP_200_OK
    return JSONResponse(report.body.model_dump(mode="json"), status_code=code, headers=headers)
