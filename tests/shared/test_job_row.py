"""The one job-row mapping: state -> row -> state is the identity, in the table's column order,
and the rows it calls unstorable are exactly those the migrated Postgres table refuses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.projector import store
from services.projector.replay.bulk_fold import copy_rows
from shared import job_row
from shared.db import make_engine
from shared.fold import JobState, JobStatus
from shared.models import BucketJob
from shared.settings import Settings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
optional_text = st.none() | st.text(max_size=30)
states = st.builds(
    JobState,
    job_id=st.uuids(),
    bucket_name=st.text(max_size=30),
    status=st.sampled_from(JobStatus),
    created_at=st.datetimes(timezones=st.just(UTC)),
    updated_at=st.datetimes(timezones=st.just(UTC)),
    attempts=st.integers(0, 1000),
    tx_hash=optional_text,
    error=optional_text,
    error_code=optional_text,
    completed_at=st.none() | st.datetimes(timezones=st.just(UTC)),
)


@given(states)
def test_state_to_row_to_state_is_the_identity(state: JobState) -> None:
    row = job_row.to_row(state)
    assert list(row) == list(job_row.COLUMNS)
    assert job_row.from_row(BucketJob(**row)) == state
    assert type(job_row.from_row(BucketJob(**row)).status) is JobStatus


@given(states)
def test_copy_values_are_the_row_in_column_order(state: JobState) -> None:
    assert next(copy_rows([state])) == tuple(job_row.to_row(state).values())
    assert job_row.to_row(state)["id"] == state.job_id


# Against the migrated database -----------------------------------------------------------------


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection with an empty session-private `bucket_jobs` made like the migrated one;
    its statements run on it through `schema_translate_map`."""
    engine = make_engine(Settings(_env_file=None, database_url=database_url), pool_size=1)  # type: ignore[call-arg]
    try:
        async with engine.connect() as raw:
            await raw.execute(
                text("CREATE TEMP TABLE bucket_jobs (LIKE public.bucket_jobs INCLUDING ALL)")
            )
            yield await raw.execution_options(schema_translate_map={None: "pg_temp"})
            await raw.rollback()
    finally:
        await engine.dispose()


async def test_the_migrated_table_has_the_columns_and_limits_of_the_definition(
    conn: AsyncConnection,
) -> None:
    """Alembic's table is the one the mapping and the replay's checks are derived from."""
    rows = await conn.execute(
        text(
            "SELECT column_name, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = 'bucket_jobs' ORDER BY ordinal_position"
        )
    )
    migrated = [tuple(r) for r in rows]
    assert tuple(name for name, *_ in migrated) == job_row.COLUMNS
    for (name, length, nullable), column in zip(migrated, BucketJob.__table__.columns, strict=True):
        assert (name, length) == (column.name, getattr(column.type, "length", None))
        assert (nullable == "YES") == column.nullable, name


def _state(**changes: object) -> JobState:
    base = JobState(
        job_id=uuid.uuid4(),
        bucket_name="a-bucket",
        status=JobStatus.FAILED,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=3),
        attempts=2,
        tx_hash="0x" + "ab" * 32,
        error="the node said no",
        error_code="backend_error",
    )
    return base._replace(**changes)


async def test_binary_copy_in_column_order_and_upsert_read_back_as_the_same_states(
    conn: AsyncConnection,
) -> None:
    copied = [
        _state(),
        _state(status=JobStatus.QUEUED, attempts=0, tx_hash=None, error=None, error_code=None),
        _state(status=JobStatus.COMPLETED, error=None, error_code=None, completed_at=T0),
    ]
    oids = dict(
        tuple(r)
        for r in await conn.execute(
            text(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = "
                "'pg_temp.bucket_jobs'::regclass AND attnum > 0 AND NOT attisdropped"
            )
        )
    )
    pg = (await conn.get_raw_connection()).driver_connection
    assert pg is not None
    columns = ", ".join(job_row.COLUMNS)
    async with (
        pg.cursor() as cursor,
        cursor.copy(f"COPY pg_temp.bucket_jobs ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([oids[c] for c in job_row.COLUMNS])
        for row in copy_rows(copied):
            await copy.write_row(row)

    upserted = [_state(status=JobStatus.PROCESSING, error=None, error_code=None)]
    async with AsyncSession(bind=conn) as session:
        await store.upsert_jobs(session, upserted)
        await session.flush()
        loaded = await store.load_jobs(session, [s.job_id for s in copied + upserted])
        stored = await conn.execute(select(BucketJob.id, BucketJob.status))
    assert loaded == {s.job_id: s for s in copied + upserted}
    assert {job_id: status for job_id, status in stored} == {
        s.job_id: s.status.value for s in copied + upserted
    }


REFUSAL_CASES = [
    ("name at its limit", _state(bucket_name="n" * 255), False),
    ("name over its limit", _state(bucket_name="n" * 256), True),
    ("error code at its limit", _state(error_code="c" * 100), False),
    ("error code over its limit", _state(error_code="c" * 101), True),
    ("long error text", _state(error="e" * 100_000), False),
    ("NUL in the error", _state(error="disk\x00full"), True),
    ("NUL in the name", _state(bucket_name="a\x00b"), True),
    ("NUL in the tx hash", _state(tx_hash="0x\x00"), True),
    ("no optional text", _state(tx_hash=None, error=None, error_code=None), False),
]


@pytest.mark.parametrize(
    ("state", "refused"),
    [(s, r) for _, s, r in REFUSAL_CASES],
    ids=[name for name, _, _ in REFUSAL_CASES],
)
async def test_the_replays_check_refuses_exactly_what_postgres_refuses(
    conn: AsyncConnection, state: JobState, refused: bool
) -> None:
    async with AsyncSession(bind=conn) as session:
        try:
            async with session.begin_nested():
                await store.upsert_jobs(session, [state])
            postgres_refused = False
        except DBAPIError:
            postgres_refused = True
    assert postgres_refused is refused
    assert (job_row.refusal(state) is not None) is refused


def test_a_refusal_names_the_column_in_postgres_words() -> None:
    assert job_row.refusal(_state(bucket_name="n" * 256)) == (
        "value too long for type character varying(255) (bucket_name)"
    )
    assert job_row.refusal(_state(error="a\x00")) == (
        "PostgreSQL text fields cannot contain NUL (0x00) bytes (error)"
    )


def test_text_already_checked_is_not_checked_again() -> None:
    before = _state(error="a\x00")
    assert job_row.refusal(before._replace(attempts=3), before) is None
    assert job_row.refusal(before._replace(error_code="x" * 101), before) is not None
