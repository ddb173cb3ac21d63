"""The fold from events to a job's state, against what at-least-once delivery does to a log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.error_codes import BUCKET_EXISTS
from shared.events import (
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    BucketTransactionSigned,
    Event,
    EventData,
)
from shared.fold import JobState, JobStatus, apply

RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.PROCESSING: 1,
    JobStatus.COMPLETED: 2,
    JobStatus.FAILED: 2,
}
names = st.from_regex(r"[a-z0-9][a-z0-9-]{1,30}[a-z0-9]", fullmatch=True)
tx_hashes = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())


@dataclass(frozen=True)
class History:
    """One job's events as the executor wrote them, and what that job should end as."""

    events: list[Event]
    ending: str | None  # None, "created" or "failed"
    attempts: int

    @property
    def job_id(self) -> uuid.UUID:
        return self.events[0].job_id

    @property
    def bucket_name(self) -> str:
        return self.events[0].subject


def signed(
    job_id: uuid.UUID, bucket: str, attempt: int, nonce: int, tx_hash: str
) -> BucketTransactionSigned:
    return BucketTransactionSigned(
        job_id=job_id,
        bucket_name=bucket,
        attempt=attempt,
        kind="replacement" if nonce else "create",
        signer="0x" + "ab" * 20,
        chain_id=31337,
        nonce=7,
        tx_hash=tx_hash,
        raw_transaction="0x02f870",
        max_fee_per_gas=10**9 * (nonce + 1),
        max_priority_fee_per_gas=10**9,
        gas=300_000,
    )


def pending_hash(events: Sequence[Event]) -> str | None:
    """The hash a job shows while it waits: that of the last transaction record that was newer
    (by event time) than every event before it."""
    shown, newest = None, events[0].time
    for event in events[1:]:
        if isinstance(event.data, BucketTransactionSigned) and event.time > newest:
            shown = event.data.tx_hash
        newest = max(newest, event.time)
    return shown


@st.composite
def histories(draw: st.DrawFn, name: str | None = None, ending: str | None = "any") -> History:
    """Requested, 0..4 Processing attempts, then maybe Created or Failed.

    Event times mostly move forward but may step back a little: events come from different
    executor processes whose clocks are not perfectly in step.
    """
    job_id = draw(st.uuids())
    bucket = name if name is not None else draw(names)
    attempts = draw(st.integers(min_value=0, max_value=4))
    if ending == "any":
        ending = draw(st.sampled_from([None, "created", "failed"]))
    payloads: list[EventData] = [BucketRequested(job_id=job_id, bucket_name=bucket)]
    for a in range(1, attempts + 1):
        payloads.append(BucketProcessing(job_id=job_id, bucket_name=bucket, attempt=a))
        for nonce in range(draw(st.integers(min_value=0, max_value=2))):  # its transactions
            payloads.append(signed(job_id, bucket, a, nonce, draw(tx_hashes)))
    if ending == "created":
        adopted = draw(st.booleans())
        payloads.append(
            BucketCreated(
                job_id=job_id,
                bucket_name=bucket,
                tx_hash=None if adopted else draw(tx_hashes),
                adopted=adopted,
            )
        )
    elif ending == "failed":
        payloads.append(
            BucketFailed(
                job_id=job_id,
                bucket_name=bucket,
                error=draw(st.text(max_size=40)),
                error_code=draw(st.sampled_from(["insufficient_funds", "backend_error"])),
                attempts=attempts,
            )
        )
    start = draw(
        st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2030, 1, 1))
    ).replace(tzinfo=UTC)
    steps_ms = draw(
        st.lists(
            st.integers(min_value=-2_000, max_value=600_000),
            min_size=len(payloads),
            max_size=len(payloads),
        )
    )
    events = []
    moment = start
    for payload, step in zip(payloads, steps_ms, strict=True):
        moment += timedelta(milliseconds=step)
        events.append(
            Event(
                id=str(draw(st.uuids())),
                source="/tests/fold",
                type=payload.type,
                subject=bucket,
                time=moment,
                data=payload,
            )
        )
    return History(events, ending, attempts)


