"""The end offsets of a topic: compare before and after to prove nothing was appended."""

from __future__ import annotations

from aiokafka import TopicPartition

from shared.kafka import make_consumer
from shared.settings import Settings


async def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    topic = topic or settings.bucket_events_topic
    consumer = make_consumer(settings, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
