"""The projector: folds every event of the topic into `bucket_jobs`, checkpointing in Postgres.

It reads all partitions without a consumer group: its position is the checkpoint table,
written in the same transaction as the rows, so a crash can neither skip nor repeat an event.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError

from services.projector import store
from services.projector.batch import apply_batch
from shared.db import make_engine, make_sessionmaker
from shared.dead_letter import park
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.lifecycle import wait_or_stop
from shared.settings import Settings

log = logging.getLogger(__name__)
CONSUMER_NAME = "projector"


async def _caught_up(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def run(settings: Settings, stop: asyncio.Event, *, until_caught_up: bool = False) -> None:
    """Project until `stop` is set, or (replay) until every partition reached its end offset."""
    topic = settings.bucket_events_topic
    await ensure_topics(settings)
    engine = make_engine(settings, pool_size=2)
    sessions = make_sessionmaker(engine)
    consumer = make_consumer(settings, max_partition_fetch_bytes=4 * 1024 * 1024)
    appender = Appender(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await appender.partitions_for(topic)]
        consumer.assign(partitions)
        async with sessions() as session:
            positions = await store.read_checkpoints(session, topic)
        for tp in partitions:
            consumer.seek(tp, positions.get(tp.partition, 0))
        targets = await consumer.end_offsets(partitions) if until_caught_up else {}
        stats = {"applied": 0, "unknown": 0, "parked": 0}
        started = time.monotonic()
        while not stop.is_set():
            if until_caught_up and await _caught_up(consumer, targets):
                break
            fetched = await consumer.getmany(timeout_ms=200, max_records=2000)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            try:
                async with sessions() as session, session.begin():
                    outcome = await apply_batch(session, topic, records, positions)
                    for record, error in outcome.malformed:
                        await park(
                            appender, settings.dead_letter_topic, record, error, CONSUMER_NAME
                        )
            except (SQLAlchemyError, KafkaError, OSError) as exc:
                log.warning("projection batch failed; retrying", extra={"error": str(exc)})
                for tp in fetched:
                    consumer.seek(tp, positions.get(tp.partition, 0))
                await wait_or_stop(stop, 1.0)
                continue
            positions.update(outcome.checkpoints)
            for partition, offset in outcome.rewind.items():
                log.info(
                    "checkpoint moved back; rewinding",
                    extra={"partition": partition, "offset": offset},
                )
                positions[partition] = offset
                consumer.seek(TopicPartition(topic, partition), offset)
            stats["applied"] += outcome.applied
            stats["unknown"] += outcome.skipped_unknown
            stats["parked"] += len(outcome.malformed)
        elapsed = time.monotonic() - started
        log.info("projector stopped", extra={**stats, "seconds": round(elapsed, 3)})
    finally:
        await consumer.stop()
        await appender.stop()
        await engine.dispose()


async def replay(settings: Settings, stop: asyncio.Event) -> None:
    """Stop-the-world rebuild: empty the read model, then fold the whole log again."""
    engine = make_engine(settings, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await store.truncate(session)
    finally:
        await engine.dispose()
    await run(settings, stop, until_caught_up=True)
