"""One job's events, read from the log: the record of what happened, not the read model's
summary of it.

Every event of a bucket name is in the partition its name hashes to (`partition_for`), and a
job's events come after its `BucketRequested`, whose time the read model keeps. So the read
starts at the first record of that partition stamped a minute before the job was created
(`offsets_for_times`; the minute covers producers' clocks) and stops at the job's first
terminal event, the partition's end, or `SCAN_LIMIT` records, whichever comes first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.api.errors import LogUnavailable
from services.api.log_client import LogClient
from services.api.schemas import Job
from shared.errors import MalformedEvent, UnknownEventType
from shared.events import BucketCreated, BucketFailed, Event, decode
from shared.kafka import make_consumer, partition_for
from shared.settings import Settings

SCAN_LIMIT = 100_000
CLOCK_SLACK = timedelta(minutes=1)


@dataclass
class History:
    partition: int
    events: list[tuple[int, Event]] = field(default_factory=list)  # (offset, event)
    scanned: int = 0
    truncated: bool = False  # SCAN_LIMIT records were read before the job's end


async def job_history(event_log: LogClient, settings: Settings, job: Job) -> History:
    """Raises `LogUnavailable`."""
    ends = await event_log.end_offsets()
    partition = partition_for(job.bucket_name, len(ends))
    try:
        return await asyncio.wait_for(
            _read(settings, job, partition, ends[partition]), settings.request_deadline_s
        )
    except (TimeoutError, KafkaError, OSError) as exc:
        raise LogUnavailable(f"the event log did not answer (history): {exc!r}") from exc


async def _read(settings: Settings, job: Job, partition: int, end: int) -> History:
    history = History(partition)
    tp = TopicPartition(settings.bucket_events_topic, partition)
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        consumer.assign([tp])
        since_ms = int((job.created_at - CLOCK_SLACK).timestamp() * 1000)
        found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
        consumer.seek(tp, end if found is None else found.offset)
        while await consumer.position(tp) < end:
            if history.scanned >= SCAN_LIMIT:
                history.truncated = True
                break
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
            for record in batch.get(tp, []):
                if record.offset >= end:
                    break
                history.scanned += 1
                try:
                    event = decode(record.value)
                except (MalformedEvent, UnknownEventType):
                    continue
                if event.job_id != job.job_id:
                    continue
                history.events.append((record.offset, event))
                if isinstance(event.data, BucketCreated | BucketFailed):
                    return history
        return history
    finally:
        await consumer.stop()
