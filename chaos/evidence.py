"""What the system says happened, read straight from its stores after a scenario.

Three independent witnesses: the read model (`bucket_jobs`), a fresh fold of the whole event
log (the same pure `shared.fold.apply` the projector uses, but on our own copy of every
record), and the simulated chain's record of every `create_bucket` call (`akave_sim`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from shared.errors import MalformedEvent, UnknownEventType
from shared.events import decode
from shared.fold import JobState, JobStatus, apply
from shared.settings import Settings
from tests.support.stack import read_events

MINED = ("created", "reverted")  # create calls that reached a block (the rest were refused)


@dataclass(frozen=True)
class Row:
    """The fields of one job that the read model and the log fold must agree on."""

    bucket_name: str
    status: str
    tx_hash: str | None
    error_code: str | None
    attempts: int


@dataclass
class Evidence:
    read_model: dict[uuid.UUID, Row]
    log_fold: dict[uuid.UUID, Row]
    malformed_records: int
    unknown_records: int
    mined_calls: Counter[str]  # bucket name -> create calls that reached a block
    refused_calls: Counter[str]  # outcome -> count (nonce too low, simulated faults)
    parked: list[dict[str, str]] = field(default_factory=list)  # DLQ record headers

    def duplicate_creates(self) -> dict[str, int]:
        return {name: n - 1 for name, n in self.mined_calls.items() if n > 1}


def _row(state: JobState) -> Row:
    return Row(
        state.bucket_name, str(state.status), state.tx_hash, state.error_code, state.attempts
    )


async def fold_log(settings: Settings) -> tuple[dict[uuid.UUID, Row], int, int]:
    """Every job as the log alone tells it: (jobs, malformed records, unknown-type records)."""
    records = sorted(await read_events(settings), key=lambda r: (r.partition, r.offset))
    jobs: dict[uuid.UUID, JobState] = {}
    owners: dict[str, uuid.UUID] = {}
    malformed = unknown = 0
    for record in records:
        try:
            event = decode(record.value)
        except UnknownEventType:
            unknown += 1
            continue
        except MalformedEvent:
            malformed += 1
            continue
        after = apply(jobs.get(event.job_id), event, owners.get(event.data.bucket_name))
        if after is None:
            continue
        jobs[event.job_id] = after
        if after.status is JobStatus.COMPLETED:
            owners.setdefault(after.bucket_name, after.job_id)
    return {job_id: _row(state) for job_id, state in jobs.items()}, malformed, unknown


def read_stores(settings: Settings) -> dict[str, Any]:
    """The read model and the chain's call record (blocking; run it in a thread)."""
    engine = create_engine(settings.database_url)
    chain = create_engine(settings.sim_database_url or settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, bucket_name, status, tx_hash, error_code, attempts FROM bucket_jobs"
                )
            ).all()
        with chain.connect() as conn:
            calls = conn.execute(
                text(
                    "SELECT name, outcome, count(*) FROM akave_sim.create_calls "
                    "WHERE owner = :o GROUP BY name, outcome"
                ),
                {"o": settings.sim_owner},
            ).all()
    finally:
        engine.dispose()
        chain.dispose()
    read_model = {
        r.id: Row(r.bucket_name, r.status, r.tx_hash, r.error_code, r.attempts) for r in rows
    }
    mined: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for name, outcome, count in calls:
        if outcome in MINED:
            mined[name] += count
        else:
            refused[outcome] += count
    return {"read_model": read_model, "mined": mined, "refused": refused}


def terminal_in_read_model(settings: Settings, job_ids: list[str]) -> int:
    """How many of `job_ids` the read model shows completed or failed (blocking)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    text(
                        "SELECT count(*) FROM bucket_jobs WHERE status IN ('completed', 'failed') "
                        "AND id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": job_ids},
                )
                or 0
            )
    finally:
        engine.dispose()


async def gather(settings: Settings) -> Evidence:
    stores = await asyncio.to_thread(read_stores, settings)
    log_fold, malformed, unknown = await fold_log(settings)
    parked = [
        {k: v.decode() for k, v in record.headers}
        for record in await read_events(settings, settings.dead_letter_topic)
    ]
    return Evidence(
        read_model=stores["read_model"],
        log_fold=log_fold,
        malformed_records=malformed,
        unknown_records=unknown,
        mined_calls=stores["mined"],
        refused_calls=stores["refused"],
        parked=parked,
    )