@st.composite
def redelivered(draw: st.DrawFn, events: Sequence[Event]) -> list[Event]:
    """What a consumer may see: any event repeated later on, then a prefix delivered again."""
    delivered = list(events)
    for _ in range(draw(st.integers(min_value=0, max_value=2 * len(events)))):
        original = draw(st.integers(min_value=0, max_value=len(delivered) - 1))
        later = draw(st.integers(min_value=original + 1, max_value=len(delivered)))
        delivered.insert(later, delivered[original])
    prefix = draw(st.integers(min_value=0, max_value=len(events)))
    return delivered + list(events[:prefix])


@st.composite
def history_and_delivery(draw: st.DrawFn) -> tuple[History, list[Event]]:
    history = draw(histories())
    return history, draw(redelivered(history.events))


def steps(events: Iterable[Event], owner: uuid.UUID | None = None) -> list[JobState | None]:
    """The job's state after each event."""
    state: JobState | None = None
    seen = []
    for event in events:
        state = apply(state, event, owner)
        seen.append(state)
    return seen


def fold(events: Iterable[Event], owner: uuid.UUID | None = None) -> JobState | None:
    return steps(events, owner)[-1]


# The plain history ----------------------------------------------------------------------------


@given(histories())
def test_history_folds_to_the_state_its_last_event_says(history: History) -> None:
    state = fold(history.events)
    assert state is not None
    requested = history.events[0]
    assert state.job_id == history.job_id and state.bucket_name == history.bucket_name
    assert state.created_at == requested.time
    assert state.updated_at == max(e.time for e in history.events)
    assert state.attempts == history.attempts
    last = history.events[-1].data
    if history.ending == "created":
        assert isinstance(last, BucketCreated)
        assert state.status is JobStatus.COMPLETED
        assert state.tx_hash == last.tx_hash
        assert state.completed_at == history.events[-1].time
        assert state.error is None and state.error_code is None
    elif history.ending == "failed":
        assert isinstance(last, BucketFailed)
        assert state.status is JobStatus.FAILED
        assert (state.error, state.error_code) == (last.error, last.error_code)
        assert state.tx_hash == pending_hash(history.events) and state.completed_at is None
    else:
        expected = JobStatus.PROCESSING if history.attempts else JobStatus.QUEUED
        assert state.status is expected
        assert state.tx_hash == pending_hash(history.events)
        assert state.error is None and state.completed_at is None


def at(moment: datetime, data: EventData) -> Event:
    return Event(
        id=str(uuid.uuid4()), source="/t", type=data.type, subject="b", time=moment, data=data
    )


def test_a_waiting_job_shows_its_newest_transaction_and_completes_with_the_mined_one() -> None:
    job, t0 = uuid.uuid4(), datetime(2026, 12, 1, tzinfo=UTC)
    first, bumped = "0x" + "1" * 64, "0x" + "2" * 64
    log = [
        at(t0, BucketRequested(job_id=job, bucket_name="b")),
        at(t0 + timedelta(seconds=1), BucketProcessing(job_id=job, bucket_name="b", attempt=1)),
        at(t0 + timedelta(seconds=2), signed(job, "b", 1, 0, first)),
    ]
    state = fold(log)
    assert state is not None
    assert (state.status, state.tx_hash, state.attempts) == (JobStatus.PROCESSING, first, 1)
    log.append(at(t0 + timedelta(seconds=9), signed(job, "b", 1, 1, bumped)))
    log.append(log[2])  # the first record again, delivered late: the bumped one stays shown
    state = fold(log)
    assert state is not None and state.tx_hash == bumped
    log.append(
        at(t0 + timedelta(seconds=12), BucketCreated(job_id=job, bucket_name="b", tx_hash=first))
    )
    log.append(log[3])  # a record after the outcome changes nothing
    state = fold(log)
    assert state is not None
    assert (state.status, state.tx_hash) == (JobStatus.COMPLETED, first)


@given(histories())
def test_events_before_the_request_attach_to_nothing(history: History) -> None:
    for event in history.events[1:]:
        assert apply(None, event) is None


# At-least-once delivery -----------------------------------------------------------------------


@given(history_and_delivery())
def test_duplicates_and_redelivered_prefixes_fold_to_the_same_state(
    case: tuple[History, list[Event]],
) -> None:
    history, delivered = case
    assert fold(delivered) == fold(history.events)


