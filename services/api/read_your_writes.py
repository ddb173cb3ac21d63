"""Reading a job by id: a job accepted before the read is never answered as unknown."""

from __future__ import annotations

import uuid

from services.api.errors import ProjectionBehind
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.schemas import Job


async def find_job(
    event_log: LogClient, reads: ReadModel, job_id: uuid.UUID, wait_s: float
) -> Job | None:
    """The job, waiting (bounded) for the projection to catch up before saying it is unknown.

    Any job accepted before this call is below the log's current end offsets, so once the
    projector has passed them a missing row really is unknown (read-your-writes).
    """
    job = await reads.job(job_id)
    if job is not None or wait_s <= 0:
        return job
    targets = await event_log.end_offsets()
    if not await reads.wait_until_projected(targets, wait_s):
        raise ProjectionBehind()
    return await reads.job(job_id)
