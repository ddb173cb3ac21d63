"""A partition's unfinished jobs as bytes, and back: what a snapshot row's payload holds.

The payload is JSON with its format `VERSION`; the row keeps the version and the payload's
SHA-256 beside it. `decode` refuses (`SnapshotRefused`, with the reason) a payload whose
checksum does not match, whose version is not this code's, or that does not parse: the
executor then folds the partition from offset 0 and writes a new snapshot. The finished jobs
and owners are not in the payload: they go to the finished-job index in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from services.executor.chain.records import Attempt
from services.executor.ledger import PartitionLedger
from shared.fold import JobState, JobStatus

VERSION = 1


class SnapshotRefused(Exception):
    """A stored snapshot this executor will not use; the message says why."""


@dataclass(frozen=True)
class Encoded:
    payload: bytes
    checksum: str
    jobs: int  # unfinished jobs it holds
    version: int = VERSION


def checksum_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def encode(ledger: PartitionLedger, position: int) -> Encoded:
    jobs = [
        {
            "state": _state_out(state),
            "request_offset": ledger.request_offsets.get(job_id),
            "signed": [asdict(a) for a in ledger.signed.get(job_id, ())],
            "traceparent": ledger.traceparents.get(job_id),
        }
        for job_id, state in ledger.unfinished.items()
    ]
    payload = json.dumps(
        {"version": VERSION, "position": position, "jobs": jobs}, separators=(",", ":")
    ).encode()
    return Encoded(payload, checksum_of(payload), len(jobs))


def decode(payload: bytes, version: int, checksum: str, position: int) -> PartitionLedger:
    """The ledger the payload holds (no finished layer: that is the index's)."""
    if version != VERSION:
        newer = "newer than" if version > VERSION else "older than"
        raise SnapshotRefused(
            f"snapshot format version {version} is {newer} the version this executor reads "
            f"({VERSION})"
        )
    if checksum_of(payload) != checksum:
        raise SnapshotRefused("snapshot payload does not match its checksum (corrupted)")
    try:
        body = json.loads(payload)
        if body["version"] != VERSION or body["position"] != position:
            raise SnapshotRefused(
                f"snapshot payload is of version {body['version']} at position "
                f"{body['position']}, its row says version {VERSION} at {position}"
            )
        ledger = PartitionLedger()
        for job in body["jobs"]:
            state = _state_in(job["state"])
            ledger.unfinished[state.job_id] = state
            if job["request_offset"] is not None:
                ledger.request_offsets[state.job_id] = int(job["request_offset"])
            if job["signed"]:
                ledger.signed[state.job_id] = [Attempt(**a) for a in job["signed"]]
            if job["traceparent"]:
                ledger.traceparents[state.job_id] = str(job["traceparent"])
    except SnapshotRefused:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotRefused(
            f"snapshot payload cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
    return ledger


def _state_out(state: JobState) -> dict[str, Any]:
    return {
        "job_id": str(state.job_id),
        "bucket_name": state.bucket_name,
        "status": state.status.value,
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
        "attempts": state.attempts,
        "tx_hash": state.tx_hash,
        "error": state.error,
        "error_code": state.error_code,
        "completed_at": _time_out(state.completed_at),
        "retry_of": None if state.retry_of is None else str(state.retry_of),
    }


def _state_in(raw: dict[str, Any]) -> JobState:
    return JobState(
        job_id=uuid.UUID(raw["job_id"]),
        bucket_name=str(raw["bucket_name"]),
        status=JobStatus(raw["status"]),
        created_at=datetime.fromisoformat(raw["created_at"]),
        updated_at=datetime.fromisoformat(raw["updated_at"]),
        attempts=int(raw["attempts"]),
        tx_hash=raw["tx_hash"],
        error=raw["error"],
        error_code=raw["error_code"],
        completed_at=_time_in(raw["completed_at"]),
        retry_of=None if raw["retry_of"] is None else uuid.UUID(raw["retry_of"]),
    )


def _time_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