@given(history_and_delivery())
def test_status_never_moves_backwards(case: tuple[History, list[Event]]) -> None:
    _, delivered = case
    ranks = [RANK[s.status] for s in steps(delivered) if s is not None]
    assert len(ranks) == len(delivered)
    assert ranks == sorted(ranks)


@given(history_and_delivery())
def test_nothing_changes_once_the_job_is_terminal(case: tuple[History, list[Event]]) -> None:
    _, delivered = case
    seen = steps(delivered)
    terminal_at = next(
        (i for i, s in enumerate(seen) if s is not None and s.status.is_terminal), None
    )
    if terminal_at is None:
        assert all(s is not None and not s.status.is_terminal for s in seen)
        return
    assert all(s == seen[terminal_at] for s in seen[terminal_at:])


def as_event_of(event: Event, job: History) -> Event:
    """`event` rewritten to be about `job`'s id and bucket name."""
    data = event.data.model_copy(update={"job_id": job.job_id, "bucket_name": job.bucket_name})
    return event.model_copy(update={"subject": job.bucket_name, "data": data})


@given(histories(ending="created"), histories(ending="failed"))
def test_late_failed_after_created_leaves_the_job_completed(
    created: History, failed: History
) -> None:
    done = fold(created.events)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert apply(done, as_event_of(failed.events[-1], created)) == done


@given(histories(ending="failed"), histories(ending="created"))
def test_late_created_after_failed_leaves_the_job_failed(failed: History, created: History) -> None:
    done = fold(failed.events)
    assert done is not None and done.status is JobStatus.FAILED
    assert apply(done, as_event_of(created.events[-1], failed)) == done


@given(histories(), histories())
def test_event_for_another_bucket_name_with_the_same_job_id_changes_nothing(
    history: History, stranger: History
) -> None:
    state = fold(history.events)
    assert state is not None
    if stranger.bucket_name == history.bucket_name:
        return
    for event in stranger.events:
        forged = event.model_copy(
            update={"data": event.data.model_copy(update={"job_id": history.job_id})}
        )
        assert apply(state, forged) == state


# Ownership ------------------------------------------------------------------------------------


@given(st.data(), names)
def test_second_created_for_a_name_owned_by_another_job_fails_with_bucket_exists(
    data: st.DataObject, name: str
) -> None:
    first = data.draw(histories(name=name, ending="created"))
    second = data.draw(histories(name=name, ending="created"))
    delivered = data.draw(redelivered(second.events))
    owner = first.job_id
    owned = fold(first.events, owner)
    assert owned is not None and owned.status is JobStatus.COMPLETED

    state = fold(delivered, owner)
    assert state is not None
    assert state.job_id == second.job_id
    assert state.status is JobStatus.FAILED
    assert state.error_code == BUCKET_EXISTS
    assert state.error is not None and str(owner) in state.error
    assert state.tx_hash == pending_hash(second.events) and state.completed_at is None
    assert state.attempts == second.attempts


@given(histories(ending="created"))
def test_created_for_a_name_the_job_itself_owns_completes_it(history: History) -> None:
    assert fold(history.events, history.job_id) == fold(history.events, None)
    state = fold(history.events, history.job_id)
    assert state is not None and state.status is JobStatus.COMPLETED


@given(histories(ending="failed"), st.uuids())
def test_owner_does_not_change_a_job_that_fails_on_its_own(
    history: History, owner: uuid.UUID
) -> None:
    assert fold(history.events, owner) == fold(history.events)


@given(histories(ending=None), st.uuids())
def test_owner_does_not_touch_a_job_still_in_progress(history: History, owner: uuid.UUID) -> None:
    state = fold(history.events, owner)
    assert state == fold(history.events)
    assert state is not None and not state.status.is_terminal


# Determinism ----------------------------------------------------------------------------------


@given(history_and_delivery(), st.one_of(st.none(), st.uuids()))
def test_folding_is_deterministic_and_takes_its_times_only_from_events(
    case: tuple[History, list[Event]], owner: uuid.UUID | None
) -> None:
    _, delivered = case
    first = steps(delivered, owner)
    second = steps(delivered, owner)
    assert first == second
    event_times = {e.time for e in delivered}
    for state in first:
        assert state is not None
        assert state.created_at in event_times and state.updated_at in event_times
        assert state.completed_at is None or state.completed_at in event_times


