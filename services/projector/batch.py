"""Apply one batch of records to the read model: fold + upserts + checkpoints, one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.projector import store
from shared.consume import Record, Refused, SortedBatch, sort_batch
from shared.fold import JobState, JobStatus, apply

# Errors that the same row will raise again on every retry (a value too long for its column, a
# NUL byte in text, a constraint): the event is parked, not retried. Connection trouble is not
# among them; the caller retries the whole batch for that.
UNAPPLICABLE: tuple[type[Exception], ...] = (DataError, IntegrityError)


@dataclass
class BatchOutcome:
    applied: int = 0
    already_applied: int = 0
    # The records past the checkpoints, sorted: events, unknown types, malformed records.
    batch: SortedBatch = field(default_factory=SortedBatch)
    unapplicable: list[Refused] = field(default_factory=list)
    rewind: dict[int, int] = field(default_factory=dict)
    checkpoints: dict[int, int] = field(default_factory=dict)
    # each row change as (before, after, the event's time): what the metrics are built from
    transitions: list[tuple[JobState | None, JobState, datetime]] = field(default_factory=list)


async def apply_batch(
    session: AsyncSession,
    topic: str,
    records: Sequence[Record],
    expected: Mapping[int, int],
    *,
    isolate: bool = False,
) -> BatchOutcome:
    """Fold `records` into `bucket_jobs`; the caller commits.

    `expected` is where this projector believes each partition's checkpoint stands. When the
    stored one is lower (a rebuild emptied the table), the partition is rewound instead of
    applied; when it is higher (another projector got there first), older records are skipped.

    Normally the changed rows are written with one upsert at the end. With `isolate` (after
    that upsert failed with an `UNAPPLICABLE` error) each event's row is written under its
    own savepoint, and an event whose row the database refuses is reported in `unapplicable`
    instead of applied: the job keeps its state from before that event.
    """
    outcome = BatchOutcome()
    stored = await store.lock_checkpoints(session, topic, (r.partition for r in records))
    events, outcome.batch = sort_batch(_unapplied(records, stored, expected, outcome))
    jobs = await store.load_jobs(session, (e.job_id for _, e in events))
    owners = await store.completed_owners(session, (e.data.bucket_name for _, e in events))
    changed: dict[uuid.UUID, JobState] = {}
    for record, event in events:
        before = jobs.get(event.job_id)
        after = apply(before, event, owners.get(event.data.bucket_name))
        outcome.applied += 1
        if after is None or after == before:
            continue
        if isolate:
            try:
                async with session.begin_nested():
                    await store.upsert_jobs(session, [after])
            except UNAPPLICABLE as exc:
                outcome.applied -= 1
                outcome.unapplicable.append((record, str(getattr(exc, "orig", exc))))
                continue
        jobs[event.job_id] = changed[event.job_id] = after
        outcome.transitions.append((before, after, event.time))
        if after.status is JobStatus.COMPLETED:
            owners[after.bucket_name] = after.job_id
    if not isolate:
        await store.upsert_jobs(session, changed.values())
    outcome.checkpoints = {p: o for p, o in stored.items() if p not in outcome.rewind}
    await store.save_checkpoints(session, topic, outcome.checkpoints)
    return outcome


def _unapplied(
    records: Sequence[Record],
    stored: dict[int, int],
    expected: Mapping[int, int],
    outcome: BatchOutcome,
) -> Iterator[Record]:
    """The records past their partition's stored checkpoint, advancing it over them; a
    partition whose stored checkpoint is behind `expected` is marked for rewinding instead."""
    for record in records:
        p = record.partition
        if p in outcome.rewind:
            continue
        if stored[p] < expected.get(p, stored[p]):
            outcome.rewind[p] = stored[p]
            continue
        if record.offset < stored[p]:
            outcome.already_applied += 1
            continue
        stored[p] = record.offset + 1
        yield record
