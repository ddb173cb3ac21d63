"""Turning a valid request into a `BucketRequested` event on the event log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import BucketAlreadyCreated, IdempotencyKeyReused
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from shared.events import BucketRequested, new_event
from shared.fold import JobStatus

SOURCE = "/akave-gateway/api"
# Job ids of idempotent requests are derived from the key, so a retry names the same job.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1f55-8a53-4f7e-9a59-3c3c0b1f5e21")


@dataclass(frozen=True)
class Accepted:
    job_id: uuid.UUID
    bucket_name: str
    status: JobStatus
    replayed: bool  # true when an earlier request with the same Idempotency-Key made the job
    partition: int = -1
    offset: int = -1


async def request_bucket(
    event_log: LogClient,
    reads: ReadModel,
    bucket_name: str,
    idempotency_key: str | None,
    projection_wait_s: float,
) -> Accepted:
    """Accept a bucket request: refuse names already created, honour idempotency, append."""
    event_log.raise_if_down()  # no database work for a write that cannot be appended
    if idempotency_key is None:
        return await _append_request(event_log, reads, uuid.uuid4(), bucket_name)
    job_id = uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key)
    # One request per key at a time, across API processes, and the lock is held until the
    # projection shows the job: a concurrent retry then finds it instead of racing it. The
    # wait is short, and every query under the lock runs in the lock's own connection: with
    # the projector down, POSTs holding one connection while waiting for another exhausted
    # the pool (found by the fault suite, chaos/).
    async with reads.exclusive(f"idempotency-key:{idempotency_key}") as held:
        earlier = await reads.job(job_id, held)
        if earlier is not None:
            if earlier.bucket_name != bucket_name:
                raise IdempotencyKeyReused(earlier)
            return Accepted(earlier.job_id, bucket_name, earlier.status, replayed=True)
        accepted = await _append_request(event_log, reads, job_id, bucket_name, held)
        await reads.wait_until_projected(
            {accepted.partition: accepted.offset + 1}, projection_wait_s, held
        )
        return accepted


async def _append_request(
    event_log: LogClient,
    reads: ReadModel,
    job_id: uuid.UUID,
    bucket_name: str,
    held: AsyncSession | None = None,
) -> Accepted:
    owner = await reads.owner_of(bucket_name, held)
    if owner is not None:
        raise BucketAlreadyCreated(owner)
    event = new_event(BucketRequested(job_id=job_id, bucket_name=bucket_name), SOURCE)
    partition, offset = await event_log.append(event)
    return Accepted(job_id, bucket_name, JobStatus.QUEUED, False, partition, offset)
