"""A partition added to the topic while the projector runs is consumed without a restart
(real Kafka and Postgres)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from shared.events import CONTENT_TYPE_HEADER, BucketRequested, encode, new_event
from shared.settings import Settings
from tests.support.stack import Stack, unique_name


async def test_the_projector_consumes_a_partition_added_while_it_runs(
    base_settings: Settings, tmp_path: Path
) -> None:
    settings = Stack.settings_for(base_settings, topic_partitions=2, kafka_metadata_refresh_s=1.0)
    stack = Stack(settings, tmp_path)
    stack.start("projector")
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    async def append(partition: int) -> uuid.UUID:
        job = uuid.uuid4()
        event = new_event(BucketRequested(job_id=job, bucket_name=unique_name("grown")), "/t")
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.bucket_events_topic,
                encode(event),
                key=event.data.bucket_name.encode(),
                partition=partition,
                headers=[CONTENT_TYPE_HEADER],
            )
        finally:
            await producer.stop()
        return job

    async def projected(job: uuid.UUID) -> None:
        deadline = time.monotonic() + 30
        with psycopg.connect(url, autocommit=True) as db:
            while db.execute("SELECT 1 FROM bucket_jobs WHERE id = %s", (job,)).fetchone() is None:
                stack.assert_alive()
                assert time.monotonic() < deadline, stack.logs("projector")
                await asyncio.sleep(0.3)

    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            deadline = time.monotonic() + 30
            while settings.bucket_events_topic not in await admin.list_topics():
                assert time.monotonic() < deadline, stack.logs("projector")
                await asyncio.sleep(0.2)
            await projected(await append(0))  # the projector runs on its two partitions
            await admin.create_partitions({settings.bucket_events_topic: NewPartitions(3)})
        finally:
            await admin.close()
        await projected(await append(2))  # the new one
        assert "the topic gained partitions" in stack.logs("projector")
    finally:
        stack.stop()
