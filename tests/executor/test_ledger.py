"""The executor's fold of one partition: new requests, unfinished jobs, owners, attempts."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from itertools import count

from services.executor.attempt_records import recorded_attempt, signed_event
from services.executor.chain.records import Attempt
from services.executor.ledger import Finished, PartitionLedger
from shared.events import (
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    Event,
    EventData,
    new_event,
)
from shared.fold import JobStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ticks = count()


def at(data: EventData) -> Event:
    """An event with a time later than every earlier one made here."""
    return new_event(data, "/tests/ledger", time=T0 + timedelta(seconds=next(_ticks)))


def requested(job: uuid.UUID, name: str) -> Event:
    return at(BucketRequested(job_id=job, bucket_name=name))


def processing(job: uuid.UUID, name: str, attempt: int) -> Event:
    return at(BucketProcessing(job_id=job, bucket_name=name, attempt=attempt))


def created(job: uuid.UUID, name: str) -> Event:
    return at(BucketCreated(job_id=job, bucket_name=name, tx_hash="0x" + "1f" * 32))


def failed(job: uuid.UUID, name: str, attempts: int = 3) -> Event:
    return at(
        BucketFailed(
            job_id=job, bucket_name=name, error="gave up", error_code="backend_error",
            attempts=attempts,
        )
    )  # fmt: skip


def test_new_request_is_reported_once() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    assert ledger.observe(requested(job, "alpha"), offset=0) is True
    assert job in ledger.unfinished
    assert ledger.unfinished[job].status is JobStatus.QUEUED
    assert ledger.request_offsets == {job: 0}


def test_duplicate_request_is_not_new_and_keeps_the_first_offset() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    request = requested(job, "alpha")
    assert ledger.observe(request, offset=3) is True
    assert ledger.observe(request, offset=3) is False
    assert ledger.observe(request, offset=9) is False
    assert ledger.request_offsets == {job: 3}
    assert list(ledger.unfinished) == [job]


def test_request_redelivered_after_the_job_ended_is_not_new() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    request = requested(job, "alpha")
    ledger.observe(request, offset=0)
    ledger.observe(failed(job, "alpha"), offset=1)
    assert ledger.observe(request, offset=0) is False
    assert job not in ledger.unfinished


def test_progress_events_are_never_new_requests() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    assert ledger.observe(processing(job, "alpha", 1), offset=1) is False
    assert ledger.observe(processing(job, "alpha", 1), offset=2) is False
    assert ledger.observe(created(job, "alpha"), offset=3) is False


def test_events_of_a_job_whose_request_was_never_seen_are_ignored() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    assert ledger.observe(processing(job, "alpha", 1), offset=5) is False
    assert ledger.observe(created(job, "alpha"), offset=6) is False
    assert ledger.unfinished == {} and ledger.request_offsets == {} and ledger.recent.owners == {}


def test_completed_job_leaves_unfinished_and_its_request_offset() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    ledger.observe(processing(job, "alpha", 1), offset=1)
    ledger.observe(created(job, "alpha"), offset=2)
    assert job not in ledger.unfinished
    assert job not in ledger.request_offsets
    assert ledger.is_finished(job)
    assert ledger.pending_in_log_order() == []


def test_failed_job_leaves_unfinished_and_owns_nothing() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    ledger.observe(failed(job, "alpha"), offset=1)
    assert job not in ledger.unfinished and job not in ledger.request_offsets
    assert ledger.is_finished(job)
    assert ledger.recent.owners == {}


def test_events_after_a_job_ended_change_nothing() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    ledger.observe(created(job, "alpha"), offset=1)
    assert ledger.observe(processing(job, "alpha", 2), offset=2) is False
    assert ledger.observe(failed(job, "alpha"), offset=3) is False
    assert job not in ledger.unfinished
    assert ledger.recent.owners == {"alpha": job}


def test_first_completed_job_of_a_name_owns_it() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    ledger.observe(created(job, "alpha"), offset=1)
    assert ledger.recent.owners == {"alpha": job}


def test_later_created_for_an_owned_name_does_not_take_it_over() -> None:
    ledger = PartitionLedger()
    first, second = uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(first, "alpha"), offset=0)
    ledger.observe(requested(second, "alpha"), offset=1)
    ledger.observe(created(first, "alpha"), offset=2)
    ledger.observe(created(second, "alpha"), offset=3)
    assert ledger.recent.owners == {"alpha": first}
    assert second not in ledger.unfinished and ledger.is_finished(second)


def test_job_that_failed_does_not_block_a_later_job_from_owning_the_name() -> None:
    ledger = PartitionLedger()
    loser, winner = uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(loser, "alpha"), offset=0)
    ledger.observe(failed(loser, "alpha"), offset=1)
    ledger.observe(requested(winner, "alpha"), offset=2)
    ledger.observe(created(winner, "alpha"), offset=3)
    assert ledger.recent.owners == {"alpha": winner}


def test_owners_are_kept_per_name() -> None:
    ledger = PartitionLedger()
    a, b = uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(a, "alpha"), offset=0)
    ledger.observe(requested(b, "beta"), offset=1)
    ledger.observe(created(b, "beta"), offset=2)
    ledger.observe(created(a, "alpha"), offset=3)
    assert ledger.recent.owners == {"alpha": a, "beta": b}


def test_pending_jobs_come_in_the_order_of_their_request_offsets() -> None:
    ledger = PartitionLedger()
    jobs = {offset: uuid.uuid4() for offset in (40, 7, 23, 3, 15)}
    for offset, job in jobs.items():  # observed out of log order on purpose
        ledger.observe(requested(job, f"name-{offset}"), offset=offset)
    pending = ledger.pending_in_log_order()
    assert [offset for offset, _ in pending] == [3, 7, 15, 23, 40]
    assert [state.job_id for _, state in pending] == [jobs[o] for o in (3, 7, 15, 23, 40)]


def test_pending_jobs_leave_out_the_finished_ones() -> None:
    ledger = PartitionLedger()
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(a, "alpha"), offset=0)
    ledger.observe(requested(b, "beta"), offset=1)
    ledger.observe(requested(c, "gamma"), offset=2)
    ledger.observe(processing(a, "alpha", 1), offset=3)
    ledger.observe(created(b, "beta"), offset=4)
    pending = ledger.pending_in_log_order()
    assert [(offset, state.job_id) for offset, state in pending] == [(0, a), (2, c)]
    assert pending[0][1].status is JobStatus.PROCESSING
    assert pending[1][1].status is JobStatus.QUEUED


def test_request_observed_without_an_offset_is_not_pending() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    assert ledger.observe(requested(job, "alpha")) is True
    assert job in ledger.unfinished
    assert ledger.pending_in_log_order() == []


def test_own_event_observed_without_offset_keeps_the_request_offset() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=12)
    ledger.observe(processing(job, "alpha", 1))
    assert ledger.request_offsets == {job: 12}
    assert [offset for offset, _ in ledger.pending_in_log_order()] == [12]


def test_attempts_used_follows_processing_events() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    ledger.observe(requested(job, "alpha"), offset=0)
    assert ledger.attempts_used(job) == 0
    ledger.observe(processing(job, "alpha", 1), offset=1)
    assert ledger.attempts_used(job) == 1
    ledger.observe(processing(job, "alpha", 2), offset=2)
    assert ledger.attempts_used(job) == 2
    ledger.observe(processing(job, "alpha", 1), offset=3)  # a late duplicate of attempt 1
    assert ledger.attempts_used(job) == 2
    ledger.observe(processing(job, "alpha", 3))
    assert ledger.attempts_used(job) == 3


def test_attempts_used_is_zero_for_unknown_and_finished_jobs() -> None:
    ledger = PartitionLedger()
    job = uuid.uuid4()
    assert ledger.attempts_used(job) == 0
    ledger.observe(requested(job, "alpha"), offset=0)
    ledger.observe(processing(job, "alpha", 2), offset=1)
    ledger.observe(failed(job, "alpha", attempts=2), offset=2)
    assert ledger.attempts_used(job) == 0


def signed(job: uuid.UUID, name: str, nonce: int, fee: int) -> Event:
    attempt = Attempt(
        signer="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # anvil's public dev account 0
        chain_id=31337,
        nonce=nonce,
        tx_hash="0x" + f"{nonce:032x}{fee:032x}",
        raw="0x02f8" + f"{fee:04x}",
        max_fee_per_gas=fee,
        max_priority_fee_per_gas=1,
        gas=300_000,
        bucket_name=name,
    )
    return at(signed_event(job, 1, attempt, replacement=fee > 1))


def test_recorded_transactions_are_kept_in_log_order_once_each_until_the_job_ends() -> None:
    ledger = PartitionLedger()
    job, other = uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(job, "kept"))
    ledger.observe(processing(job, "kept", 1))
    first, bumped = signed(job, "kept", 4, 1), signed(job, "kept", 4, 2)
    for event in (first, bumped, first, requested(other, "other")):  # `first` redelivered
        ledger.observe(event)
    attempts = ledger.signed_attempts(job)
    assert [a.tx_hash for a in attempts] == [first.data.tx_hash, bumped.data.tx_hash]
    assert attempts[0] == recorded_attempt(first.data)  # type: ignore[arg-type]
    assert (attempts[1].nonce, attempts[1].max_fee_per_gas, attempts[1].raw) == (4, 2, "0x02f80002")
    assert ledger.unfinished[job].tx_hash == bumped.data.tx_hash
    assert ledger.signed_attempts(other) == []
    ledger.observe(created(job, "kept"))
    assert ledger.signed_attempts(job) == [] and job not in ledger.unfinished
    ledger.observe(signed(job, "kept", 5, 1))  # late: the job is over
    assert ledger.signed_attempts(job) == []


# Bounded memory: what finished goes to the index with a snapshot ----------------------------


class DictIndex:
    """The finished-job index as plain dicts (the Postgres one is tested in
    tests/executor/test_snapshot_store.py); counts the questions it is asked."""

    def __init__(self) -> None:
        self.jobs: set[uuid.UUID] = set()
        self.owners: dict[str, uuid.UUID] = {}
        self.questions = 0

    def write(self, layer: Finished) -> None:
        self.jobs.update(layer.jobs)
        for name, job in layer.owners.items():
            self.owners.setdefault(name, job)

    async def finished_among(self, job_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        self.questions += 1
        return {j for j in job_ids if j in self.jobs}

    async def owners_of(self, names: Collection[str]) -> dict[str, uuid.UUID]:
        self.questions += 1
        return {n: self.owners[n] for n in names if n in self.owners}


def flush(ledger: PartitionLedger, index: DictIndex) -> None:
    index.write(ledger.start_flush())
    ledger.end_flush(written=True)


async def fold(ledger: PartitionLedger, index: DictIndex, events: list[Event]) -> list[bool]:
    """One batch, as the executor folds it: prefetch, observe each, forget the answers."""
    await ledger.prefetch(events, index)
    news = [ledger.observe(e, offset=i) for i, e in enumerate(events)]
    ledger.forget_known()
    return news


async def test_a_flushed_job_leaves_memory_and_its_repeated_request_is_still_not_new() -> None:
    ledger, index = PartitionLedger(), DictIndex()
    job = uuid.uuid4()
    request = requested(job, "alpha")
    await fold(ledger, index, [request, created(job, "alpha")])
    flush(ledger, index)
    assert ledger.recent == Finished() and not ledger.is_finished(job)  # nothing in memory
    assert await fold(ledger, index, [request]) == [False]
    assert job not in ledger.unfinished


async def test_a_repeated_request_is_new_without_the_prefetch_which_the_index_answers() -> None:
    # The check above is the index's doing: without asking it the request looks new.
    ledger, index = PartitionLedger(), DictIndex()
    job = uuid.uuid4()
    await fold(ledger, index, [requested(job, "alpha"), failed(job, "alpha")])
    flush(ledger, index)
    assert ledger.observe(requested(job, "alpha"), offset=9) is True


async def test_the_owner_of_a_flushed_name_comes_from_the_index() -> None:
    ledger, index = PartitionLedger(), DictIndex()
    first, second = uuid.uuid4(), uuid.uuid4()
    await fold(ledger, index, [requested(first, "alpha"), created(first, "alpha")])
    flush(ledger, index)
    assert await ledger.owner_of("alpha", index) == first
    assert await ledger.owner_of("beta", index) is None
    # a later create of the name, in the log, cannot take it over: that job fails
    await fold(ledger, index, [requested(second, "alpha"), created(second, "alpha")])
    assert ledger.recent.owners == {} and ledger.is_finished(second)
    flush(ledger, index)
    assert index.owners == {"alpha": first}


async def test_a_snapshot_that_was_not_written_keeps_its_jobs_older_than_the_new_ones() -> None:
    ledger, index = PartitionLedger(), DictIndex()
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await fold(ledger, index, [requested(first, "alpha"), created(first, "alpha")])
    ledger.start_flush()
    # while it is being written, another job of the name and one more finish
    await fold(ledger, index, [requested(second, "alpha"), created(second, "alpha")])
    await fold(ledger, index, [requested(third, "beta"), failed(third, "beta")])
    assert await ledger.owner_of("alpha", index) == first  # the flushing layer answers
    ledger.end_flush(written=False)
    assert ledger.flushing is None
    assert list(ledger.recent.jobs) == [first, second, third]
    assert ledger.recent.owners == {"alpha": first}


async def test_memory_holds_the_unfinished_jobs_and_what_finished_since_the_last_flush() -> None:
    ledger, index = PartitionLedger(), DictIndex()
    held = []
    for round_ in range(20):
        batch: list[Event] = []
        for i in range(50):
            job = uuid.uuid4()
            batch += [requested(job, f"n-{round_}-{i}"), created(job, f"n-{round_}-{i}")]
        open_job = uuid.uuid4()
        batch.append(requested(open_job, f"open-{round_}"))
        await fold(ledger, index, batch)
        held.append(len(ledger.recent.jobs) + len(ledger.recent.owners))
        flush(ledger, index)
    assert held == [100] * 20  # 50 jobs and 50 owners a round, never the history
    assert len(ledger.unfinished) == 20 and len(index.jobs) == 1000
