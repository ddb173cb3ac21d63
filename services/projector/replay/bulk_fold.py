"""The replay's in-memory fold: the shared fold over a whole log, keeping little in memory.

A finished job (completed or failed) never changes again, so its row is handed out as soon as
the fold finishes it (`bulk_copy.py` streams it into the shadow table with COPY) and only its
id (and, when completed, its name) is remembered. Jobs still open when the log ends come last.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from shared import job_row
from shared.events import Event
from shared.fold import TERMINAL, JobState, JobStatus, apply


class BulkFold:
    """The fold of a whole log, keeping only unfinished jobs in memory."""

    def __init__(self) -> None:
        # Keyed by the job id's integer: `uuid.UUID.__hash__` is Python code, its int's is not.
        self._open: dict[int, JobState] = {}
        self._finished_ids: set[int] = set()
        self._owners: dict[str, uuid.UUID] = {}
        self._finished: list[JobState] = []

    def add(self, event: Event) -> str | None:
        """Fold one event; return why it cannot be applied, or None when it was (or changed
        nothing)."""
        key = event.data.job_id.int
        if key in self._finished_ids:
            return None  # completed and failed are terminal
        before = self._open.get(key)
        after = apply(before, event, self._owners.get(event.data.bucket_name))
        if after is None or after is before:
            return None
        problem = job_row.refusal(after, before)
        if problem is not None:
            return problem
        if after.status in TERMINAL:
            self._open.pop(key, None)
            self._finished_ids.add(key)
            self._finished.append(after)
            if after.status is JobStatus.COMPLETED:
                self._owners[after.bucket_name] = after.job_id
        else:
            self._open[key] = after
        return None

    def take_finished(self) -> list[JobState]:
        finished, self._finished = self._finished, []
        return finished

    def take_open(self) -> list[JobState]:
        remaining = list(self._open.values())
        self._open.clear()
        return remaining

    @property
    def jobs(self) -> int:
        return len(self._finished_ids) + len(self._open)


def copy_rows(states: list[JobState]) -> Iterator[tuple[object, ...]]:
    """The COPY rows of `states`, in `job_row.COLUMNS` order."""
    return map(job_row.values, states)
