"""The projector: folds every event of the topic into `bucket_jobs`, checkpointing in Postgres.

It reads all partitions without a consumer group: its position is the checkpoint table,
written in the same transaction as the rows, so a crash can neither skip nor repeat an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.projector import store
from services.projector.batch import UNAPPLICABLE, BatchOutcome, apply_batch
from services.projector.metrics import ProjectorMetrics
from shared import metrics
from shared.db import make_engine, make_sessionmaker
from shared.dead_letter import park
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.lifecycle import wait_or_stop
from shared.settings import Settings

log = logging.getLogger(__name__)
CONSUMER_NAME = "projector"
BATCH_RECORDS = 2000


async def project(
    sessions: async_sessionmaker[AsyncSession],
    appender: Appender,
    settings: Settings,
    records: Sequence[ConsumerRecord[bytes, bytes]],
    expected: Mapping[int, int],
) -> BatchOutcome:
    """Apply one batch in one transaction and park what cannot be read or applied.

    When the database refuses a row for good (`UNAPPLICABLE`), the batch is rolled back and
    applied again event by event, so only the event it refuses is parked. Other errors
    propagate: the caller retries the batch.
    """
    try:
        return await _project(sessions, appender, settings, records, expected, isolate=False)
    except UNAPPLICABLE as exc:
        log.warning(
            "the database refused a row; applying the batch event by event",
            extra={"error": str(getattr(exc, "orig", exc))[:500]},
        )
    return await _project(sessions, appender, settings, records, expected, isolate=True)


async def _project(
    sessions: async_sessionmaker[AsyncSession],
    appender: Appender,
    settings: Settings,
    records: Sequence[ConsumerRecord[bytes, bytes]],
    expected: Mapping[int, int],
    *,
    isolate: bool,
) -> BatchOutcome:
    topic = settings.bucket_events_topic
    async with sessions() as session, session.begin():
        outcome = await apply_batch(session, topic, records, expected, isolate=isolate)
        for record, error in outcome.malformed:
            await park(appender, settings.dead_letter_topic, record, error, CONSUMER_NAME)
        for record, error in outcome.unapplicable:
            await park(
                appender,
                settings.dead_letter_topic,
                record,
                f"cannot be applied: {error}",
                CONSUMER_NAME,
            )
    return outcome


class ReadModelAhead(RuntimeError):
    """The checkpoints are past the log's end: the read model was folded from another log."""


def refuse_if_ahead(topic: str, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
    """A checkpoint is the next offset to read, so it can never pass the end of its partition.
    If one does, the topic was recreated or truncated under a kept database (e.g. the Kafka
    data was wiped): projecting on would skip the new log's first events and answer 404 for
    its jobs, so stop with the remedy instead."""
    ahead = {p: (at, ends.get(p, 0)) for p, at in positions.items() if at > ends.get(p, 0)}
    if ahead:
        where = ", ".join(
            f"partition {p}: checkpoint {at} > end {end}" for p, (at, end) in ahead.items()
        )
        raise ReadModelAhead(
            f"the read model is ahead of topic {topic!r} ({where}): the topic was recreated or "
            "truncated while the database was kept. Point DATABASE_URL at a new database (or drop "
            "and recreate this one) and run `akave-gateway migrate`; the projector then rebuilds "
            "it from the log."
        )


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Project until `stop` is set."""
    topic = settings.bucket_events_topic
    await ensure_topics(settings)
    engine = make_engine(settings, pool_size=2)
    sessions = make_sessionmaker(engine)
    consumer = make_consumer(settings, max_partition_fetch_bytes=4 * 1024 * 1024)
    appender = Appender(settings)
    registry = CollectorRegistry()
    watch = ProjectorMetrics(registry)
    await consumer.start()
    stop_metrics = metrics.serve(
        registry, settings.metrics_host, settings.projector_metrics_port, CONSUMER_NAME
    )
    try:
        partitions = [TopicPartition(topic, p) for p in await appender.partitions_for(topic)]
        consumer.assign(partitions)
        async with sessions() as session:
            positions = await store.read_checkpoints(session, topic)
        ends = {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}
        refuse_if_ahead(topic, positions, ends)
        for tp in partitions:
            consumer.seek(tp, positions.get(tp.partition, 0))
        stats = {"applied": 0, "unknown": 0, "parked": 0}
        started = time.monotonic()
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
            records = [r for batch in fetched.values() for r in batch]
            watch.positions(positions, {tp.partition: consumer.highwater(tp) for tp in partitions})
            if not records:
                continue
            batch_started = time.perf_counter()
            try:
                outcome = await project(sessions, appender, settings, records, positions)
            except (SQLAlchemyError, KafkaError, OSError) as exc:
                log.warning("projection batch failed; retrying", extra={"error": str(exc)})
                for tp in fetched:
                    consumer.seek(tp, positions.get(tp.partition, 0))
                await wait_or_stop(stop, 1.0)
                continue
            watch.committed(outcome, len(records), time.perf_counter() - batch_started)
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
            stats["parked"] += len(outcome.malformed) + len(outcome.unapplicable)
        elapsed = time.monotonic() - started
        log.info("projector stopped", extra={**stats, "seconds": round(elapsed, 3)})
    finally:
        stop_metrics()
        await consumer.stop()
        await appender.stop()
        await engine.dispose()
