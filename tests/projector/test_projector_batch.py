"""One projector batch on the real Postgres: fold, upserts and checkpoints in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.projector import store
from services.projector.batch import UNAPPLICABLE, BatchOutcome, apply_batch
from shared import job_row
from shared.db import make_engine, make_sessionmaker
from shared.error_codes import BUCKET_EXISTS
from shared.events import (
    CONTENT_TYPE_HEADER,
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    Event,
    EventData,
    encode,
    new_event,
)
from shared.models import BucketJob
from shared.settings import Settings

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
_ticks = count()


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


@pytest.fixture(scope="module")
async def sessions(base_settings: Settings) -> AsyncIterator[Sessions]:
    engine = make_engine(base_settings, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def topic() -> str:
    return f"test-batch-{uuid.uuid4().hex[:12]}"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def event(data: EventData) -> Event:
    """An event a second later than every earlier one made here."""
    return new_event(data, "/tests/projector", time=T0 + timedelta(seconds=next(_ticks)))


def requested(job: uuid.UUID, name: str) -> Event:
    return event(BucketRequested(job_id=job, bucket_name=name))


def processing(job: uuid.UUID, name: str, attempt: int = 1) -> Event:
    return event(BucketProcessing(job_id=job, bucket_name=name, attempt=attempt))


def created(job: uuid.UUID, name: str, tx: str = "ab") -> Event:
    return event(BucketCreated(job_id=job, bucket_name=name, tx_hash="0x" + tx * 32))


def failed(job: uuid.UUID, name: str) -> Event:
    return event(
        BucketFailed(
            job_id=job, bucket_name=name, error="no funds", error_code="insufficient_funds",
            attempts=1,
        )
    )  # fmt: skip


def record(
    topic: str, partition: int, offset: int, value: Event | bytes
) -> ConsumerRecord[bytes, bytes]:
    payload = encode(value) if isinstance(value, Event) else value
    key = value.subject.encode() if isinstance(value, Event) else b"unreadable"
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=payload,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(payload),
        headers=[CONTENT_TYPE_HEADER],
    )


def records(
    topic: str, partition: int, values: Sequence[Event | bytes], start: int = 0
) -> list[ConsumerRecord[bytes, bytes]]:
    return [record(topic, partition, start + i, v) for i, v in enumerate(values)]


async def apply(
    sessions: Sessions,
    topic: str,
    batch: Sequence[ConsumerRecord[bytes, bytes]],
    expected: dict[int, int] | None = None,
) -> BatchOutcome:
    async with sessions() as session, session.begin():
        return await apply_batch(session, topic, batch, expected or {})


async def rows(sessions: Sessions, *jobs: uuid.UUID) -> dict[uuid.UUID, BucketJob]:
    async with sessions() as session:
        found = await session.scalars(select(BucketJob).where(BucketJob.id.in_(jobs)))
        return {row.id: row for row in found}


async def checkpoints(sessions: Sessions, topic: str) -> dict[int, int]:
    async with sessions() as session:
        return await store.read_checkpoints(session, topic)


# Applying -------------------------------------------------------------------------------------


async def test_batch_creates_and_updates_rows_and_checkpoints_each_partition(
    sessions: Sessions, topic: str
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    name_a, name_b = unique_name("alpha"), unique_name("beta")
    batch = [
        *records(topic, 0, [requested(a, name_a), processing(a, name_a), created(a, name_a)]),
        *records(topic, 2, [requested(b, name_b), processing(b, name_b, 1)], start=10),
    ]
    outcome = await apply(sessions, topic, batch)
    assert outcome.applied == 5 and outcome.checkpoints == {0: 3, 2: 12}
    assert outcome.rewind == {} and outcome.batch.malformed == [] and outcome.already_applied == 0

    found = await rows(sessions, a, b)
    assert found[a].status == "completed" and found[a].tx_hash == "0x" + "ab" * 32
    assert found[a].attempts == 1 and found[a].completed_at is not None
    assert found[b].status == "processing" and found[b].bucket_name == name_b
    assert await checkpoints(sessions, topic) == {0: 3, 2: 12}

    more = records(topic, 2, [processing(b, name_b, 2), failed(b, name_b)], start=12)
    await apply(sessions, topic, more, {2: 12})
    found = await rows(sessions, b)
    assert (found[b].status, found[b].error_code, found[b].attempts) == (
        "failed",
        "insufficient_funds",
        2,
    )
    assert await checkpoints(sessions, topic) == {0: 3, 2: 14}


async def test_rows_and_checkpoints_commit_or_roll_back_together(
    sessions: Sessions, topic: str
) -> None:
    job, name = uuid.uuid4(), unique_name("atomic")
    batch = records(topic, 0, [requested(job, name), processing(job, name)])
    with pytest.raises(Boom):
        async with sessions() as session, session.begin():
            outcome = await apply_batch(session, topic, batch, {})
            assert outcome.checkpoints == {0: 2}
            raise Boom
    assert await rows(sessions, job) == {}
    assert await checkpoints(sessions, topic) == {}

    await apply(sessions, topic, batch)
    assert (await rows(sessions, job))[job].status == "processing"
    assert await checkpoints(sessions, topic) == {0: 2}


async def test_reapplying_the_same_records_changes_nothing(sessions: Sessions, topic: str) -> None:
    job, name = uuid.uuid4(), unique_name("again")
    batch = records(topic, 1, [requested(job, name), processing(job, name), created(job, name)])
    await apply(sessions, topic, batch)
    before = await rows(sessions, job)
    state_before = job_row.from_row(before[job])

    outcome = await apply(sessions, topic, batch, {1: 3})
    assert outcome.already_applied == 3 and outcome.applied == 0
    assert outcome.checkpoints == {1: 3}
    after = await rows(sessions, job)
    assert job_row.from_row(after[job]) == state_before
    assert await checkpoints(sessions, topic) == {1: 3}


async def test_records_below_the_checkpoint_are_skipped_and_the_rest_applied(
    sessions: Sessions, topic: str
) -> None:
    job, name = uuid.uuid4(), unique_name("overlap")
    log = [requested(job, name), processing(job, name, 1), processing(job, name, 2)]
    log += [created(job, name)]
    await apply(sessions, topic, records(topic, 0, log[:2]))

    outcome = await apply(sessions, topic, records(topic, 0, log[1:], start=1), {0: 2})
    assert outcome.already_applied == 1
    assert outcome.applied == 2
    assert outcome.checkpoints == {0: 4}
    found = (await rows(sessions, job))[job]
    assert (found.status, found.attempts) == ("completed", 2)


async def test_duplicate_event_at_a_new_offset_folds_to_the_same_row(
    sessions: Sessions, topic: str
) -> None:
    job, name = uuid.uuid4(), unique_name("dup")
    request, done = requested(job, name), created(job, name)
    await apply(sessions, topic, records(topic, 0, [request, done]))
    state = job_row.from_row((await rows(sessions, job))[job])
    late = processing(job, name, 3)
    outcome = await apply(sessions, topic, records(topic, 0, [done, request, late], start=2))
    assert outcome.applied == 3 and outcome.checkpoints == {0: 5}
    assert job_row.from_row((await rows(sessions, job))[job]) == state


async def test_projector_behind_another_one_skips_what_is_already_stored(
    sessions: Sessions, topic: str
) -> None:
    """`expected` lower than the stored checkpoint: another projector got there first."""
    job, name = uuid.uuid4(), unique_name("behind")
    log = [requested(job, name), processing(job, name), created(job, name)]
    await apply(sessions, topic, records(topic, 0, log))
    outcome = await apply(sessions, topic, records(topic, 0, log), {0: 0})
    assert outcome.rewind == {}
    assert outcome.already_applied == 3 and outcome.applied == 0
    assert await checkpoints(sessions, topic) == {0: 3}


# Rewind ---------------------------------------------------------------------------------------


async def test_stored_checkpoint_lower_than_expected_rewinds_and_applies_nothing_there(
    sessions: Sessions, topic: str
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    name_a, name_b = unique_name("rewound"), unique_name("kept")
    await apply(sessions, topic, records(topic, 0, [requested(a, name_a)]))
    assert await checkpoints(sessions, topic) == {0: 1}

    batch = [
        *records(topic, 0, [processing(a, name_a), created(a, name_a)], start=5),
        *records(topic, 1, [requested(b, name_b)]),
    ]
    outcome = await apply(sessions, topic, batch, {0: 5, 1: 0})
    assert outcome.rewind == {0: 1}
    assert outcome.checkpoints == {1: 1}
    assert outcome.applied == 1
    found = await rows(sessions, a, b)
    assert found[a].status == "queued"
    assert found[b].status == "queued"
    assert await checkpoints(sessions, topic) == {0: 1, 1: 1}


async def test_checkpoint_missing_after_a_rebuild_rewinds_to_zero(
    sessions: Sessions, topic: str
) -> None:
    job, name = uuid.uuid4(), unique_name("rebuilt")
    outcome = await apply(sessions, topic, records(topic, 2, [requested(job, name)], 40), {2: 40})
    assert outcome.rewind == {2: 0}
    assert outcome.checkpoints == {} and outcome.applied == 0
    assert await rows(sessions, job) == {}
    assert await checkpoints(sessions, topic) == {2: 0}


# Ownership ------------------------------------------------------------------------------------


async def test_second_created_for_a_name_in_the_same_batch_fails_with_bucket_exists(
    sessions: Sessions, topic: str
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    name = unique_name("contested")
    log = [
        requested(first, name),
        requested(second, name),
        created(first, name, "11"),
        created(second, name, "22"),
    ]
    await apply(sessions, topic, records(topic, 0, log))
    found = await rows(sessions, first, second)
    assert (found[first].status, found[first].tx_hash) == ("completed", "0x" + "11" * 32)
    assert (found[second].status, found[second].error_code) == ("failed", BUCKET_EXISTS)
    assert found[second].tx_hash is None
    assert str(first) in (found[second].error or "")


async def test_second_created_for_a_name_in_a_later_batch_fails_with_bucket_exists(
    sessions: Sessions, topic: str
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    name = unique_name("contested-later")
    await apply(
        sessions,
        topic,
        records(topic, 0, [requested(first, name), requested(second, name), created(first, name)]),
    )
    await apply(sessions, topic, records(topic, 0, [created(second, name)], start=3), {0: 3})
    found = await rows(sessions, first, second)
    assert found[first].status == "completed"
    assert (found[second].status, found[second].error_code) == ("failed", BUCKET_EXISTS)


async def test_created_for_a_name_whose_first_job_failed_completes(
    sessions: Sessions, topic: str
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    name = unique_name("second-chance")
    log = [requested(first, name), failed(first, name), requested(second, name)]
    log.append(created(second, name))
    await apply(sessions, topic, records(topic, 0, log))
    found = await rows(sessions, first, second)
    assert (found[first].status, found[second].status) == ("failed", "completed")


# Unreadable records ---------------------------------------------------------------------------


async def test_malformed_and_unknown_records_are_reported_or_skipped_and_advance_the_checkpoint(
    sessions: Sessions, topic: str
) -> None:
    job, name = uuid.uuid4(), unique_name("tolerant")
    unknown = encode(requested(job, name)).replace(b'"BucketRequested"', b'"BucketArchived"')
    batch = records(
        topic,
        0,
        [requested(job, name), b"{not json", unknown, b'["an", "array"]', processing(job, name)],
    )
    outcome = await apply(sessions, topic, batch)
    assert outcome.batch.unknown_skipped == 1
    assert [(r.offset, r.value) for r, _ in outcome.batch.malformed] == [
        (1, b"{not json"),
        (3, b'["an", "array"]'),
    ]
    assert all(reason for _, reason in outcome.batch.malformed)
    assert outcome.applied == 2
    assert outcome.checkpoints == {0: 5}
    assert (await rows(sessions, job))[job].status == "processing"
    assert await checkpoints(sessions, topic) == {0: 5}


async def test_batch_of_only_unreadable_records_still_advances_the_checkpoint(
    sessions: Sessions, topic: str
) -> None:
    outcome = await apply(sessions, topic, records(topic, 1, [b"", b"garbage"], start=7))
    assert len(outcome.batch.malformed) == 2 and outcome.applied == 0
    assert await checkpoints(sessions, topic) == {1: 9}


# Events the database refuses ------------------------------------------------------------------


async def test_refused_row_fails_the_batch_then_isolated_only_its_event_is_reported(
    sessions: Sessions, topic: str
) -> None:
    good, bad, nul = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    good_name, nul_name = unique_name("fine"), unique_name("nul")
    batch = records(
        topic,
        0,
        [
            requested(good, good_name),
            requested(bad, "n" * 300),  # the column holds 255 characters
            requested(nul, nul_name),
            event(
                BucketFailed(
                    job_id=nul, bucket_name=nul_name, error="a\x00b", error_code="x", attempts=1
                )
            ),
            processing(nul, nul_name),
            created(good, good_name),
        ],
    )
    with pytest.raises(UNAPPLICABLE):
        await apply(sessions, topic, batch)
    assert await rows(sessions, good, bad, nul) == {}

    async with sessions() as session, session.begin():
        outcome = await apply_batch(session, topic, batch, {}, isolate=True)
    assert [(r.offset, "too long" in e or "NUL" in e) for r, e in outcome.unapplicable] == [
        (1, True),
        (3, True),
    ]
    assert outcome.checkpoints == {0: 6} and outcome.applied == 4
    found = await rows(sessions, good, bad, nul)
    assert bad not in found
    assert found[good].status == "completed"
    assert (found[nul].status, found[nul].error) == ("processing", None)
    assert await checkpoints(sessions, topic) == {0: 6}
