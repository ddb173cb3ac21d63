"""How far each reader of the log is behind its end: the projector (its checkpoints in
Postgres) and the consumer groups (their committed offsets in Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from shared.settings import Settings


def behind(ends: Mapping[int, int], reached: Mapping[int, int]) -> dict[int, int]:
    """Records not yet read per partition: the log's end minus the next offset reached."""
    return {p: max(0, end - reached.get(p, 0)) for p, end in sorted(ends.items())}


async def projector_lag(event_log: LogClient, reads: ReadModel) -> dict[int, int]:
    """Per partition; raises `LogUnavailable` or a database error."""
    ends = await event_log.end_offsets()
    return behind(ends, await reads.checkpoints())


async def group_lag(
    settings: Settings, group_id: str, ends: Mapping[int, int]
) -> dict[int, int] | None:
    """Per partition for consumer group `group_id`, or None when Kafka does not answer."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=int(settings.append_timeout_s * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), settings.append_timeout_s)
        committed = await asyncio.wait_for(
            admin.list_consumer_group_offsets(group_id), settings.append_timeout_s
        )
    except (TimeoutError, KafkaError, OSError):
        return None
    finally:
        await admin.close()
    topic = settings.bucket_events_topic
    reached = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    return behind(ends, reached)
