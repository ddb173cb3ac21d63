"""Postgres for the executor's snapshots and its finished-job index (tables in shared/models.py).

A snapshot row, the finished jobs and the owners it covers are written in one transaction, so
a crash leaves either all of them or none (as the projector writes rows with its checkpoint).
A row is only replaced by one at a position at least as far: an executor that lost the
partition a moment ago cannot move it back. Index rows are facts of the log and written with
"first one wins" (`ON CONFLICT DO NOTHING`): a repeat after a crash changes nothing.

`drop` deletes a partition's snapshot with its index rows: the executor does this itself
before it folds a partition from offset 0 (no snapshot, or one it refused), so an index left
by another log of the same topic name can never be read as this one's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Select, TextClause, delete, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.executor.ledger import Finished
from services.executor.snapshot import Encoded
from shared.models import ExecutorFinishedJob, ExecutorOwner, ExecutorSnapshot

log = logging.getLogger(__name__)
T = TypeVar("T")
UNAVAILABLE = (SQLAlchemyError, DBAPIError, OSError, TimeoutError)
DROP_CHUNK = 50_000


@dataclass(frozen=True)
class StoredSnapshot:
    position: int
    version: int
    checksum: str
    payload: bytes
    jobs: int


class SnapshotStore:
    """One topic's snapshots and index. Its lookups are the ledger's `FinishedIndex`; they wait
    out a Postgres outage (a fold cannot go on without the answer), logging while they do."""

    def __init__(self, engine: AsyncEngine, topic: str) -> None:
        self._engine = engine
        self.topic = topic

    async def load(self, partition: int) -> StoredSnapshot | None:
        async def read() -> StoredSnapshot | None:
            async with self._engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(
                            ExecutorSnapshot.position,
                            ExecutorSnapshot.version,
                            ExecutorSnapshot.checksum,
                            ExecutorSnapshot.payload,
                            ExecutorSnapshot.jobs,
                        ).where(
                            ExecutorSnapshot.topic == self.topic,
                            ExecutorSnapshot.partition == partition,
                        )
                    )
                ).one_or_none()
            return None if row is None else StoredSnapshot(*row)

        return await self._until_answered("load a snapshot", read)

    async def save(
        self, partition: int, position: int, encoded: Encoded, finished: Finished
    ) -> bool:
        """Write the snapshot and the index rows it covers in one transaction; False (logged)
        when Postgres did not take them: the caller keeps `finished` for the next one."""
        try:
            async with self._engine.begin() as conn:
                if finished.jobs:
                    await conn.execute(
                        text(
                            "INSERT INTO executor_finished (topic, job_id, partition) "
                            "SELECT :topic, unnest(CAST(:ids AS uuid[])), :partition "
                            "ON CONFLICT DO NOTHING"
                        ),
                        {"topic": self.topic, "ids": list(finished.jobs), "partition": partition},
                    )
                if finished.owners:
                    await conn.execute(
                        text(
                            "INSERT INTO executor_owners (topic, bucket_name, job_id, partition) "
                            "SELECT :topic, o.name, o.job, :partition "
                            "FROM unnest(CAST(:names AS text[]), CAST(:jobs AS uuid[])) "
                            "AS o(name, job) ON CONFLICT DO NOTHING"
                        ),
                        {
                            "topic": self.topic,
                            "names": list(finished.owners),
                            "jobs": list(finished.owners.values()),
                            "partition": partition,
                        },
                    )
                await conn.execute(
                    text(
                        "INSERT INTO executor_snapshots "
                        "(topic, partition, position, version, checksum, payload, jobs, taken_at) "
                        "VALUES (:topic, :partition, :position, :version, :checksum, :payload, "
                        ":jobs, :taken_at) "
                        "ON CONFLICT (topic, partition) DO UPDATE SET "
                        "position = excluded.position, version = excluded.version, "
                        "checksum = excluded.checksum, payload = excluded.payload, "
                        "jobs = excluded.jobs, taken_at = excluded.taken_at "
                        "WHERE executor_snapshots.position <= excluded.position"
                    ),
                    {
                        "topic": self.topic,
                        "partition": partition,
                        "position": position,
                        "version": encoded.version,
                        "checksum": encoded.checksum,
                        "payload": encoded.payload,
                        "jobs": encoded.jobs,
                        "taken_at": datetime.now(UTC),
                    },
                )
        except UNAVAILABLE as exc:
            log.warning(
                "snapshot not written; the next one retries",
                extra={"partition": partition, "position": position, "error": str(exc)},
            )
            return False
        return True

    async def drop(self, partition: int | None = None) -> None:
        """Delete the snapshots (one partition's, or the topic's), then their index rows in
        chunks of `DROP_CHUNK` (an index of millions of rows must not run into the statement
        timeout). The snapshot goes first: rows without one are never read as a snapshot's."""

        async def remove_snapshots() -> None:
            async with self._engine.begin() as conn:
                query = delete(ExecutorSnapshot).where(ExecutorSnapshot.topic == self.topic)
                if partition is not None:
                    query = query.where(ExecutorSnapshot.partition == partition)
                await conn.execute(query)

        await self._until_answered("drop a snapshot", remove_snapshots)
        for table in ("executor_finished", "executor_owners"):
            where = "topic = :topic" + ("" if partition is None else " AND partition = :p")
            chunk = text(
                f"DELETE FROM {table} WHERE ctid IN "  # the table names are ours
                f"(SELECT ctid FROM {table} WHERE {where} LIMIT {DROP_CHUNK})"
            )

            async def remove_chunk(chunk: TextClause = chunk) -> int:
                async with self._engine.begin() as conn:
                    result = await conn.execute(chunk, {"topic": self.topic, "p": partition})
                    return int(result.rowcount)

            while await self._until_answered("drop a snapshot's index", remove_chunk) >= DROP_CHUNK:
                pass

    def finished_query(self, job_ids: Collection[uuid.UUID]) -> Select[uuid.UUID]:
        """Primary-key lookups (topic, job_id): O(log n) in the index's size."""
        return select(ExecutorFinishedJob.job_id).where(
            ExecutorFinishedJob.topic == self.topic,
            ExecutorFinishedJob.job_id.in_(list(job_ids)),
        )

    def owners_query(self, names: Collection[str]) -> Select[str, uuid.UUID]:
        """Primary-key lookups (topic, bucket_name): O(log n) in the index's size."""
        return select(ExecutorOwner.bucket_name, ExecutorOwner.job_id).where(
            ExecutorOwner.topic == self.topic, ExecutorOwner.bucket_name.in_(list(names))
        )

    async def finished_among(self, job_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        async def read() -> set[uuid.UUID]:
            async with self._engine.connect() as conn:
                return set((await conn.execute(self.finished_query(job_ids))).scalars())

        return await self._until_answered("look up finished jobs", read)

    async def owners_of(self, names: Collection[str]) -> dict[str, uuid.UUID]:
        async def read() -> dict[str, uuid.UUID]:
            async with self._engine.connect() as conn:
                rows = await conn.execute(self.owners_query(names))
                return {name: job for name, job in rows}

        return await self._until_answered("look up bucket owners", read)

    @staticmethod
    async def _until_answered(what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.2
        while True:
            try:
                return await call()
            except UNAVAILABLE as exc:
                log.warning("postgres unavailable; waiting", extra={"op": what, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
