"""The one way to reach the log: producer/consumer factories with safe defaults, topic setup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2

from shared.events import CONTENT_TYPE_HEADER, Event, encode, record_key
from shared.settings import Settings
from shared.tracing import record_headers

log = logging.getLogger(__name__)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """Durable by default: every write waits for all in-sync replicas, retries are idempotent."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "request_timeout_ms": int(settings.append_timeout_s * 1000) + 2000,
        "metadata_max_age_ms": _metadata_max_age_ms(settings),
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
        # a group's leader that sees new partitions in it rebalances the group
        "metadata_max_age_ms": _metadata_max_age_ms(settings),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def _metadata_max_age_ms(settings: Settings) -> int:
    return int(settings.kafka_metadata_refresh_s * 1000)


async def ensure_topics(settings: Settings) -> int:
    """Create the event topic (infinite retention: it is the system of record) and its DLQ,
    with TOPIC_REPLICATION_FACTOR replicas and `min_insync_replicas` of them acknowledging
    each write; never change an existing one. The event topic's partition count, logged as
    an error when it is not TOPIC_PARTITIONS (`partition_count_problem`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={
                    "retention.ms": "-1",
                    "min.insync.replicas": str(settings.min_insync_replicas),
                },
            )
            for name in (settings.bucket_events_topic, settings.dead_letter_topic)
        ]
        response = await admin.create_topics(wanted)
        for name, code, *rest in response.topic_errors:
            if code == 0:
                log.info("created topic", extra={"topic": name})
            elif code != TopicAlreadyExistsError.errno:
                raise for_code(code)(f"cannot create topic {name}: {rest[0] if rest else code}")
        found = await _partition_count(admin, settings.bucket_events_topic)
    finally:
        await admin.close()
    problem = partition_count_problem(settings, found)
    if problem is not None:
        log.error(problem, extra={"topic": settings.bucket_events_topic, "partitions": found})
    return found


async def _partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    for described in await admin.describe_topics([topic]):
        if described["topic"] == topic and described["error_code"] == 0:
            return len(described["partitions"])
        if described["topic"] == topic:
            code = described["error_code"]
            raise for_code(code)(f"cannot describe topic {topic}: error {code}")
    raise KafkaError(f"topic {topic} was not described")


def partition_count_problem(settings: Settings, found: int) -> str | None:
    """Why `found` partitions on the event topic is wrong, or None when it is TOPIC_PARTITIONS.

    Records are placed by murmur2(bucket name) mod the partition count, so another count
    moves names to other partitions: a name's new events land behind its old ones elsewhere,
    and per-name order and the executor's per-partition ownership check no longer hold."""
    wanted = settings.topic_partitions
    if found == wanted:
        return None
    return (
        f"topic {settings.bucket_events_topic!r} has {found} partitions but TOPIC_PARTITIONS is "
        f"{wanted}. The gateway never changes an existing topic's partition count: records are "
        "placed by the bucket name's hash modulo the count, so a changed count moves names to "
        "other partitions and breaks per-name order and the executor's ownership check. For "
        "more partitions, create a new topic and copy the log into it, re-keyed in log order "
        '(docs/operations.md, "More partitions"); if the topic is as intended, set '
        f"TOPIC_PARTITIONS={found}."
    )


class Appender:
    """The one way to write to the log: a producer started on first use and replaced after any
    failed write, so an idempotent producer wedged by a broker outage (out-of-order sequence
    numbers, unknown producer id) heals by itself once the broker is back."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self._settings)
                try:
                    await producer.start()
                except BaseException:
                    await _stop_quietly(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _replace(self, failed: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is failed:
                self._producer = None
                await _stop_quietly(failed)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Write one record and wait for the broker's acknowledgement: (partition, offset).
        Into `partition` if given, else where the key's hash puts it."""
        producer = await self._ready()
        try:
            meta = await producer.send_and_wait(
                topic, value, key=key, headers=list(headers), partition=partition
            )
        except (KafkaError, OSError):
            await self._replace(producer)
            raise
        return meta.partition, meta.offset

    async def append(
        self, topic: str, event: Event, partition: int | None = None
    ) -> tuple[int, int]:
        """Write one event, keyed by its bucket name (into `partition` if given); inside a span
        its record carries the span's `traceparent`."""
        headers = [CONTENT_TYPE_HEADER, *record_headers()]
        return await self.send(topic, encode(event), record_key(event), headers, partition)

    async def partitions_for(self, topic: str) -> list[int]:
        producer = await self._ready()
        return sorted(await producer.partitions_for(topic))

    async def ping(self) -> None:
        """Raise unless a broker answers a metadata request now."""
        producer = await self._ready()
        await producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await _stop_quietly(self._producer)
                self._producer = None


async def _stop_quietly(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    try:
        await client.stop()
    except Exception:  # stopping a client that never connected can fail; nothing to undo
        log.debug("client stop failed", exc_info=True)


def partition_for(bucket_name: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a bucket name."""
    return int(murmur2(bucket_name.encode()) & 0x7FFFFFFF) % partitions
