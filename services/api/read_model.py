"""Reads of `bucket_jobs`, and waiting for the projection to reach a log position."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.api.coalesce import Coalescer
from services.api.cursors import after_position, decode_cursor, encode_cursor
from services.api.schemas import Bucket, Job
from services.api.timeouts import bounded
from shared import job_row
from shared.db import make_sessionmaker
from shared.fold import JobStatus
from shared.models import IS_COMPLETED, BucketJob, ProjectorCheckpoint


def _job(row: BucketJob) -> Job:
    return Job(**job_row.from_row(row)._asdict())


class ReadModel:
    def __init__(self, reads: AsyncEngine, locks: AsyncEngine, topic: str, timeout_s: float):
        # Reads are single statements: in autocommit they cost one round trip, not three
        # (BEGIN, the query, ROLLBACK). Locks need a transaction, and a pool of their own:
        # a request holding (or queued for) a lock also reads, so sharing one pool would let
        # lock holders take every connection and starve the reads they wait for.
        self._sessions = make_sessionmaker(reads.execution_options(isolation_level="AUTOCOMMIT"))
        self._transactions = make_sessionmaker(locks)
        self._owners: Coalescer[str, Job] = Coalescer(self._owners_of)
        self._topic = topic
        self._timeout = timeout_s

    @asynccontextmanager
    async def _session(self, held: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        """`held` (a session the caller already has, e.g. under a lock) or a new one."""
        if held is not None:
            yield held
        else:
            async with self._sessions() as session:
                yield session

    @bounded
    async def job(self, job_id: uuid.UUID, held: AsyncSession | None = None) -> Job | None:
        async with self._session(held) as session:
            row = await session.scalar(job_query(job_id))
            return None if row is None else _job(row)

    @bounded
    async def watched(
        self, job_ids: Collection[uuid.UUID], changed_after: datetime | None, limit: int
    ) -> list[Job]:
        """In one query: the jobs among `job_ids`, and (when `changed_after` is given) the
        latest `limit` jobs whose `updated_at` is later. The live poller's one read."""
        wanted = []
        if job_ids:
            wanted.append(BucketJob.id.in_(job_ids))
        if changed_after is not None:
            recent = (
                select(BucketJob.id)
                .where(BucketJob.updated_at > changed_after)
                .order_by(BucketJob.updated_at.desc())
                .limit(limit)
            )
            wanted.append(BucketJob.id.in_(recent.scalar_subquery()))
        if not wanted:
            return []
        async with self._sessions() as session:
            rows = await session.scalars(select(BucketJob).where(or_(*wanted)))
            return [_job(row) for row in rows]

    @bounded
    async def status_counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(BucketJob.status, func.count()).group_by(BucketJob.status)
            )
            return {status: count for status, count in rows}

    @bounded
    async def latest(self, limit: int, status: JobStatus | None = None) -> list[Job]:
        """The `limit` jobs changed last, of `status` if given."""
        query = select(BucketJob).order_by(BucketJob.updated_at.desc()).limit(limit)
        if status is not None:
            query = query.where(BucketJob.status == status.value)
        async with self._sessions() as session:
            return [_job(row) for row in await session.scalars(query)]

    @bounded
    async def jobs_named(self, bucket_name: str, limit: int) -> list[Job]:
        """The jobs for `bucket_name`, newest first."""
        query = (
            select(BucketJob)
            .where(BucketJob.bucket_name == bucket_name)
            .order_by(BucketJob.created_at.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return [_job(row) for row in await session.scalars(query)]

    async def checkpoints(self) -> dict[int, int]:
        """The projector's next offset per partition of the topic."""
        async with self._sessions() as session:
            return await self._checkpoints(session)

    @bounded
    async def owner_of(self, bucket_name: str, held: AsyncSession | None = None) -> Job | None:
        """The completed job that created `bucket_name`, if any. In `held` if given (e.g. under
        a lock); otherwise concurrent calls share one query."""
        if held is not None:
            return (await _owners_in(held, [bucket_name])).get(bucket_name)
        return await self._owners.get(bucket_name)

    @bounded  # a hung query must not hold up later batches
    async def _owners_of(self, names: Collection[str]) -> dict[str, Job]:
        async with self._sessions() as session:
            return await _owners_in(session, names)

    async def buckets(self, limit: int, cursor: str | None) -> tuple[list[Bucket], str | None]:
        rows = await self._completed(decode_cursor(cursor) if cursor else None, limit + 1)
        page = rows[:limit]
        items = [
            Bucket(
                bucket_name=r.bucket_name,
                tx_hash=r.tx_hash,
                created_at=r.completed_at or r.updated_at,
                job_id=r.id,
            )
            for r in page
        ]
        more = len(rows) > limit
        return items, _encode_cursor(page[-1]) if more and page else None

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[AsyncSession]:
        """Hold a cluster-wide lock on `name` (every API process shares it) until exit; the
        session holding it is yielded so that waiting under the lock takes no second one."""
        async with self._transactions() as session, session.begin():
            await self._lock(session, name)
            yield session

    @bounded
    async def _lock(self, session: AsyncSession, name: str) -> None:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name}
        )

    @bounded
    async def signer_lanes(self) -> list[Any]:
        """Every published signer lane, with its age in seconds at the database's clock."""
        async with self._sessions() as session:
            result = await session.execute(
                text(
                    "SELECT chain_id, address, next_nonce, in_flight, paused, reason, "
                    "balance_wei, updated_at, "
                    "extract(epoch FROM now() - updated_at)::float8 AS age_s "
                    "FROM signer_lanes ORDER BY chain_id, address"
                )
            )
            return list(result.all())

    @bounded
    async def _completed(
        self, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[BucketJob]:
        """Up to `limit` completed rows after the cursor position `after`, in page order."""
        query = select(BucketJob).where(BucketJob.status == JobStatus.COMPLETED.value)
        if after is not None:
            query = query.where(after_position(BucketJob.completed_at, BucketJob.id, after))
        query = query.order_by(BucketJob.completed_at, BucketJob.id).limit(limit)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    @bounded
    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def wait_until_projected(
        self, targets: Mapping[int, int], deadline_s: float, held: AsyncSession | None = None
    ) -> bool:
        """Poll the projector's checkpoints until every partition reached `targets`.

        In `held` if given (read committed: each poll sees the latest commits), else in a
        session per poll."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        delay = 0.005
        while True:
            async with self._session(held) as session:
                reached = await self._checkpoints(session)
            if all(reached.get(p, 0) >= end for p, end in targets.items()):
                return True
            if loop.time() >= until:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @bounded
    async def _checkpoints(self, session: AsyncSession) -> dict[int, int]:
        """The projector's next offset per partition of the topic."""
        rows = await session.execute(
            select(ProjectorCheckpoint.partition, ProjectorCheckpoint.next_offset).where(
                ProjectorCheckpoint.topic == self._topic
            )
        )
        return {p: o for p, o in rows}


def _encode_cursor(row: BucketJob) -> str:
    return encode_cursor(row.completed_at or row.updated_at, row.id)


def job_query(job_id: uuid.UUID) -> Select[BucketJob]:
    """One job by id, from the primary key: read-your-writes, Idempotency-Key and retry reads."""
    return select(BucketJob).where(BucketJob.id == job_id)


def owners_query(names: Collection[str]) -> Select[BucketJob]:
    """The completed job of each of `names`: the 409 check (a batch of up to the Coalescer's
    `max_batch` names under load), one entry per name of the unique index of completed names
    (`IS_COMPLETED`)."""
    return select(BucketJob).where(BucketJob.bucket_name.in_(list(names)), IS_COMPLETED)


async def _owners_in(session: AsyncSession, names: Collection[str]) -> dict[str, Job]:
    rows = await session.scalars(owners_query(names))
    return {row.bucket_name: _job(row) for row in rows}
