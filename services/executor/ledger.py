"""What one executor knows about one partition: the fold of everything in it so far.

Restored from the partition's snapshot (`snapshot.py`) and the records after its position, or
built from offset 0 when there is none, then kept current from the live records and from the
executor's own acknowledged events. It answers what a job needs the whole log for: which job
owns a bucket name, which jobs are still unfinished, and the transactions each unfinished job
has signed (`BucketTransactionSigned`), which a restarted executor must resolve before it signs
anything new.

Memory holds only the unfinished jobs and what finished since the last snapshot (`recent`).
Everything older lives in the finished-job index (`FinishedIndex`, Postgres, written with each
snapshot), asked once per batch for the jobs and names the batch needs (`prefetch`) and per job
for its bucket's owner (`owner_of`). The fold itself stays synchronous and pure.

Rule: folding an event twice changes nothing (the fold ignores repeats: a terminal job ignores
everything, an attempt is deduplicated by its hash, attempts only grow). Own events are folded
when acknowledged and again when read from the log, and a snapshot may hold own events above
its position; both are therefore safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from services.executor.attempt_records import recorded_attempt
from services.executor.chain.records import Attempt
from shared.events import BucketCreated, BucketRequested, BucketTransactionSigned, Event
from shared.fold import JobState, JobStatus, apply


class FinishedIndex(Protocol):
    """Finished jobs and bucket owners older than the memory's layers (Postgres in service)."""

    async def finished_among(self, job_ids: Collection[uuid.UUID]) -> set[uuid.UUID]: ...

    async def owners_of(self, names: Collection[str]) -> dict[str, uuid.UUID]: ...


class EmptyIndex:
    """No history beyond memory: a ledger folded from offset 0 that never flushed."""

    async def finished_among(self, job_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return set()

    async def owners_of(self, names: Collection[str]) -> dict[str, uuid.UUID]:
        return {}


@dataclass
class Finished:
    """Jobs that reached a terminal status, in the order they did, and the owners they made
    (first completed job of a name wins)."""

    jobs: dict[uuid.UUID, str] = field(default_factory=dict)  # job id -> bucket name
    owners: dict[str, uuid.UUID] = field(default_factory=dict)

    def absorb(self, later: Finished) -> None:
        """Add what finished after this layer (an owner already here keeps the name)."""
        self.jobs.update(later.jobs)
        for name, job in later.owners.items():
            self.owners.setdefault(name, job)


@dataclass
class PartitionLedger:
    unfinished: dict[uuid.UUID, JobState] = field(default_factory=dict)
    request_offsets: dict[uuid.UUID, int] = field(default_factory=dict)
    signed: dict[uuid.UUID, list[Attempt]] = field(default_factory=dict)  # unfinished jobs only
    traceparents: dict[uuid.UUID, str] = field(default_factory=dict)  # unfinished jobs only
    recent: Finished = field(default_factory=Finished)  # since the last snapshot
    flushing: Finished | None = None  # being written with a snapshot right now
    known: Finished = field(default_factory=Finished)  # what the index said, for one batch

    # The fold -------------------------------------------------------------------------------

    def observe(self, event: Event, offset: int | None = None) -> bool:
        """Fold one event in; True when it is the request of a job not seen before. The index's
        part of the answer must be `prefetch`ed first (own events need none: they are of
        unfinished jobs)."""
        job_id = event.job_id
        if self.is_finished(job_id):
            return False
        before = self.unfinished.get(job_id)
        after = apply(before, event, self._owner_in_memory(event.data.bucket_name))
        if after is None:
            return False
        if after.status.is_terminal:
            self._finish(after)
            return False
        self.unfinished[job_id] = after
        if isinstance(event.data, BucketTransactionSigned):
            recorded = self.signed.setdefault(job_id, [])
            if all(a.tx_hash != event.data.tx_hash for a in recorded):  # a redelivery
                recorded.append(recorded_attempt(event.data))
        if before is None and offset is not None:
            self.request_offsets[job_id] = offset
        return before is None

    def _finish(self, state: JobState) -> None:
        job_id = state.job_id
        self.unfinished.pop(job_id, None)
        self.request_offsets.pop(job_id, None)
        self.signed.pop(job_id, None)
        self.traceparents.pop(job_id, None)
        self.recent.jobs[job_id] = state.bucket_name
        if state.status is JobStatus.COMPLETED and self._owner_in_memory(state.bucket_name) is None:
            self.recent.owners[state.bucket_name] = job_id

    # Lookups --------------------------------------------------------------------------------

    def _layers(self) -> Iterable[Finished]:
        yield self.recent
        if self.flushing is not None:
            yield self.flushing
        yield self.known

    def is_finished(self, job_id: uuid.UUID) -> bool:
        return any(job_id in layer.jobs for layer in self._layers())

    def _owner_in_memory(self, name: str) -> uuid.UUID | None:
        # Oldest first: an owner the index or the flushing layer holds came before `recent`'s.
        for layer in (self.known, self.flushing, self.recent):
            if layer is not None and (owner := layer.owners.get(name)) is not None:
                return owner
        return None

    async def prefetch(self, events: Iterable[Event], index: FinishedIndex) -> None:
        """Ask the index, in one query each, what the fold of `events` needs beyond memory:
        whether a request's job finished long ago, and who owns a name a create is for."""
        requests: set[uuid.UUID] = set()
        names: set[str] = set()
        for event in events:
            data = event.data
            if isinstance(data, BucketRequested):
                if data.job_id not in self.unfinished and not self.is_finished(data.job_id):
                    requests.add(data.job_id)
            elif (  # its request may be in this batch too: not only unfinished jobs' creates
                isinstance(data, BucketCreated)
                and not self.is_finished(data.job_id)
                and self._owner_in_memory(data.bucket_name) is None
            ):
                names.add(data.bucket_name)
        finished = await index.finished_among(requests) if requests else set()
        owners = await index.owners_of(names) if names else {}
        self.known = Finished(dict.fromkeys(finished, ""), owners)

    def forget_known(self) -> None:
        """Drop the batch's answers from the index: memory stays bounded by the batch."""
        self.known = Finished()

    async def owner_of(self, name: str, index: FinishedIndex) -> uuid.UUID | None:
        """The job that completed a bucket of `name` first, if any."""
        owner = self._owner_in_memory(name)
        if owner is not None:
            return owner
        return (await index.owners_of([name])).get(name)

    # Snapshots ------------------------------------------------------------------------------

    def start_flush(self) -> Finished:
        """What finished since the last snapshot, to be written with the next; from now on it
        is looked up in the `flushing` layer until `end_flush`."""
        assert self.flushing is None, "one snapshot at a time"
        self.flushing, self.recent = self.recent, Finished()
        return self.flushing

    def end_flush(self, written: bool) -> None:
        """The snapshot was committed (the index holds the layer now) or not (it stays in
        memory, older than what finished meanwhile, for the next snapshot)."""
        flushing, self.flushing = self.flushing, None
        if not written and flushing is not None:
            flushing.absorb(self.recent)
            self.recent = flushing

    # Questions of the job flow --------------------------------------------------------------

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
