"""The executor process: consumes the topic in a consumer group and runs bucket jobs.

On assignment it reads each partition from offset 0 into a `PartitionLedger` (who owns which
name, which jobs are unfinished), then runs the unfinished jobs in log order and every new
request as it arrives. With a recording backend (`evm`) no new create is signed from assignment
until every partition is live and each unfinished job's recorded transactions are followed
again (`JobRunner.follow`), so a new create never takes a nonce an earlier one recorded.
Offsets are committed only below the lowest unfinished job, after its outcome event was
acknowledged, so a crash re-runs work instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord

from services.executor.backends import AkaveBackend, open_backend
from services.executor.job import Job, JobRunner
from services.executor.ledger import PartitionLedger
from services.executor.scheduler import KeyedScheduler, OffsetTracker
from services.executor.transactions import TransactionGate
from shared.dead_letter import park
from shared.events import EventData, MalformedEvent, UnknownEventType, decode, new_event
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.settings import Settings

log = logging.getLogger(__name__)
SOURCE = "/akave-gateway/executor"
COMMIT_EVERY_S = 1.0


class _Partition:
    """Everything the executor holds for one assigned partition."""

    def __init__(self, tp: TopicPartition, catch_up_to: int, committed: int) -> None:
        self.tp = tp
        self.ledger = PartitionLedger()
        self.tracker = OffsetTracker()
        self.catch_up_to: int | None = catch_up_to
        self.committed = committed
        self.jobs: set[asyncio.Task[None]] = set()

    @property
    def live(self) -> bool:
        return self.catch_up_to is None


class Executor(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        settings: Settings,
        backend: AkaveBackend,
        consumer: AIOKafkaConsumer,
        appender: Appender,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._appender = appender
        self._topic = settings.bucket_events_topic
        self._partitions: dict[int, _Partition] = {}
        self._scheduler = KeyedScheduler()
        self._runner = JobRunner(
            backend,
            TransactionGate(settings.nonce_retry_limit),
            settings,
            asyncio.Semaphore(settings.executor_concurrency),
        )
        self._last_commit = 0.0
        self.stats: Counter[str] = Counter()

    # Rebalance -------------------------------------------------------------------------------

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        mine = [tp for tp in assigned if tp.topic == self._topic]
        if not mine:
            return
        self._runner.creates_open.clear()
        ends = await self._consumer.end_offsets(mine)
        for tp in mine:
            committed = await self._consumer.committed(tp) or 0
            part = _Partition(tp, ends[tp], committed)
            self._partitions[tp.partition] = part
            self._consumer.seek(tp, 0)
            if ends[tp] == 0:
                self._go_live(part)
        log.info("partitions assigned", extra={"partitions": sorted(t.partition for t in mine)})

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            part = self._partitions.pop(tp.partition, None)
            if part is None:
                continue
            await self._scheduler.cancel(part.jobs)
            await self._commit([part])
        if revoked:
            log.info(
                "partitions revoked", extra={"partitions": sorted(t.partition for t in revoked)}
            )

    # Consuming -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                part = self._partitions.get(tp.partition)
                if part is None:
                    continue
                for record in records:
                    await self._consume(part, record)
            for part in list(self._partitions.values()):
                if not part.live and await self._consumer.position(part.tp) >= (
                    part.catch_up_to or 0
                ):
                    self._go_live(part)
            self._backpressure()
            if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
                await self._commit(list(self._partitions.values()))
        await self.shutdown()

    async def shutdown(self) -> None:
        """Abandon in-flight jobs (their offsets stay uncommitted) and commit what finished."""
        await self._scheduler.cancel()
        await self._commit(list(self._partitions.values()))

    async def _consume(self, part: _Partition, record: ConsumerRecord[bytes, bytes]) -> None:
        part.tracker.consumed(record.offset)
        try:
            event = decode(record.value)
        except UnknownEventType as exc:
            self.stats["unknown"] += 1
            log.debug("skipping unknown event type", extra={"type": exc.event_type})
            return
        except MalformedEvent as exc:
            self.stats["malformed"] += 1
            if record.offset >= part.committed:  # below it, an earlier run parked it already
                await park(
                    self._appender, self._settings.dead_letter_topic, record, str(exc), "executor"
                )
            return
        is_new_job = part.ledger.observe(event, record.offset)
        if is_new_job and part.live:
            state = part.ledger.unfinished[event.job_id]
            self._submit(part, Job(state.job_id, state.bucket_name, state.attempts), record.offset)

    def _go_live(self, part: _Partition) -> None:
        part.catch_up_to = None
        pending = part.ledger.pending_in_log_order()
        followed = 0
        for offset, state in pending:
            job = Job(state.job_id, state.bucket_name, state.attempts)
            recorded = part.ledger.signed_attempts(state.job_id)
            if recorded and self._runner.records_transactions:
                try:
                    job = self._runner.follow(job, recorded, lambda d: self._emit(part, d))
                except (LookupError, RuntimeError, ValueError):
                    log.exception(
                        "cannot follow a job's recorded transactions; it stays unfinished",
                        extra={"job_id": str(job.job_id), "bucket_name": job.bucket_name},
                    )
                    continue
                followed += 1
            self._submit(part, job, offset)
        if pending:
            log.info(
                "resuming unfinished jobs",
                extra={"partition": part.tp.partition, "jobs": len(pending), "followed": followed},
            )
        if all(p.live for p in self._partitions.values()):
            self._runner.creates_open.set()

    def _submit(self, part: _Partition, job: Job, offset: int) -> None:
        part.tracker.started(offset)

        async def work() -> None:
            await self._runner.run(job, lambda data: self._emit(part, data), part.ledger.owners.get)

        def done(task: asyncio.Task[None]) -> None:
            part.jobs.discard(task)
            if task.cancelled():
                return
            if task.exception() is not None:
                log.error(
                    "job crashed; it stays unfinished until a restart",
                    exc_info=task.exception(),
                    extra={"job_id": str(job.job_id), "bucket_name": job.bucket_name},
                )
                return
            part.tracker.finished(offset)
            self.stats["jobs"] += 1

        part.jobs.add(self._scheduler.submit(job.bucket_name, work, done))

    async def _emit(self, part: _Partition, data: EventData) -> None:
        """Append until the broker acknowledges: the chain work is done and must be recorded."""
        event = new_event(data, SOURCE)
        delay = 0.2
        while True:
            try:
                await self._appender.append(self._topic, event)
                break
            except (KafkaError, OSError) as exc:
                log.warning(
                    "append failed; retrying", extra={"error": str(exc), "job_id": str(data.job_id)}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        part.ledger.observe(event)

    def _backpressure(self) -> None:
        assigned = [p.tp for p in self._partitions.values()]
        if self._scheduler.running >= self._settings.executor_max_pending:
            self._consumer.pause(*assigned)
        elif self._consumer.paused():
            self._consumer.resume(*assigned)

    async def _commit(self, parts: list[_Partition]) -> None:
        self._last_commit = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        for part in parts:
            target = part.tracker.committable()
            if part.live and target is not None and target != part.committed:
                offsets[part.tp] = target
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("offset commit failed; will retry", extra={"error": str(exc)})
            return
        for part in parts:
            if part.tp in offsets:
                part.committed = offsets[part.tp]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    await ensure_topics(settings)
    backend = await open_backend(settings)
    appender = Appender(settings)
    consumer = make_consumer(
        settings,
        group_id=settings.executor_group_id,
        session_timeout_ms=settings.executor_session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.executor_session_timeout_ms // 3),
    )
    try:
        executor = Executor(settings, backend, consumer, appender)
        consumer.subscribe([settings.bucket_events_topic], listener=executor)
        await consumer.start()
        try:
            log.info("executor started", extra={"backend": settings.akave_backend})
            await executor.run(stop)
        finally:
            await consumer.stop()
        log.info("executor stopped", extra=dict(executor.stats))
    finally:
        await appender.stop()
        await backend.close()
