"""The executor process: consumes the topic in a consumer group and runs bucket jobs.

On assignment it restores each partition's `PartitionLedger` (who owns which name, which jobs
are unfinished) from the partition's snapshot and reads only the records after its position,
or folds the partition from offset 0 when there is none (`snapshotting.py`); then it runs the
unfinished jobs in log order and every new request as it arrives. A snapshot is written every
EXECUTOR_SNAPSHOT_INTERVAL_S while records arrive, every EXECUTOR_SNAPSHOT_RECORDS records
while catching up, and when a partition is revoked or the executor stops. With a recording
backend (`evm`) no new create is signed from assignment until every partition is live and each
unfinished job's recorded transactions are followed again (`JobRunner.follow`), so a new create
never takes a nonce an earlier one recorded.
Offsets are committed only below the lowest unfinished job, after its outcome event was
acknowledged, so a crash re-runs work instead of losing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry

from services.executor import spans
from services.executor.backends import AkaveBackend, open_backend
from services.executor.backends.evm import EvmBackend
from services.executor.chain.fence import UNFENCED, SignerFence
from services.executor.chain.observer import UNOBSERVED
from services.executor.chain_metrics import ChainMetrics, LaneGauges
from services.executor.errors import SignerFenceLost
from services.executor.job import Job, JobRunner
from services.executor.lane_status import publish_lane_status
from services.executor.ledger import PartitionLedger
from services.executor.scheduler import KeyedScheduler, OffsetTracker
from services.executor.snapshot_store import SnapshotStore
from services.executor.snapshotting import Snapshots
from services.executor.transactions import TransactionGate
from shared import metrics
from shared.consume import ConsumerName, ConsumeStats, DeadLetters, Record, SortedBatch
from shared.db import make_engine
from shared.events import EventData, new_event
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.settings import Settings
from shared.tracing import context_from_traceparent, traceparent_of

log = logging.getLogger(__name__)
SOURCE = "/akave-gateway/executor"
COMMIT_EVERY_S = 1.0


class _Partition:
    """Everything the executor holds for one assigned partition."""

    def __init__(
        self,
        tp: TopicPartition,
        ledger: PartitionLedger,
        position: int,
        catch_up_to: int,
        committed: int,
    ) -> None:
        self.tp = tp
        self.ledger = ledger
        self.tracker = OffsetTracker()
        if position > 0:
            self.tracker.consumed(position - 1)
        self.catch_up_to: int | None = catch_up_to
        self.committed = committed
        self.jobs: set[asyncio.Task[None]] = set()
        self.snapshot_position = position
        self.snapshot_at = time.monotonic()

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
        registry: CollectorRegistry,
        store: SnapshotStore,
    ) -> None:
        self._settings = settings
        self._store = store
        self._snapshots = Snapshots(
            store,
            metrics.counter(metrics.EXECUTOR_SNAPSHOTS, registry),
            metrics.gauge(metrics.EXECUTOR_SNAPSHOT_POSITION, registry),
        )
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
        self.stats = ConsumeStats()
        self.jobs_finished = 0
        self._dead_letters = DeadLetters(
            appender, settings.dead_letter_topic, ConsumerName.EXECUTOR, self.stats
        )
        self._appended = metrics.counter(metrics.EXECUTOR_EVENTS, registry)
        in_flight = metrics.gauge(metrics.EXECUTOR_IN_FLIGHT, registry)
        in_flight.set_function(lambda: self._scheduler.running)

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the log's end (last fetched high watermark) minus the
        committed offset, which stays at the lowest unfinished job."""
        lags = {}
        for part in list(self._partitions.values()):
            end = self._consumer.highwater(part.tp)
            if end is not None:
                lags[part.tp.partition] = end - part.committed
        return lags

    # Rebalance -------------------------------------------------------------------------------

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        mine = [tp for tp in assigned if tp.topic == self._topic]
        if not mine:
            return
        self._runner.creates_open.clear()
        ends = await self._consumer.end_offsets(mine)
        parts = []
        for tp in mine:
            ledger, position = await self._snapshots.restore(tp.partition, ends[tp])
            committed = await self._consumer.committed(tp) or 0
            parts.append(_Partition(tp, ledger, position, ends[tp], committed))
        for part in parts:  # all registered before any goes live: creates stay closed till then
            self._partitions[part.tp.partition] = part
            self._consumer.seek(part.tp, part.snapshot_position)
        for part in parts:
            if part.snapshot_position >= ends[part.tp]:
                self._go_live(part)
        log.info("partitions assigned", extra={"partitions": sorted(t.partition for t in mine)})

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            part = self._partitions.pop(tp.partition, None)
            if part is None:
                continue
            await self._scheduler.cancel(part.jobs)
            await self._commit([part])
            await self._snapshot(part)
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
                await self._consume(part, records)
            for part in list(self._partitions.values()):
                if not part.live and await self._consumer.position(part.tp) >= (
                    part.catch_up_to or 0
                ):
                    self._go_live(part)
            self._backpressure()
            if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
                await self._commit(list(self._partitions.values()))
            for part in list(self._partitions.values()):
                if self._snapshot_due(part):
                    await self._snapshot(part)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Abandon in-flight jobs (their offsets stay uncommitted), commit what finished and
        write each partition's snapshot."""
        await self._scheduler.cancel()
        await self._commit(list(self._partitions.values()))
        for part in list(self._partitions.values()):
            await self._snapshot(part)

    # Snapshots -------------------------------------------------------------------------------

    def _snapshot_due(self, part: _Partition) -> bool:
        behind = part.tracker.position - part.snapshot_position
        if behind >= self._settings.executor_snapshot_records:
            return True
        waited = time.monotonic() - part.snapshot_at >= self._settings.executor_snapshot_interval_s
        return waited and (behind > 0 or bool(part.ledger.recent.jobs))

    async def _snapshot(self, part: _Partition) -> None:
        """The partition's ledger as of everything consumed (and the own events acknowledged,
        which the fold ignores when it reads them again)."""
        position = part.tracker.position
        if position < part.snapshot_position:
            return  # nothing consumed since the restore
        part.snapshot_at = time.monotonic()
        if await self._snapshots.take(part.tp.partition, part.ledger, position):
            part.snapshot_position = position

    async def _consume(self, part: _Partition, records: list[Record]) -> None:
        batch = SortedBatch()
        events = list(batch.read(records))
        await part.ledger.prefetch((event for _, event in events), self._store)
        for record, event in events:
            part.tracker.consumed(record.offset)
            is_new_job = part.ledger.observe(event, record.offset)
            if is_new_job and (parent := traceparent_of(record.headers)) is not None:
                part.ledger.traceparents[event.job_id] = parent
            if is_new_job and part.live:
                state = part.ledger.unfinished[event.job_id]
                self._submit(
                    part, Job(state.job_id, state.bucket_name, state.attempts), record.offset
                )
        part.ledger.forget_known()
        part.tracker.consumed(records[-1].offset)
        for record, error in batch.malformed:
            if record.offset >= part.committed:  # below it, an earlier run parked it already
                await self._dead_letters.park(record, error)
        self.stats.count(batch, len(records))

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
        parent = context_from_traceparent(part.ledger.traceparents.get(job.job_id))

        async def owner_of(name: str) -> uuid.UUID | None:
            return await part.ledger.owner_of(name, self._store)

        async def work() -> None:
            with spans.job(job.job_id, job.bucket_name, parent):
                await self._runner.run(job, lambda data: self._emit(part, data), owner_of)

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
            self.jobs_finished += 1

        part.jobs.add(self._scheduler.submit(job.bucket_name, work, done))

    async def _emit(self, part: _Partition, data: EventData) -> None:
        """Append until the broker acknowledges: the chain work is done and must be recorded.

        Into the partition of the job's request, not where the name's hash puts it now: the
        two differ once partitions were added to the topic, and a job's events must stay in
        the one partition whose ledger folds the job, in order (docs/events.md, "Order")."""
        event = new_event(data, SOURCE)
        delay = 0.2
        while True:
            try:
                await self._appender.append(self._topic, event, part.tp.partition)
                break
            except (KafkaError, OSError) as exc:
                log.warning(
                    "append failed; retrying", extra={"error": str(exc), "job_id": str(data.job_id)}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._appended.labels(event.type).inc()
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
    """With the evm backend, the signer locks of the whole key pool come first: a standby
    waits for them before it joins the consumer group (chain/fence.py), serving its metrics
    meanwhile (`akave_executor_standby` 1)."""
    await ensure_topics(settings)
    evm = settings.akave_backend == "evm"
    fence = (
        SignerFence(settings.database_url, settings.chain_fence_check_timeout_s) if evm else None
    )
    registry = CollectorRegistry()
    observer = ChainMetrics(registry) if evm else UNOBSERVED
    standby = metrics.gauge(metrics.EXECUTOR_STANDBY, registry)
    backend = await open_backend(settings, fence or UNFENCED, observer)
    # Served from here on, a standby included: probes and scrapes see it alive, and
    # `akave_executor_standby` says which role it has.
    stop_metrics = metrics.serve(
        registry, settings.metrics_host, settings.executor_metrics_port, "executor"
    )
    halt = asyncio.Event()
    helpers: list[asyncio.Task[None]] = [asyncio.create_task(_set_when(stop, halt))]
    engine = make_engine(settings, pool_size=1, max_overflow=0) if fence else None
    try:
        if fence is not None and engine is not None:
            assert isinstance(backend, EvmBackend)
            standby.set(1)
            if not await fence.acquire(backend.chain_id, backend.signers, stop):
                return
            standby.set(0)
            registry.register(LaneGauges(backend.status))
            helpers += [
                asyncio.create_task(_set_when(fence.lost, halt)),
                asyncio.create_task(fence.watch(settings.chain_fence_watch_s)),
                asyncio.create_task(
                    publish_lane_status(
                        engine,
                        backend.chain_id,
                        backend.status,
                        settings.chain_lane_status_interval_s,
                    )
                ),
            ]
        await _consume(settings, backend, halt, registry)
    finally:
        stop_metrics()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await backend.close()
        if fence is not None:
            await fence.close()
        if engine is not None:
            await engine.dispose()
    if fence is not None and fence.lost.is_set():
        raise SignerFenceLost("the signer fence was lost; starting again as a standby")


async def _set_when(event: asyncio.Event, then: asyncio.Event) -> None:
    await event.wait()
    then.set()


def _instance_id(backend: AkaveBackend) -> str | None:
    """With the `evm` backend, the group member is the key pool (static membership): only the
    fence holder joins, so the standby that takes the fence over joins as the same member and
    gets the dead holder's partitions at once, without waiting out its session timeout."""
    if not isinstance(backend, EvmBackend):
        return None
    pool = ",".join(sorted(a.lower() for a in backend.signers))
    digest = hashlib.sha256(f"{backend.chain_id}:{pool}".encode()).hexdigest()
    return f"akave-executor-{digest[:16]}"


async def _consume(
    settings: Settings, backend: AkaveBackend, stop: asyncio.Event, registry: CollectorRegistry
) -> None:
    appender = Appender(settings)
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    store = SnapshotStore(engine, settings.bucket_events_topic)
    consumer = make_consumer(
        settings,
        group_id=settings.executor_group_id,
        session_timeout_ms=settings.executor_session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.executor_session_timeout_ms // 3),
        group_instance_id=_instance_id(backend),
    )
    try:
        executor = Executor(settings, backend, consumer, appender, registry, store)
        registry.register(
            metrics.ConsumeCollector(ConsumerName.EXECUTOR, lambda: executor.stats, executor.lag)
        )
        consumer.subscribe([settings.bucket_events_topic], listener=executor)
        await consumer.start()
        try:
            log.info("executor started", extra={"backend": settings.akave_backend})
            await executor.run(stop)
        finally:
            await consumer.stop()
        log.info(
            "executor stopped",
            extra={**executor.stats.as_dict(), "jobs": executor.jobs_finished},
        )
    finally:
        await appender.stop()
        await engine.dispose()
