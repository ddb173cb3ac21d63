"""Retrying a failed job: a new job, requested in the log with `retry_of` naming the failed one.

The failed job stays failed (a status never moves backwards; `failed` is terminal). Its retry
is the job `retry_job_id(failed)`, so asking twice names the same job: one retry per failed
job, and a retry that fails is retried in its turn. Which failures may be retried, and why, is
in docs/decisions.md ("Retrying a failed job").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.api.errors import BucketAlreadyCreated, JobNotFound, NotRetryable
from services.api.intake import SOURCE
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.schemas import Job
from shared.error_codes import BUCKET_ALREADY_ON_CHAIN, INVALID_BUCKET_NAME
from shared.events import BucketRequested, new_event
from shared.fold import JobStatus

RETRY_NAMESPACE = uuid.UUID("3d0c6b1e-6a55-4c59-8f5e-2b7f0d6e9a41")
# Failures that no later attempt can heal: the name is refused by the chain's rules, or a
# bucket of that name exists on the chain and is not ours to adopt.
NEVER_HEALS = frozenset({INVALID_BUCKET_NAME, BUCKET_ALREADY_ON_CHAIN})


def retry_job_id(failed: uuid.UUID) -> uuid.UUID:
    """The id of the one retry of `failed`: (failed job id, retry number 1)."""
    return uuid.uuid5(RETRY_NAMESPACE, f"{failed}/retry/1")


@dataclass(frozen=True)
class Retry:
    job_id: uuid.UUID
    bucket_name: str
    status: JobStatus
    retry_of: uuid.UUID
    replayed: bool  # true when the retry existed already (this call appended nothing)


def refusal(job: Job) -> NotRetryable | None:
    """Why `job` may not be retried (ignoring its name's owner, which needs a query)."""
    if job.status is not JobStatus.FAILED:
        return NotRetryable(409, f"job {job.job_id} is {job.status.value}; only failed jobs retry")
    if job.error_code in NEVER_HEALS:
        return NotRetryable(
            422, f"job {job.job_id} failed with {job.error_code}, which a retry cannot heal"
        )
    return None


async def retry_job(
    event_log: LogClient, reads: ReadModel, job_id: uuid.UUID, projection_wait_s: float
) -> Retry:
    """Append the retry of failed job `job_id`, or return the retry it already has.

    Raises `JobNotFound`, `NotRetryable` (409/422) or `BucketAlreadyCreated` (409: another job
    owns the name now, e.g. a failed `bucket_exists` whose owner still holds it)."""
    event_log.raise_if_down()
    new_id = retry_job_id(job_id)
    # One retry of a job at a time across API processes, held until the projection shows the
    # new job, so that a second call finds it (the Idempotency-Key path does the same).
    async with reads.exclusive(f"retry:{job_id}") as held:
        failed = await reads.job(job_id, held)
        if failed is None:
            raise JobNotFound(f"no job {job_id}")
        earlier = await reads.job(new_id, held)
        if earlier is not None:
            return Retry(new_id, earlier.bucket_name, earlier.status, job_id, replayed=True)
        problem = refusal(failed)
        if problem is not None:
            raise problem
        owner = await reads.owner_of(failed.bucket_name, held)
        if owner is not None:
            raise BucketAlreadyCreated(owner)
        event = new_event(
            BucketRequested(job_id=new_id, bucket_name=failed.bucket_name, retry_of=job_id),
            SOURCE,
        )
        partition, offset = await event_log.append(event)
        await reads.wait_until_projected({partition: offset + 1}, projection_wait_s, held)
        return Retry(new_id, failed.bucket_name, JobStatus.QUEUED, job_id, replayed=False)


async def with_retried_by(reads: ReadModel, job: Job) -> Job:
    """`job`, with `retried_by` set when it failed and its retry exists."""
    if job.status is not JobStatus.FAILED:
        return job
    retry = await reads.job(retry_job_id(job.job_id))
    return job if retry is None else job.model_copy(update={"retried_by": retry.job_id})
