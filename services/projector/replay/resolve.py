"""The end of a replay's bulk phase: the two rules of the fold that need every job, in SQL.

The bulk fold (`bulk_fold.py`) forgets a job once it finishes, so it cannot tell a repeated
`BucketRequested` from a new job, nor whether a name already had an owner. It COPYs its rows,
with their log positions, into an unlogged staging table beside the shadow `bucket_jobs`;
`resolve` then, in Postgres, with no per-job state in Python:

1. drops the repeat rows: of the rows of one job id, the one whose request came first is the
   job (a later `BucketRequested` changes nothing);
2. finds the names completed by more than one row: the row completed first (`done_pos`) owns
   the name, every other one becomes what the shared fold makes of it (`fold.name_taken`:
   failed with `bucket_exists`, its earlier tx hash, no completion time). These rows are few
   in any real log; they are read and written in pages, so even a log of nothing else is
   resolved in bounded memory;
3. inserts the resolved rows into the shadow `bucket_jobs` and drops the staging tables.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.projector.replay.bulk_fold import EXTRA_COLUMNS
from shared import job_row
from shared.fold import JobState, JobStatus, name_taken

log = logging.getLogger(__name__)

STAGED = "bucket_jobs_staged"
_CONFLICTS = "bucket_jobs_conflicts"
_TAKEN = "bucket_jobs_taken"
PAGE = 10_000
_COLUMNS = ", ".join(job_row.COLUMNS)


@dataclass
class Resolved:
    rows: int = 0  # rows in the shadow bucket_jobs
    repeats: int = 0  # rows of a job requested again after it finished, dropped
    names_taken: int = 0  # jobs failed with bucket_exists here


async def create_staging(conn: AsyncConnection, schema: str) -> None:
    """The unlogged staging table: `bucket_jobs`'s columns, then the bulk fold's extras."""
    await conn.execute(
        text(
            f"CREATE UNLOGGED TABLE {schema}.{STAGED} "
            f"(LIKE {schema}.bucket_jobs INCLUDING DEFAULTS, "
            "request_pos bigint NOT NULL, done_pos bigint, prior_tx_hash varchar(255))"
        )
    )


def staged_columns() -> tuple[str, ...]:
    return (*job_row.COLUMNS, *EXTRA_COLUMNS)


async def resolve(conn: AsyncConnection, schema: str) -> Resolved:
    """Fill `{schema}.bucket_jobs` from the staging table; the caller commits."""
    staged = f"{schema}.{STAGED}"
    result = Resolved()
    await conn.execute(text("SET LOCAL work_mem = '128MB'"))
    deleted = await conn.execute(
        text(
            f"DELETE FROM {staged} t USING (SELECT id, min(request_pos) AS first FROM {staged} "
            "GROUP BY id HAVING count(*) > 1) d WHERE t.id = d.id AND t.request_pos <> d.first"
        )
    )
    result.repeats = deleted.rowcount
    await conn.execute(
        text(
            f"CREATE TEMP TABLE {_CONFLICTS} ON COMMIT DROP AS "
            "SELECT t.id, t.bucket_name, t.created_at, t.updated_at, t.attempts, "
            "t.prior_tx_hash, t.error, t.error_code, t.retry_of, o.owner "
            f"FROM {staged} t JOIN (SELECT DISTINCT ON (bucket_name) bucket_name, id AS owner "
            f"FROM {staged} WHERE done_pos IS NOT NULL AND bucket_name IN "
            f"(SELECT bucket_name FROM {staged} WHERE done_pos IS NOT NULL "
            "GROUP BY bucket_name HAVING count(*) > 1) "
            "ORDER BY bucket_name, done_pos) o USING (bucket_name) "
            "WHERE t.done_pos IS NOT NULL AND t.id <> o.owner"
        )
    )
    await conn.execute(text(f"CREATE INDEX ON {_CONFLICTS} (id)"))
    await conn.execute(
        text(f"CREATE TEMP TABLE {_TAKEN} (LIKE {schema}.bucket_jobs) ON COMMIT DROP")
    )
    after = None
    while True:
        page = (
            await conn.execute(
                text(
                    f"SELECT id, bucket_name, created_at, updated_at, attempts, prior_tx_hash, "
                    f"error, error_code, retry_of, owner FROM {_CONFLICTS} "
                    + ("WHERE id > :after " if after is not None else "")
                    + "ORDER BY id LIMIT :page"
                ),
                {"after": after, "page": PAGE},
            )
        ).all()
        if not page:
            break
        after = page[-1][0]
        rows = [job_row.to_row(_taken(*row)) for row in page]
        placeholders = ", ".join(f":{c}" for c in job_row.COLUMNS)
        await conn.execute(
            text(f"INSERT INTO {_TAKEN} ({_COLUMNS}) VALUES ({placeholders})"),
            [{**r, "status": str(r["status"])} for r in rows],
        )
        result.names_taken += len(page)
    inserted = await conn.execute(
        text(
            f"INSERT INTO {schema}.bucket_jobs ({_COLUMNS}) "
            f"SELECT {_COLUMNS} FROM {staged} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_TAKEN} k WHERE k.id = t.id) "
            f"UNION ALL SELECT {_COLUMNS} FROM {_TAKEN}"
        )
    )
    result.rows = inserted.rowcount
    await conn.execute(text(f"DROP TABLE {staged}"))
    return result


def _taken(
    job_id: uuid.UUID,
    bucket_name: str,
    created_at: datetime,
    updated_at: datetime,
    attempts: int,
    prior_tx_hash: str | None,
    error: str | None,
    error_code: str | None,
    retry_of: uuid.UUID | None,
    owner: uuid.UUID,
) -> JobState:
    """The shared fold's state for a row whose name another job completed first. The staged
    row is the job completed by that `BucketCreated`: its `updated_at` is the event's touch,
    and before the event it showed `prior_tx_hash` and had no completion time."""
    before = JobState(
        job_id,
        bucket_name,
        JobStatus.PROCESSING,
        created_at,
        updated_at,
        attempts,
        prior_tx_hash,
        error,
        error_code,
        None,
        retry_of,
    )
    return name_taken(before, owner, updated_at)