@given(history_and_delivery())
def test_updated_at_is_the_latest_event_time_until_the_job_ends(
    case: tuple[History, list[Event]],
) -> None:
    _, delivered = case
    latest = delivered[0].time
    ended = False
    for event, state in zip(delivered, steps(delivered), strict=True):
        assert state is not None
        if not ended:
            latest = max(latest, event.time)
        assert state.updated_at == latest
        ended = state.status.is_terminal


def apply_by_replace(
    job: JobState | None, event: Event, owner: uuid.UUID | None = None
) -> JobState | None:
    """The fold written the plain way, by replacing fields (`JobState._replace`): the oracle
    the positional one in shared/fold.py must agree with, state by state."""
    data = event.data
    if job is None:
        if isinstance(data, BucketRequested):
            return JobState(data.job_id, data.bucket_name, JobStatus.QUEUED, event.time, event.time)
        return None
    if job.status.is_terminal or data.bucket_name != job.bucket_name:
        return job
    touched = max(job.updated_at, event.time)
    if isinstance(data, BucketProcessing):
        return job._replace(
            status=JobStatus.PROCESSING,
            attempts=max(job.attempts, data.attempt),
            updated_at=touched,
        )
    if isinstance(data, BucketTransactionSigned):
        return job._replace(
            status=JobStatus.PROCESSING,
            attempts=max(job.attempts, data.attempt),
            tx_hash=data.tx_hash if event.time > job.updated_at else job.tx_hash,
            updated_at=touched,
        )
    if isinstance(data, BucketCreated):
        if owner is not None and owner != job.job_id:
            return job._replace(
                status=JobStatus.FAILED,
                error=f"bucket {job.bucket_name!r} already belongs to job {owner}",
                error_code=BUCKET_EXISTS,
                updated_at=touched,
            )
        return job._replace(
            status=JobStatus.COMPLETED,
            tx_hash=data.tx_hash,
            updated_at=touched,
            completed_at=event.time,
        )
    if isinstance(data, BucketFailed):
        return job._replace(
            status=JobStatus.FAILED,
            error=data.error,
            error_code=data.error_code,
            attempts=max(job.attempts, data.attempts),
            updated_at=touched,
        )
    return job


@given(history_and_delivery(), histories(), st.one_of(st.none(), st.uuids()), st.randoms())
def test_fold_agrees_state_for_state_with_the_replace_based_fold(
    case: tuple[History, list[Event]], other: History, owner: uuid.UUID | None, rng: Any
) -> None:
    history, delivered = case
    mixed = delivered + other.events  # other job ids and names: must change nothing
    rng.shuffle(mixed)
    for use_owner in (None, owner, history.job_id):
        state: JobState | None = None
        expected: JobState | None = None
        for event in mixed:
            state = apply(state, event, use_owner)
            expected = apply_by_replace(expected, event, use_owner)
            assert state == expected
            assert (state is None) == (expected is None)


def test_a_retry_job_keeps_its_retry_of_link_through_every_state() -> None:
    failed, retry = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    datas: list[EventData] = [
        BucketRequested(job_id=retry, bucket_name="b-retry", retry_of=failed),
        BucketProcessing(job_id=retry, bucket_name="b-retry", attempt=1),
        signed(retry, "b-retry", 1, 0, "0x" + "ab" * 32),
        BucketCreated(job_id=retry, bucket_name="b-retry", tx_hash="0x" + "ab" * 32),
    ]
    state: JobState | None = None
    for i, data in enumerate(datas):
        event = Event(
            id=str(i),
            source="/t",
            type=data.type,
            subject=data.bucket_name,
            time=start + timedelta(seconds=i),
            data=data,
        )
        state = apply(state, event)
        assert state is not None and state.retry_of == failed, state
    assert state is not None and state.status is JobStatus.COMPLETED
    plain = BucketRequested(job_id=failed, bucket_name="b-retry")
    first = apply(
        None, Event(id="p", source="/t", type=plain.type, subject="b-retry", time=start, data=plain)
    )
    assert first is not None and first.retry_of is None
