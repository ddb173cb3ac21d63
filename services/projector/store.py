"""The projector's SQL: job rows and checkpoints, always inside the caller's transaction.

Every statement is built with SQLAlchemy (no table names in text), so a replay can point the
same code at its shadow schema with `schema_translate_map`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping

from sqlalchemy import Select, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import job_row
from shared.fold import JobState
from shared.models import IS_COMPLETED, BucketJob, ProjectorCheckpoint

# Every writer of the live read model holds this transaction-scoped lock while it writes: each
# projector batch, and a replay while it swaps its rebuilt tables in (`shadow.swap`).
PROJECTION_LOCK = "akave.projector.apply"


async def lock_projection(session: AsyncSession) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": PROJECTION_LOCK}
    )


async def lock_checkpoints(
    session: AsyncSession, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Next offset per partition, row-locked until commit so two writers cannot interleave.

    Takes the projection lock first, so a replay's table swap happens between two batches.
    """
    wanted = sorted(set(partitions))
    await lock_projection(session)
    await session.execute(
        insert(ProjectorCheckpoint)
        .values([{"topic": topic, "partition": p, "next_offset": 0} for p in wanted])
        .on_conflict_do_nothing()
    )
    rows = await session.execute(
        select(ProjectorCheckpoint.partition, ProjectorCheckpoint.next_offset)
        .where(ProjectorCheckpoint.topic == topic, ProjectorCheckpoint.partition.in_(wanted))
        .order_by(ProjectorCheckpoint.partition)
        .with_for_update()
    )
    return {p: o for p, o in rows}


async def read_checkpoints(session: AsyncSession, topic: str) -> dict[int, int]:
    rows = await session.execute(
        select(ProjectorCheckpoint.partition, ProjectorCheckpoint.next_offset).where(
            ProjectorCheckpoint.topic == topic
        )
    )
    return {p: o for p, o in rows}


async def save_checkpoints(session: AsyncSession, topic: str, offsets: Mapping[int, int]) -> None:
    for partition, next_offset in offsets.items():
        await session.execute(
            update(ProjectorCheckpoint)
            .where(ProjectorCheckpoint.topic == topic, ProjectorCheckpoint.partition == partition)
            .values(next_offset=next_offset, updated_at=text("now()"))
        )


async def load_jobs(
    session: AsyncSession, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, JobState]:
    ids = list(set(job_ids))
    if not ids:
        return {}
    rows = await session.scalars(select(BucketJob).where(BucketJob.id.in_(ids)))
    return {row.id: job_row.from_row(row) for row in rows}


def completed_owners_query(names: Collection[str]) -> Select[str, uuid.UUID]:
    """The completed job of each of `names`, one entry per name of the unique index of
    completed names (`IS_COMPLETED`)."""
    return select(BucketJob.bucket_name, BucketJob.id).where(
        BucketJob.bucket_name.in_(list(names)), IS_COMPLETED
    )


async def completed_owners(session: AsyncSession, names: Iterable[str]) -> dict[str, uuid.UUID]:
    wanted = set(names)
    if not wanted:
        return {}
    rows = await session.execute(completed_owners_query(wanted))
    return {name: job_id for name, job_id in rows}


async def upsert_jobs(session: AsyncSession, states: Iterable[JobState]) -> None:
    rows = [job_row.to_row(s) for s in states]
    if not rows:
        return
    stmt = insert(BucketJob).values(rows)
    columns = {c: stmt.excluded[c] for c in rows[0] if c != "id"}
    await session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns))
