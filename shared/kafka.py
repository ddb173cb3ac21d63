"""The one way to reach the log: producer/consumer factories with safe defaults, topic setup."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from shared.events import CONTENT_TYPE_HEADER, Event, encode, record_key
from shared.settings import Settings

log = logging.getLogger(__name__)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """Durable by default: every write waits for all in-sync replicas, retries are idempotent."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "request_timeout_ms": int(settings.append_timeout_s * 1000) + 2000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """Offsets are committed by our code only, never in the background."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(settings: Settings) -> None:
    """Create the event topic (infinite retention: it is the system of record) and its DLQ."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        for name in (settings.bucket_events_topic, settings.dead_letter_topic):
            topic = NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={"retention.ms": "-1"},
            )
            try:
                await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue
            log.info("created topic", extra={"topic": name})
    finally:
        await admin.close()


async def append(producer: AIOKafkaProducer, topic: str, event: Event) -> tuple[int, int]:
    """Append one event and wait for the broker's acknowledgement: (partition, offset)."""
    meta = await producer.send_and_wait(
        topic, encode(event), key=record_key(event), headers=[CONTENT_TYPE_HEADER]
    )
    return meta.partition, meta.offset


def partition_for(bucket_name: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a bucket name."""
    return int(murmur2(bucket_name.encode()) & 0x7FFFFFFF) % partitions
