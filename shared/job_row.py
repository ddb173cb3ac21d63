"""The one mapping between a job's state (`shared.fold.JobState`) and its `bucket_jobs` row.

The table (`shared.models.BucketJob`) is the definition: its columns, their order and their
limits. The projector's upsert, the replay's COPY and the API's reads all map through here.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, itemgetter

from sqlalchemy import String

from shared.fold import JobState, JobStatus
from shared.models import BucketJob

_TABLE = BucketJob.__table__
_FIELD_OF_COLUMN = {"id": "job_id"}  # where a JobState field is named unlike its column

# The table's columns in its order: the order of `values` and of the replay's COPY.
COLUMNS: tuple[str, ...] = tuple(column.name for column in _TABLE.columns)
_FIELDS = tuple(_FIELD_OF_COLUMN.get(column, column) for column in COLUMNS)

# JobState in column order. `status` stays a JobStatus: a StrEnum is the str of its value.
values: Callable[[JobState], tuple[object, ...]] = itemgetter(
    *(JobState._fields.index(field) for field in _FIELDS)
)
_from_row: Callable[[BucketJob], tuple[object, ...]] = attrgetter(
    *(COLUMNS[_FIELDS.index(field)] for field in JobState._fields)
)

# Text columns and their length limit (None: unlimited), in column order.
_TEXT_LIMITS: tuple[tuple[str, int | None], ...] = tuple(
    (column.name, column.type.length)
    for column in _TABLE.columns
    if isinstance(column.type, String)
)
_texts: Callable[[JobState], tuple[str | None, ...]] = itemgetter(
    *(JobState._fields.index(_FIELD_OF_COLUMN.get(c, c)) for c, _ in _TEXT_LIMITS)
)


def to_row(state: JobState) -> dict[str, object]:
    """The row's values by column name."""
    return dict(zip(COLUMNS, values(state), strict=True))


def from_row(row: BucketJob) -> JobState:
    """The state a row holds (`BucketJob`'s attributes are named as its columns)."""
    state = JobState._make(_from_row(row))
    return state._replace(status=JobStatus(state.status))


def refusal(state: JobState, before: JobState | None = None) -> str | None:
    """Why Postgres would refuse the row of `state` (the refusals an event can cause: a NUL
    byte in text, text longer than its column), in Postgres's words; None when it would not.

    The live projector learns this from the database (a `DataError` on its upsert); a replay
    cannot afford a round trip per row and asks here. Text equal to `before`'s passed already.
    """
    texts = _texts(state)
    if before is not None and texts == _texts(before):
        return None
    for (column, limit), value in zip(_TEXT_LIMITS, texts, strict=True):
        if value is None:
            continue
        if "\x00" in value:
            return f"PostgreSQL text fields cannot contain NUL (0x00) bytes ({column})"
        if limit is not None and len(value) > limit:
            return f"value too long for type character varying({limit}) ({column})"
    return None
