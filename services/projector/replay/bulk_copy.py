"""The bulk phase of a replay: read partitions from offset 0, fold them keeping only open jobs
in memory (`bulk_fold.py`), COPY each batch's finished rows into the staging table as the
batch ends (`resolve.py` turns it into the shadow `bucket_jobs` once every worker is done).

A replay splits the partitions among worker processes (`Workers`), each with its own
consumer, fold and COPY stream into the staging table. Every event about one bucket name is in
one partition, so partitions fold independently. With one worker it all runs in the replay's
own process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized

from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.projector.errors import BulkLoadStopped
from services.projector.replay import resolve
from services.projector.replay.bulk_fold import OFFSET_BITS, BulkFold
from services.projector.replay.shadow import SHADOW_SCHEMA
from shared.consume import (
    ConsumerName,
    ConsumeStats,
    DeadLetters,
    Record,
    Refused,
    SortedBatch,
    unapplicable,
)
from shared.db import make_engine
from shared.kafka import Appender, make_consumer
from shared.settings import Settings

log = logging.getLogger(__name__)

FETCH = {"fetch_max_bytes": 64 * 1024 * 1024, "max_partition_fetch_bytes": 16 * 1024 * 1024}
# Records per fetch, and so the most finished rows held before they are COPYed.
FETCH_RECORDS = 20_000


@dataclass
class BulkResult:
    positions: dict[int, int] = field(default_factory=dict)
    stats: ConsumeStats = field(default_factory=ConsumeStats)
    jobs: int = 0

    def merge(self, other: BulkResult) -> None:
        self.positions.update(other.positions)
        self.stats.add(other.stats)
        self.jobs += other.jobs


def _fold_records(
    fold: BulkFold, records: list[Record], batch: SortedBatch, refused: list[Refused]
) -> None:
    """Fold a fetched batch; add the events the fold cannot apply, and why, to `refused`.
    One call per batch, not per record: this loop runs millions of times."""
    add = fold.add
    base = records[0].partition << OFFSET_BITS if records else 0
    for record, event in batch.read(records):
        problem = add(event, base | record.offset)
        if problem is not None:
            refused.append((record, unapplicable(problem)))


async def _column_types(conn: AsyncConnection) -> list[int]:
    """The type oid of each COPY column of the staging table, in COPY order: binary COPY
    (a fifth of text COPY's CPU, on both sides) needs the exact types."""
    rows = await conn.execute(
        text(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = "
            "to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": f"{SHADOW_SCHEMA}.{resolve.STAGED}"},
    )
    oids = {name: int(oid) for name, oid in rows}
    return [oids[column] for column in resolve.staged_columns()]


async def load(
    settings: Settings,
    partitions: list[int],
    targets: Mapping[int, int],
    advance: Callable[[int], None],
    stopped: Callable[[], bool],
    fetch_records: int = FETCH_RECORDS,
) -> BulkResult:
    """Fold `partitions` from offset 0 to at least `targets` into the staging table."""
    # Millions of small acyclic objects: the cyclic collector's default thresholds would
    # rescan the growing heap over and over for nothing.
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
    topic = settings.bucket_events_topic
    result = BulkResult(positions={p: 0 for p in partitions})
    fold = BulkFold()
    columns = ", ".join(resolve.staged_columns())
    engine = make_engine(settings, pool_size=1)
    appender = Appender(settings)
    dead_letters = DeadLetters(
        appender, settings.dead_letter_topic, ConsumerName.REPLAY, result.stats
    )
    consumer = make_consumer(settings, **FETCH)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        for p in partitions:
            consumer.seek(TopicPartition(topic, p), 0)
        async with engine.connect() as conn:
            await conn.execute(text("SET statement_timeout = 0"))
            await conn.execute(text("SET LOCAL synchronous_commit = off"))
            types = await _column_types(conn)
            pg = (await conn.get_raw_connection()).driver_connection
            assert pg is not None
            async with (
                pg.cursor() as cursor,
                cursor.copy(
                    f"COPY {SHADOW_SCHEMA}.{resolve.STAGED} ({columns}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(types)
                while any(result.positions[p] < targets.get(p, 0) for p in partitions):
                    if stopped():
                        raise BulkLoadStopped()
                    fetched = await consumer.getmany(timeout_ms=500, max_records=fetch_records)
                    count = 0
                    batch = SortedBatch()
                    refused: list[Refused] = []
                    for records in fetched.values():
                        _fold_records(fold, records, batch, refused)
                        count += len(records)
                        result.positions[records[-1].partition] = records[-1].offset + 1
                    await dead_letters.park_all(batch.malformed)
                    await dead_letters.park_all(refused)
                    for row in fold.take_finished():
                        await copy.write_row(row)
                    result.stats.count(batch, count)
                    advance(count)
                for row in fold.take_open():
                    await copy.write_row(row)
            await conn.commit()
        result.jobs = fold.rows
        return result
    finally:
        await consumer.stop()
        await appender.stop()
        await engine.dispose()


# Worker processes -----------------------------------------------------------------------------


def _worker(
    settings: Settings,
    partitions: list[int],
    targets: dict[int, int],
    done: Synchronized[int],
    results: multiprocessing.Queue[BulkResult],
    parent: int,
    fetch_records: int,
) -> None:
    from shared.log_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    def advance(events: int) -> None:
        with done.get_lock():
            done.value += events

    # A worker whose replay died (SIGKILL) stops at its next batch instead of writing on.
    result = asyncio.run(
        load(
            settings,
            partitions,
            targets,
            advance,
            lambda: os.getppid() != parent,
            fetch_records,
        )
    )
    results.put(result)


class Workers:
    """Bulk-load workers, one process per share of the partitions."""

    def __init__(
        self,
        settings: Settings,
        shares: list[list[int]],
        targets: dict[int, int],
        fetch_records: int = FETCH_RECORDS,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.done: Synchronized[int] = context.Value("q", 0)
        self._results: multiprocessing.Queue[BulkResult] = context.Queue()
        self._procs: list[BaseProcess] = [
            context.Process(
                target=_worker,
                args=(
                    settings,
                    share,
                    targets,
                    self.done,
                    self._results,
                    os.getpid(),
                    fetch_records,
                ),
                name=f"replay-bulk-{i}",
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]
        self._collected: list[BulkResult] = []

    def start(self) -> None:
        for proc in self._procs:
            proc.start()

    def poll(self) -> bool:
        """True when every worker has delivered its result; raises when one died without."""
        while True:
            try:
                self._collected.append(self._results.get_nowait())
            except queue.Empty:
                break
        if len(self._collected) == len(self._procs):
            return True
        for proc in self._procs:
            if proc.exitcode not in (None, 0):
                raise RuntimeError(f"bulk worker {proc.name} exited with {proc.exitcode}")
        return False

    def result(self) -> BulkResult:
        total = BulkResult()
        for part in self._collected:
            total.merge(part)
        return total

    def kill(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        for proc in self._procs:
            proc.join(5)

    def join(self) -> None:
        for proc in self._procs:
            proc.join(30)


def shares(partitions: list[int], workers: int) -> list[list[int]]:
    """Partitions dealt round-robin to at most `workers` non-empty shares."""
    count = max(1, min(workers, len(partitions)))
    return [partitions[i::count] for i in range(count)]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
