"""The projector: folds every event of the topic into `bucket_jobs`, checkpointing in Postgres.

It reads all partitions without a consumer group: its position is the checkpoint table,
written in the same transaction as the rows, so a crash can neither skip nor repeat an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from services.projector import store
from services.projector.errors import ReadModelAhead
from services.projector.metrics import ProjectorMetrics
from services.projector.projection import BATCH_RECORDS, project
from shared import metrics
from shared.consume import ConsumerName, ConsumeStats, DeadLetters
from shared.db import make_engine, make_sessionmaker
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.lifecycle import wait_or_stop
from shared.settings import Settings
from shared.tracing import context_from_headers, link_distinct_traces, span

log = logging.getLogger(__name__)


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


async def follow_new_partitions(
    consumer: AIOKafkaConsumer,
    appender: Appender,
    topic: str,
    assigned: list[TopicPartition],
    positions: Mapping[int, int],
) -> list[TopicPartition]:
    """The topic's partitions now: one added since (docs/operations.md, "More partitions") is
    assigned too, from its checkpoint (0 when none); the others stay where they are. Called
    between batches, so every assigned partition's position is its checkpoint."""
    try:
        found = await appender.partitions_for(topic)
    except (KafkaError, OSError) as exc:
        log.warning("cannot read the topic's partitions; will retry", extra={"error": str(exc)})
        return assigned
    new = sorted(set(found) - {tp.partition for tp in assigned})
    if not new:
        return assigned
    log.error(
        "the topic gained partitions; consuming them (names may have moved partitions: "
        'see docs/operations.md, "More partitions")',
        extra={"topic": topic, "new_partitions": new},
    )
    partitions = [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, positions.get(tp.partition, 0))
    return partitions


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
        registry, settings.metrics_host, settings.projector_metrics_port, ConsumerName.PROJECTOR
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
        stats = ConsumeStats()
        registry.register(
            metrics.ConsumeCollector(ConsumerName.PROJECTOR, lambda: stats, watch.lags)
        )
        dead_letters = DeadLetters(
            appender, settings.dead_letter_topic, ConsumerName.PROJECTOR, stats
        )
        applied = 0
        started = time.monotonic()
        refresh_at = started + settings.kafka_metadata_refresh_s
        while not stop.is_set():
            if time.monotonic() >= refresh_at:
                refresh_at = time.monotonic() + settings.kafka_metadata_refresh_s
                partitions = await follow_new_partitions(
                    consumer, appender, topic, partitions, positions
                )
            fetched = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
            records = [r for batch in fetched.values() for r in batch]
            watch.positions(positions, {tp.partition: consumer.highwater(tp) for tp in partitions})
            if not records:
                continue
            batch_started = time.perf_counter()
            try:
                # One span per batch, linked to each job's trace: a batch is many jobs' write.
                with span("projector.write_batch", attributes={"akave.records": len(records)}) as s:
                    link_distinct_traces(s, (context_from_headers(r.headers) for r in records))
                    async with sessions() as session, session.begin():
                        outcome = await project(session, dead_letters, topic, records, positions)
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
            stats.count(outcome.batch, len(records))
            applied += outcome.applied
            # the lag as of this commit, not as of the fetch before it
            watch.positions(positions, {tp.partition: consumer.highwater(tp) for tp in partitions})
        elapsed = time.monotonic() - started
        log.info(
            "projector stopped",
            extra={**stats.as_dict(), "applied": applied, "seconds": round(elapsed, 3)},
        )
    finally:
        stop_metrics()
        await consumer.stop()
        await appender.stop()
        await engine.dispose()
