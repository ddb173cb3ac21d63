"""The replay's in-memory fold: the shared fold over a whole log, keeping little in memory.

A finished job (completed or failed) never changes again, so its row is handed out as soon as
the fold finishes it (`bulk_copy.py` streams it into the shadow table with COPY) and only its
id (and, when completed, its name) is remembered. Jobs still open when the log ends come last.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import Event
from shared.fold import JobState, JobStatus, apply

# JobState field -> bucket_jobs column, in COPY order.
COLUMNS = {name: "id" if name == "job_id" else name for name in JobState._fields}
TEXT_COLUMNS = ("bucket_name", "tx_hash", "error", "error_code")
TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


async def column_limits(conn: AsyncConnection, schema: str) -> dict[str, int]:
    """Maximum length of each length-limited text column of `bucket_jobs`."""
    rows = await conn.execute(
        text(
            "SELECT column_name, character_maximum_length FROM information_schema.columns "
            "WHERE table_schema = :s AND table_name = 'bucket_jobs' "
            "AND character_maximum_length IS NOT NULL"
        ),
        {"s": schema},
    )
    return {name: int(limit) for name, limit in rows}


def unstorable(
    state: JobState, limits: Mapping[str, int], before: JobState | None = None
) -> str | None:
    """Why Postgres would refuse this row, for the refusals an event can cause; else None.

    The live projector learns the same from the database (a `DataError` on its upsert); a
    replay cannot afford a round trip per row, so it checks the same rules here, and only
    when a text value differs from `before` (already checked).
    """
    if before is not None and (
        state.bucket_name == before.bucket_name
        and state.tx_hash == before.tx_hash
        and state.error == before.error
        and state.error_code == before.error_code
    ):
        return None
    texts = (state.bucket_name, state.tx_hash, state.error, state.error_code)
    for column, value in zip(TEXT_COLUMNS, texts, strict=True):
        if value is None:
            continue
        if "\x00" in value:
            return f"PostgreSQL text fields cannot contain NUL (0x00) bytes ({column})"
        limit = limits.get(column)
        if limit is not None and len(value) > limit:
            return f"value too long for type character varying({limit}) ({column})"
    return None


class BulkFold:
    """The fold of a whole log, keeping only unfinished jobs in memory."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = limits
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
        problem = unstorable(after, self._limits, before)
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
    for s in states:
        yield (
            s.job_id,
            s.bucket_name,
            s.status.value,
            s.created_at,
            s.updated_at,
            s.attempts,
            s.tx_hash,
            s.error,
            s.error_code,
            s.completed_at,
        )
