"""Reads of `bucket_jobs`, and waiting for the projection to reach a log position."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.api.coalesce import Coalescer
from services.api.cursors import decode_cursor, encode_cursor
from services.api.schemas import Bucket, Job
from shared import job_row
from shared.db import make_sessionmaker
from shared.fold import JobStatus
from shared.models import BucketJob, ProjectorCheckpoint

T = TypeVar("T")


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

    async def _bounded(self, coro: Awaitable[T]) -> T:
        async with asyncio.timeout(self._timeout):  # unlike wait_for, no task per call
            return await coro

    @asynccontextmanager
    async def _session(self, held: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        """`held` (a session the caller already has, e.g. under a lock) or a new one."""
        if held is not None:
            yield held
        else:
            async with self._sessions() as session:
                yield session

    async def job(self, job_id: uuid.UUID, held: AsyncSession | None = None) -> Job | None:
        async def go() -> Job | None:
            async with self._session(held) as session:
                row = await session.get(BucketJob, job_id)
                return None if row is None else _job(row)

        return await self._bounded(go())

    async def jobs(self, job_ids: Collection[uuid.UUID]) -> list[Job]:
        """The jobs among `job_ids` that exist, in no particular order (one query)."""

        async def go() -> list[Job]:
            async with self._sessions() as session:
                rows = await session.scalars(select(BucketJob).where(BucketJob.id.in_(job_ids)))
                return [_job(row) for row in rows]

        return await self._bounded(go())

    async def owner_of(self, bucket_name: str, held: AsyncSession | None = None) -> Job | None:
        """The completed job that created `bucket_name`, if any. In `held` if given (e.g. under
        a lock); otherwise concurrent calls share one query."""
        if held is not None:
            return (await self._bounded(_owners_in(held, [bucket_name]))).get(bucket_name)
        return await self._bounded(self._owners.get(bucket_name))

    async def _owners_of(self, names: Collection[str]) -> dict[str, Job]:
        async def go() -> dict[str, Job]:
            async with self._sessions() as session:
                return await _owners_in(session, names)

        return await self._bounded(go())  # a hung query must not hold up later batches

    async def buckets(self, limit: int, cursor: str | None) -> tuple[list[Bucket], str | None]:
        after = decode_cursor(cursor) if cursor else None

        async def go() -> list[BucketJob]:
            query = select(BucketJob).where(BucketJob.status == JobStatus.COMPLETED.value)
            if after is not None:
                moment, job_id = after
                query = query.where(
                    or_(
                        BucketJob.completed_at > moment,
                        and_(BucketJob.completed_at == moment, BucketJob.id > job_id),
                    )
                )
            query = query.order_by(BucketJob.completed_at, BucketJob.id).limit(limit + 1)
            async with self._sessions() as session:
                return list(await session.scalars(query))

        rows: list[BucketJob] = await self._bounded(go())
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
            await self._bounded(
                session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name}
                )
            )
            yield session

    async def signer_lanes(self) -> list[Any]:
        """Every published signer lane, with its age in seconds at the database's clock."""

        async def go() -> list[Any]:
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

        return await self._bounded(go())

    async def ping(self) -> None:
        async def go() -> None:
            async with self._sessions() as session:
                await session.execute(text("SELECT 1"))

        await self._bounded(go())

    async def wait_until_projected(
        self, targets: Mapping[int, int], deadline_s: float, held: AsyncSession | None = None
    ) -> bool:
        """Poll the projector's checkpoints until every partition reached `targets`.

        In `held` if given (read committed: each poll sees the latest commits), else in a
        session per poll."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        delay = 0.005
        query = select(ProjectorCheckpoint.partition, ProjectorCheckpoint.next_offset).where(
            ProjectorCheckpoint.topic == self._topic
        )
        while True:
            async with self._session(held) as session:
                rows = await self._bounded(session.execute(query))
            reached = {p: o for p, o in rows}
            if all(reached.get(p, 0) >= end for p, end in targets.items()):
                return True
            if loop.time() >= until:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


def _encode_cursor(row: BucketJob) -> str:
    return encode_cursor(row.completed_at or row.updated_at, row.id)


async def _owners_in(session: AsyncSession, names: Collection[str]) -> dict[str, Job]:
    rows = await session.scalars(
        select(BucketJob).where(
            BucketJob.bucket_name.in_(names),
            BucketJob.status == JobStatus.COMPLETED.value,
        )
    )
    return {row.bucket_name: _job(row) for row in rows}
