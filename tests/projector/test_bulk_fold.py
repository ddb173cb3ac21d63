"""The replay's in-memory fold: same rows as folding every event into a dict, less memory."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.projector.replay.bulk_fold import BulkFold
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
from tests.shared.test_fold import History, histories

T0 = datetime(2026, 3, 1, tzinfo=UTC)


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


def bulk(events: list[Event]) -> tuple[dict[uuid.UUID, JobState], list[int]]:
    fold = BulkFold()
    refused = [i for i, e in enumerate(events) if fold.add(e) is not None]
    rows = fold.take_finished() + fold.take_open()
    assert len({r.job_id for r in rows}) == len(rows)
    return {r.job_id: r for r in rows}, refused


def test_bulk_fold_gives_the_rows_of_the_plain_fold_on_a_shuffled_busy_log() -> None:
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
    rows, refused = bulk(events)
    assert refused == []
    assert rows == reference(events)
    assert any(r.error_code == BUCKET_EXISTS for r in rows.values())


def test_events_whose_rows_postgres_would_refuse_are_reported_and_not_applied() -> None:
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
    rows, refused = bulk(events)
    assert refused == [0, 3, 6]
    assert long_job not in rows
    assert (rows[nul_job].status, rows[nul_job].attempts) == (JobStatus.PROCESSING, 2)
    assert rows[ok_job].status is JobStatus.QUEUED


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=8).flatmap(
        lambda names: st.tuples(*(histories(name=n) for n in names))
    ),
    st.randoms(),
)
def test_bulk_fold_gives_the_rows_of_the_plain_fold_for_any_interleaving(
    jobs: tuple[History, ...], rng: random.Random
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
    rows, refused = bulk(log)
    assert refused == []
    assert rows == reference(log)
