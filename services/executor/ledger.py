"""What one executor knows about one partition: the fold of everything in it so far.

Built by reading the partition from offset 0 on assignment, then kept current from the live
records and from the executor's own acknowledged events. It answers the two questions a job
needs the whole log for: which job owns a bucket name, which jobs are still unfinished, and
the transactions each unfinished job has signed (`BucketTransactionSigned`), which a restarted
executor must resolve before it signs anything new.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.executor.attempt_records import recorded_attempt
from services.executor.chain.records import Attempt
from shared.events import BucketTransactionSigned, Event
from shared.fold import JobState, JobStatus, apply


@dataclass
class PartitionLedger:
    owners: dict[str, uuid.UUID] = field(default_factory=dict)
    unfinished: dict[uuid.UUID, JobState] = field(default_factory=dict)
    request_offsets: dict[uuid.UUID, int] = field(default_factory=dict)
    finished: set[uuid.UUID] = field(default_factory=set)
    signed: dict[uuid.UUID, list[Attempt]] = field(default_factory=dict)  # unfinished jobs only

    def observe(self, event: Event, offset: int | None = None) -> bool:
        """Fold one event in; True when it is the request of a job not seen before."""
        job_id = event.job_id
        if job_id in self.finished:
            return False
        before = self.unfinished.get(job_id)
        after = apply(before, event, self.owners.get(event.data.bucket_name))
        if after is None:
            return False
        if after.status.is_terminal:
            self.unfinished.pop(job_id, None)
            self.request_offsets.pop(job_id, None)
            self.signed.pop(job_id, None)
            self.finished.add(job_id)
            if after.status is JobStatus.COMPLETED:
                self.owners.setdefault(after.bucket_name, job_id)
            return False
        self.unfinished[job_id] = after
        if isinstance(event.data, BucketTransactionSigned):
            recorded = self.signed.setdefault(job_id, [])
            if all(a.tx_hash != event.data.tx_hash for a in recorded):  # a redelivery
                recorded.append(recorded_attempt(event.data))
        if before is None and offset is not None:
            self.request_offsets[job_id] = offset
        return before is None

    def attempts_used(self, job_id: uuid.UUID) -> int:
        state = self.unfinished.get(job_id)
        return 0 if state is None else state.attempts

    def signed_attempts(self, job_id: uuid.UUID) -> list[Attempt]:
        """The transactions an unfinished job has recorded, in log order."""
        return list(self.signed.get(job_id, ()))

    def pending_in_log_order(self) -> list[tuple[int, JobState]]:
        """Unfinished jobs by the offset of their request."""
        return sorted(
            (self.request_offsets[j], s)
            for j, s in self.unfinished.items()
            if j in self.request_offsets
        )
