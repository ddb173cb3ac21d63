"""The replay's in-memory fold: the shared fold over a whole log, keeping only unfinished jobs.

A finished job (completed or failed) never changes again, so its row is handed out as soon as
the fold finishes it (`bulk_copy.py` streams it into the staging table with COPY) and the job
is forgotten: memory is bounded by the jobs still open, not by the length of the log. Two
rules of the fold need what was forgotten, and `resolve.py` applies them in SQL once the log
is loaded, from what each row carries besides its columns:

- a `BucketRequested` for a job that already finished starts the job again here (a *repeat*
  row); the row of a job's first request is the job, every later one is dropped
  (`request_pos`);
- a `BucketCreated` is folded as if no other job owned the name; of the rows of one name
  completed that way, the one completed first owns it, and the others fail with
  `bucket_exists` (`done_pos`, and `prior_tx_hash`: the hash the job showed before that event).

Jobs still open when the log ends come last (`take_open`).
"""

from __future__ import annotations

from collections.abc import Iterator

from shared import job_row
from shared.events import BucketCreated, Event
from shared.fold import TERMINAL, JobState, JobStatus, apply

# A record's place in the log as one bigint: partition in the high bits, offset in the low.
OFFSET_BITS = 47
_MAX_OFFSET = 1 << OFFSET_BITS

# What a staged row carries after the table's columns, in COPY order.
EXTRA_COLUMNS: tuple[str, ...] = ("request_pos", "done_pos", "prior_tx_hash")

Staged = tuple[object, ...]  # job_row.values(state) + (request_pos, done_pos, prior_tx_hash)


def position(partition: int, offset: int) -> int:
    if offset >= _MAX_OFFSET:
        raise ValueError(f"offset {offset} does not fit the replay's {OFFSET_BITS} bits")
    return partition << OFFSET_BITS | offset


class BulkFold:
    """The fold of a whole log, keeping only unfinished jobs in memory."""

    def __init__(self) -> None:
        # Keyed by the job id's integer: `uuid.UUID.__hash__` is Python code, its int's is not.
        # Each open job with the position of the request that started it here.
        self._open: dict[int, tuple[JobState, int]] = {}
        self._finished: list[Staged] = []
        self.rows = 0  # rows handed out, repeats included

    def add(self, event: Event, pos: int) -> str | None:
        """Fold one event found at `pos` (`position`); return why it cannot be applied, or
        None when it was (or changed nothing)."""
        key = event.data.job_id.int
        entry = self._open.get(key)
        before = None if entry is None else entry[0]
        after = apply(before, event)
        if after is None or after is before:
            return None
        problem = job_row.refusal(after, before)
        if problem is not None:
            return problem
        started = pos if entry is None else entry[1]
        if after.status in TERMINAL:
            if entry is not None:
                del self._open[key]
            created = after.status is JobStatus.COMPLETED and isinstance(event.data, BucketCreated)
            prior = before.tx_hash if before is not None else None
            self._finished.append(
                (*job_row.values(after), started, pos if created else None, prior)
            )
            self.rows += 1
        else:
            self._open[key] = (after, started)
        return None

    def take_finished(self) -> list[Staged]:
        finished, self._finished = self._finished, []
        return finished

    def take_open(self) -> list[Staged]:
        remaining = [(*job_row.values(s), pos, None, None) for s, pos in self._open.values()]
        self.rows += len(remaining)
        self._open.clear()
        return remaining

    @property
    def open_jobs(self) -> int:
        return len(self._open)


def copy_rows(states: list[JobState]) -> Iterator[tuple[object, ...]]:
    """The COPY rows of `states`, in `job_row.COLUMNS` order."""
    return map(job_row.values, states)
