"""The replay's bulk fold and its resolution in SQL: the rows of the plain fold, in bounded
memory.

The fold forgets a job when it finishes; `resolve` (on the test database's PostgreSQL) drops
repeated requests and settles name owners. Rows are handed out every `flush` events, as the
replay does once per fetched batch, so duplicates and late events land after the flush of the
job they belong to.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
import uuid
import zlib
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.projector.replay import resolve
from services.projector.replay.bulk_fold import BulkFold, position
from shared import job_row
from shared.db import make_engine
from shared.error_codes import BUCKET_EXISTS
from shared.events import (
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    Event,
    EventData,
    new_event,
)
from shared.fold import JobState, JobStatus, apply
from shared.settings import Settings
from tests.shared.test_fold import History, histories, signed

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PARTITIONS = 3


def log_of(datas: list[EventData]) -> list[Event]:
    return [
        new_event(d, "/tests/bulk", time=T0 + timedelta(seconds=i)) for i, d in enumerate(datas)
    ]


def reference(events: list[Event]) -> dict[uuid.UUID, JobState]:
    jobs: dict[uuid.UUID, JobState] = {}
    owners: dict[str, uuid.UUID] = {}
    for event in events:
        after = apply(jobs.get(event.job_id), event, owners.get(event.data.bucket_name))
        if after is not None:
            jobs[after.job_id] = after
            if after.status is JobStatus.COMPLETED:
                owners[after.bucket_name] = after.job_id
    return jobs


def fold_staged(events: list[Event], flush: int) -> tuple[list[tuple[object, ...]], list[int]]:
    """The bulk fold's staged rows (taken every `flush` events) and the refused events'
    indexes. Each name's events go to one of `PARTITIONS` partitions, as the key does."""
    fold = BulkFold()
    offsets = [0] * PARTITIONS
    staged: list[tuple[object, ...]] = []
    refused = []
    for i, event in enumerate(events):
        p = zlib.crc32(event.data.bucket_name.encode()) % PARTITIONS
        if fold.add(event, position(p, offsets[p])) is not None:
            refused.append(i)
        offsets[p] += 1
        if (i + 1) % flush == 0:
            staged += fold.take_finished()
    return staged + fold.take_finished() + fold.take_open(), refused


async def _resolved(
    url: str, staged: list[tuple[object, ...]]
) -> tuple[dict[uuid.UUID, JobState], resolve.Resolved]:
    engine = make_engine(Settings(_env_file=None, database_url=url), pool_size=1)  # type: ignore[call-arg]
    schema = f"test_bulk_{uuid.uuid4().hex[:12]}"
    columns = resolve.staged_columns()
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
            await conn.execute(
                text(f"CREATE TABLE {schema}.bucket_jobs (LIKE public.bucket_jobs INCLUDING ALL)")
            )
            await resolve.create_staging(conn, schema)
            if staged:
                await conn.execute(
                    text(
                        f"INSERT INTO {schema}.{resolve.STAGED} ({', '.join(columns)}) "
                        f"VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    [
                        {
                            c: str(v) if c == "status" else v
                            for c, v in zip(columns, row, strict=True)
                        }
                        for row in staged
                    ],
                )
            result = await resolve.resolve(conn, schema)
            rows = await conn.execute(
                text(f"SELECT {', '.join(job_row.COLUMNS)} FROM {schema}.bucket_jobs")
            )
            jobs = {}
            for row in rows:
                values = dict(zip(job_row.COLUMNS, row, strict=True))
                values["job_id"] = values.pop("id")
                values["status"] = JobStatus(values["status"])
                state = JobState(**values)  # type: ignore[arg-type]
                jobs[state.job_id] = state
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            await conn.commit()
        assert result.rows == len(jobs)
        return jobs, result
    finally:
        await engine.dispose()


def bulk(
    url: str, events: list[Event], flush: int = 5
) -> tuple[dict[uuid.UUID, JobState], list[int], resolve.Resolved]:
    staged, refused = fold_staged(events, flush)
    rows, result = asyncio.run(_resolved(url, staged))
    return rows, refused, result


def test_bulk_fold_gives_the_rows_of_the_plain_fold_on_a_shuffled_busy_log(
    database_url: str,
) -> None:
    rng = random.Random(7)
    names = [f"name-{i}" for i in range(40)]  # few names: many jobs contend for each
    jobs = [(uuid.uuid4(), rng.choice(names)) for _ in range(300)]
    datas: list[EventData] = []
    for job, name in jobs:
        datas.append(BucketRequested(job_id=job, bucket_name=name))
        for attempt in range(1, rng.randint(1, 3) + 1):
            datas.append(BucketProcessing(job_id=job, bucket_name=name, attempt=attempt))
        if rng.random() < 0.7:
            datas.append(
                BucketCreated(job_id=job, bucket_name=name, tx_hash=f"{rng.getrandbits(256):064x}")
            )
        else:
            datas.append(
                BucketFailed(job_id=job, bucket_name=name, error="e", error_code="x", attempts=1)
            )
        if rng.random() < 0.2:  # redelivered request after the end: must change nothing
            datas.append(BucketRequested(job_id=job, bucket_name=name))
    rng.shuffle(datas)  # any order: the folds must still agree
    events = log_of(datas)
    rows, refused, result = bulk(database_url, events, flush=7)
    assert refused == []
    assert rows == reference(events)
    assert any(r.error_code == BUCKET_EXISTS for r in rows.values())
    assert result.repeats > 0 and result.names_taken > 0  # both resolutions were needed


