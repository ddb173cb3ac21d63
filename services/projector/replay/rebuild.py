"""`akave-gateway replay`: rebuild the read model beside the live one, then swap it in.

1. Take a session-level advisory lock, so only one replay runs (a second one is refused).
2. Create empty shadow tables (`shadow.py`), throwing away what an interrupted replay left.
3. Bulk phase (`bulk_copy.py`): read every partition from offset 0 to the end offset it had at
   the start, fold keeping only open jobs in memory (`bulk_fold.py`), COPY finished rows into
   a staging table as they finish; then resolve repeated requests and name owners in SQL
   (`resolve.py`) into the shadow `bucket_jobs`, write the shadow checkpoints and build the
   keys and indexes.
4. Catch-up phase: project further batches into the shadow tables with the projector's own
   `project` until the shadow checkpoints reach the live projector's.
5. Swap, in one transaction: take the projection lock (the live projector takes it for each
   batch, so it pauses between two batches), apply whatever the live projector applied
   meanwhile, move the live tables out and the shadow tables in. The live projector's next
   batch finds the rebuilt checkpoints and carries on from them.

The live tables are only touched by the swap's transaction, so a replay that dies at any
point leaves them as they were, and the next replay starts again from an empty shadow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.projector import store
from services.projector.batch import BatchOutcome
from services.projector.errors import AnotherReplayRunning, ReplayInterrupted
from services.projector.projection import BATCH_RECORDS, project
from services.projector.replay import bulk_copy, resolve, shadow
from services.projector.replay.progress import Progress
from shared.consume import ConsumerName, ConsumeStats, DeadLetters, Record
from shared.db import make_engine, make_sessionmaker
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.lifecycle import wait_or_stop
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLAY_LOCK = "akave.projector.replay"
SWAP_LOCK_TIMEOUT = "2s"
SWAP_ATTEMPTS = 30
_LOCK_FAILURES = {"55P03", "40P01"}  # lock_not_available, deadlock_detected


@dataclass
class ReplayOptions:
    progress_bar: bool = True
    keep_old: bool = False
    workers: int = field(default_factory=bulk_copy.default_workers)
    fetch_records: int = bulk_copy.FETCH_RECORDS  # records per fetch; small in tests


@dataclass
class _Stats:
    consume: ConsumeStats = field(default_factory=ConsumeStats)
    jobs: int = 0
    resolved: resolve.Resolved = field(default_factory=resolve.Resolved)
    phases: dict[str, float] = field(default_factory=dict)


async def replay(settings: Settings, stop: asyncio.Event, options: ReplayOptions) -> None:
    """Rebuild `bucket_jobs` and `projector_checkpoints` from offset 0 and swap them in."""
    await ensure_topics(settings)
    engine = make_engine(settings, pool_size=2)
    try:
        async with engine.connect() as guard:
            locked = await guard.scalar(
                text("SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"), {"k": REPLAY_LOCK}
            )
            await guard.commit()
            if not locked:
                raise AnotherReplayRunning(REPLAY_LOCK)
            try:
                await _Replay(settings, engine, stop, options).run()
            finally:
                await guard.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": REPLAY_LOCK}
                )
                await guard.commit()
    finally:
        await engine.dispose()


class _Replay:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, stop: asyncio.Event, options: ReplayOptions
    ) -> None:
        self.settings = settings
        self.topic = settings.bucket_events_topic
        self.engine = engine
        self.stop = stop
        self.options = options
        self.appender = Appender(settings)
        self.consumer: AIOKafkaConsumer = make_consumer(settings)
        self.shadow_sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(
            engine.execution_options(schema_translate_map={None: shadow.SHADOW_SCHEMA})
        )
        self.positions: dict[int, int] = {}
        self.stats = _Stats()
        self.dead_letters = DeadLetters(
            self.appender, settings.dead_letter_topic, ConsumerName.REPLAY, self.stats.consume
        )

    async def run(self) -> None:
        started = time.monotonic()
        await self.consumer.start()
        try:
            async with self.engine.connect() as conn:
                live = await shadow.live_schema(conn)
                await shadow.create(conn, live)
                await resolve.create_staging(conn, shadow.SHADOW_SCHEMA)
                await conn.commit()
            partitions = [
                TopicPartition(self.topic, p)
                for p in await self.appender.partitions_for(self.topic)
            ]
            self.positions = {tp.partition: 0 for tp in partitions}
            ends = await self.consumer.end_offsets(partitions)
            targets = {tp.partition: end for tp, end in ends.items()}
            with Progress(sum(targets.values()), bar=self.options.progress_bar) as progress:
                await self._timed("bulk", self._bulk(targets, progress))
                await self._timed("resolve", self._resolve())
                await self._timed("indexes", self._indexes(live))
                old = await self._timed("swap", self._catch_up_and_swap(live, progress))
                progress.log("replay progress")
        except BaseException:
            await self._drop_shadow()
            raise
        finally:
            await self.consumer.stop()
            await self.appender.stop()
        log.info(
            "replay finished",
            extra={
                **self.stats.consume.as_dict(),
                "jobs": self.stats.jobs,
                "repeats_dropped": self.stats.resolved.repeats,
                "names_taken": self.stats.resolved.names_taken,
                "old_tables": old or "dropped",
                "seconds": round(time.monotonic() - started, 3),
                **{f"{k}_s": round(v, 3) for k, v in self.stats.phases.items()},
            },
        )

    async def _timed(self, phase: str, work: Awaitable[T]) -> T:
        began, cpu = time.monotonic(), time.process_time()
        result = await work
        self.stats.phases[phase] = time.monotonic() - began
        self.stats.phases[f"{phase}_cpu"] = time.process_time() - cpu
        return result

    async def _drop_shadow(self) -> None:
        """Best effort after a failure or SIGTERM; the next replay drops it anyway."""
        try:
            async with self.engine.connect() as conn:
                await shadow.drop(conn)
                await conn.commit()
        except Exception:
            log.warning("could not drop the shadow tables", exc_info=True)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise ReplayInterrupted("stopped before the swap; the live tables are as they were")

    async def _bulk(self, targets: dict[int, int], progress: Progress) -> None:
        partitions = sorted(self.positions)
        groups = bulk_copy.shares(partitions, self.options.workers)
        if len(groups) == 1:
            result = await bulk_copy.load(
                self.settings,
                partitions,
                targets,
                progress.advance,
                self.stop.is_set,
                self.options.fetch_records,
            )
        else:
            result = await self._bulk_in_workers(groups, targets, progress)
        self.positions = result.positions
        self.stats.consume.add(result.stats)
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {shadow.SHADOW_SCHEMA}.projector_checkpoints "
                    "(topic, partition, next_offset) VALUES (:t, :p, :o)"
                ),
                [{"t": self.topic, "p": p, "o": o} for p, o in self.positions.items()],
            )
        # The bulk phase read with consumers of its own; carry on from where they stopped.
        self.consumer.assign([TopicPartition(self.topic, p) for p in self.positions])
        for p, offset in self.positions.items():
            self.consumer.seek(TopicPartition(self.topic, p), offset)

    async def _bulk_in_workers(
        self,
        groups: list[list[int]],
        targets: dict[int, int],
        progress: Progress,
    ) -> bulk_copy.BulkResult:
        workers = bulk_copy.Workers(self.settings, groups, targets, self.options.fetch_records)
        workers.start()
        try:
            seen = 0
            while not workers.poll():
                self._check_stop()
                await asyncio.sleep(0.1)
                done = workers.done.value
                progress.advance(done - seen)
                seen = done
            progress.advance(workers.done.value - seen)
            workers.join()
            return workers.result()
        except BaseException:
            workers.kill()
            raise

    async def _resolve(self) -> None:
        log.info("bulk load done; resolving repeated requests and name owners")
        async with self.engine.connect() as conn:
            await conn.execute(text("SET statement_timeout = 0"))
            self.stats.resolved = await resolve.resolve(conn, shadow.SHADOW_SCHEMA)
            await conn.commit()
        self.stats.jobs = self.stats.resolved.rows

    async def _indexes(self, live: str) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SET statement_timeout = 0"))
            await conn.execute(text("SET maintenance_work_mem = '256MB'"))
            await shadow.add_indexes(conn, live)
            await conn.commit()

    async def _live_checkpoints(self, session: AsyncSession, live: str) -> dict[int, int]:
        rows = await session.execute(
            text(
                f"SELECT partition, next_offset FROM {live}.projector_checkpoints WHERE topic = :t"
            ),
            {"t": self.topic},
        )
        return {p: o for p, o in rows}

    def _behind(self, live_positions: dict[int, int]) -> bool:
        return any(self.positions.get(p, 0) < o for p, o in live_positions.items())

    async def _fetch(self) -> list[Record]:
        fetched = await self.consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
        return [r for batch in fetched.values() for r in batch]

    async def _catch_up(self, live: str, progress: Progress) -> None:
        """Apply batches to the shadow tables until they reach the live checkpoints."""
        while True:
            self._check_stop()
            async with self.shadow_sessions() as session:
                live_positions = await self._live_checkpoints(session, live)
            if not self._behind(live_positions):
                return
            records = await self._fetch()
            if records:
                async with self.shadow_sessions() as session, session.begin():
                    outcome = await self._project(session, records)
                self._count(outcome, len(records), progress)

    async def _project(self, session: AsyncSession, records: list[Record]) -> BatchOutcome:
        return await project(session, self.dead_letters, self.topic, records, self.positions)

    def _count(self, outcome: BatchOutcome, records: int, progress: Progress) -> None:
        self.positions.update(outcome.checkpoints)
        self.stats.consume.count(outcome.batch, records)
        progress.advance(records)

    async def _catch_up_and_swap(self, live: str, progress: Progress) -> str | None:
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            await self._catch_up(live, progress)
            committed = dict(self.positions)
            try:
                return await self._swap(live, progress)
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) not in _LOCK_FAILURES:
                    raise
                log.info(
                    "swap waited too long for a lock; catching up and trying again",
                    extra={"attempt": attempt, "error": str(exc.orig)[:300]},
                )
                self.positions = committed
                for p, offset in committed.items():
                    self.consumer.seek(TopicPartition(self.topic, p), offset)
                await wait_or_stop(self.stop, 0.2 * attempt)
        raise RuntimeError(f"could not swap the rebuilt tables in after {SWAP_ATTEMPTS} attempts")

    async def _swap(self, live: str, progress: Progress) -> str | None:
        async with self.shadow_sessions() as session, session.begin():
            await session.execute(text(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            await store.lock_projection(session)
            live_positions = await self._live_checkpoints(session, live)
            while self._behind(live_positions):
                self._check_stop()
                records = await self._fetch()
                if not records:
                    continue
                outcome = await self._project(session, records)
                self._count(outcome, len(records), progress)
            self._check_stop()
            return await shadow.swap(session, live, keep_old=self.options.keep_old)


def main(
    settings: Settings,
    *,
    progress_bar: bool,
    keep_old: bool,
    workers: int | None = None,
    batch_records: int | None = None,
) -> int:
    """The `replay` command: 0 when swapped in, 3 when another replay runs, 1 on failure."""
    from shared.lifecycle import run_service

    options = ReplayOptions(progress_bar=progress_bar, keep_old=keep_old)
    if workers is not None:
        options.workers = workers
    if batch_records is not None:
        if batch_records < 1:
            log.error("replay refused", extra={"reason": "--batch-records must be at least 1"})
            return 2
        options.fetch_records = batch_records
    try:
        run_service(lambda stop: replay(settings, stop, options), restart_on_outage=False)
    except AnotherReplayRunning as exc:
        log.error("replay refused", extra={"reason": str(exc)})
        return 3
    except ReplayInterrupted as exc:
        log.error("replay interrupted", extra={"reason": str(exc)})
        return 1
    return 0
