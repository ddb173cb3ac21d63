"""A benchmark-only twin of `POST /buckets` that touches neither Kafka nor Postgres.

Mounted only when `BENCH_NOOP_ROUTE=true` (never in a default deployment). It takes the same
body, headers and validation as `POST /buckets` and answers the same 202 shape, so the accept
benchmark can measure the web layer's own ceiling on the same server and settings.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response, status

from services.api.deps import IdempotencyKey, json_body
from services.api.schemas import CreateBucket, JobAccepted
from shared.fold import JobStatus

PATH = "/bench/noop/buckets"
router = APIRouter(include_in_schema=False)


@router.post(
    PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    dependencies=[Depends(json_body)],
)
async def accept_nothing(
    body: CreateBucket, response: Response, idempotency_key: IdempotencyKey = None
) -> JobAccepted:
    job_id = uuid.uuid4()
    response.headers["Location"] = f"/buckets/jobs/{job_id}"
    return JobAccepted(job_id=job_id, bucket_name=body.bucket_name, status=JobStatus.QUEUED)