def test_events_whose_rows_postgres_would_refuse_are_reported_and_not_applied(
    database_url: str,
) -> None:
    long_job, nul_job, ok_job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    long_name = "n" * 256
    events = log_of(
        [
            BucketRequested(job_id=long_job, bucket_name=long_name),
            BucketProcessing(job_id=long_job, bucket_name=long_name, attempt=1),
            BucketRequested(job_id=nul_job, bucket_name="nul"),
            BucketFailed(
                job_id=nul_job, bucket_name="nul", error="a\x00", error_code="x", attempts=1
            ),
            BucketProcessing(job_id=nul_job, bucket_name="nul", attempt=2),
            BucketRequested(job_id=ok_job, bucket_name="ok"),
            BucketFailed(
                job_id=ok_job, bucket_name="ok", error="e", error_code="y" * 101, attempts=1
            ),
        ]
    )
    rows, refused, _ = bulk(database_url, events)
    assert refused == [0, 3, 6]
    assert long_job not in rows
    assert (rows[nul_job].status, rows[nul_job].attempts) == (JobStatus.PROCESSING, 2)
    assert rows[ok_job].status is JobStatus.QUEUED


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=8).flatmap(
        lambda names: st.tuples(*(histories(name=n) for n in names))
    ),
    st.randoms(),
    st.integers(min_value=1, max_value=6),
)
def test_bulk_fold_gives_the_rows_of_the_plain_fold_for_any_interleaving(
    database_url: str, jobs: tuple[History, ...], rng: random.Random, flush: int
) -> None:
    """Jobs contending for few names, each in order, interleaved at random, some events
    delivered twice: the bulk fold's rows are exactly the plain fold's."""
    queues = [list(h.events) for h in jobs]
    log: list[Event] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        log.append(queue.pop(0))
        if rng.random() < 0.1:
            log.append(log[-1])
    # NUL in an error text is refused (tested above), and the plain fold does not know it
    assume(not any("\x00" in getattr(e.data, "error", "") for e in log))
    rows, refused, _ = bulk(database_url, log, flush)
    assert refused == []
    assert rows == reference(log)


def test_a_repeated_request_after_the_end_neither_revives_the_job_nor_takes_its_name(
    database_url: str,
) -> None:
    """A failed job requested again, then a late `BucketCreated` for it: the job stays failed,
    and the next job of that name completes (the repeat must not own the name)."""
    first, second = uuid.uuid4(), uuid.uuid4()
    name = "contested"
    events = log_of(
        [
            BucketRequested(job_id=first, bucket_name=name),
            BucketFailed(job_id=first, bucket_name=name, error="e", error_code="x", attempts=1),
            BucketRequested(job_id=first, bucket_name=name),
            BucketCreated(job_id=first, bucket_name=name, tx_hash="0x" + "1" * 64),
            BucketRequested(job_id=second, bucket_name=name),
            BucketCreated(job_id=second, bucket_name=name, tx_hash="0x" + "2" * 64),
            BucketProcessing(job_id=second, bucket_name=name, attempt=3),
        ]
    )
    rows, _, result = bulk(database_url, events, flush=1)
    assert rows == reference(events)
    assert rows[first].status is JobStatus.FAILED
    assert rows[second].status is JobStatus.COMPLETED and rows[second].attempts == 0
    assert result.repeats == 1


def test_a_later_creation_of_an_owned_name_fails_with_the_folds_own_row(database_url: str) -> None:
    owner, late = uuid.uuid4(), uuid.uuid4()
    name = "taken"
    pending = "0x" + "a" * 64
    events = log_of(
        [
            BucketRequested(job_id=owner, bucket_name=name),
            BucketRequested(job_id=late, bucket_name=name),
            BucketProcessing(job_id=late, bucket_name=name, attempt=2),
            BucketCreated(job_id=owner, bucket_name=name, tx_hash="0x" + "b" * 64),
            signed(late, name, attempt=2, nonce=0, tx_hash=pending),
            BucketCreated(job_id=late, bucket_name=name, tx_hash="0x" + "c" * 64),
        ]
    )
    rows, _, result = bulk(database_url, events, flush=2)
    assert rows == reference(events)
    assert (rows[late].status, rows[late].error_code, rows[late].tx_hash) == (
        JobStatus.FAILED,
        BUCKET_EXISTS,
        pending,
    )
    assert result.names_taken == 1


def _peak_bytes(jobs: int) -> int:
    """Peak memory traced while folding `jobs` finished jobs, rows taken every 300 events."""
    events = log_of(
        [
            d
            for n in range(jobs)
            for job in [uuid.uuid4()]
            for d in (
                BucketRequested(job_id=job, bucket_name=f"n-{n}"),
                BucketCreated(job_id=job, bucket_name=f"n-{n}", tx_hash=f"0x{n:064x}"),
            )
        ]
    )
    fold = BulkFold()
    tracemalloc.start()
    try:
        for i, event in enumerate(events):
            fold.add(event, position(0, i))
            if i % 300 == 0:
                fold.take_finished()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_folds_memory_does_not_grow_with_the_log() -> None:
    """Ten times the jobs, about the same peak. The allowance of 64 KiB is allocator noise
    (one CI run traced 12 KB and 35 KB); a fold that kept every finished job traces about
    690 KB for the larger log, so it still fails."""
    small, large = _peak_bytes(1_000), _peak_bytes(10_000)
    assert large < 1.5 * small + 64 * 1024, (small, large)
