"""From the log to the deliveries table: consume the topic in the notifier's consumer group,
record the deliveries of each batch in one transaction, and only then commit its offsets.

A crash between the two re-reads the batch; delivery ids are deterministic and inserted if
absent, so that makes no second delivery (at-least-once intake, exactly-once rows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier import store
from shared.consume import ConsumerName, ConsumeStats, DeadLetters, Record, sort_batch
from shared.kafka import Appender
from shared.lifecycle import wait_or_stop
from shared.settings import Settings
from shared.tracing import traceparent_of

log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        appender: Appender,
        sessions: async_sessionmaker[AsyncSession],
        on_recorded: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._appender = appender
        self._sessions = sessions
        self._on_recorded = on_recorded
        self.stats = ConsumeStats()
        self._committed: dict[TopicPartition, int] = {}
        self.deliveries = 0
        self._dead_letters = DeadLetters(
            appender, settings.dead_letter_topic, ConsumerName.NOTIFIER, self.stats
        )

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the log's end (last fetched high watermark) minus the offset
        this process last committed there."""
        lags = {}
        for tp in list(self._consumer.assignment()):
            end = self._consumer.highwater(tp)
            if end is not None and tp in self._committed:
                lags[tp.partition] = end - self._committed[tp]
        return lags

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            if not fetched:
                continue
            try:
                await self._handle(fetched)
            except (SQLAlchemyError, KafkaError, OSError) as exc:
                log.warning("recording deliveries failed; retrying", extra={"error": str(exc)})
                for tp, records in fetched.items():
                    self._consumer.seek(tp, records[0].offset)
                await wait_or_stop(stop, 1.0)

    async def _handle(self, fetched: dict[TopicPartition, list[Record]]) -> None:
        decoded, batch = sort_batch(r for records in fetched.values() for r in records)
        notified = [(r, e) for r, e in decoded if e.type in store.NOTIFIED_TYPES]
        events = [event for _, event in notified]
        traceparents = {e.id: tp for r, e in notified if (tp := traceparent_of(r.headers))}
        new = 0
        if events:
            async with self._sessions() as session, session.begin():
                new = await store.record_deliveries(session, events, traceparents)
        await self._dead_letters.park_all(batch.malformed)
        self.stats.count(batch, sum(len(records) for records in fetched.values()))
        if new:
            self.deliveries += new
            self._on_recorded()
        offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items()}
        try:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partition: its new owner re-reads these records, harmlessly.
            log.warning("offset commit failed", extra={"error": str(exc)})
