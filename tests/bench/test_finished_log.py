"""bench.finished_log writes its events by replacing sentinels in template encodings; they must
be exactly what the gateway itself writes and folds: the startup benchmark measures executors
folding them."""

from __future__ import annotations

from collections import defaultdict

from bench.finished_log import EVENTS_PER_JOB, WAVE, bucket_name, generate
from services.executor.ledger import PartitionLedger
from shared.events import decode, encode, record_key
from shared.fold import JobStatus, apply

STEPS = ["BucketRequested", "BucketProcessing", "BucketTransactionSigned", "BucketCreated"]


def test_records_are_the_gateways_own_encoding_of_finished_jobs() -> None:
    jobs = 2 * WAVE + 7  # two whole waves and a short one
    records = list(generate("t", 40, jobs))
    assert len(records) == jobs * EVENTS_PER_JOB

    events = []
    for key, value in records:
        event = decode(value)
        assert encode(event) == value  # the bytes `encode` writes for these values
        assert key == record_key(event)
        events.append(event)

    assert len({e.id for e in events}) == len(events)
    by_job = defaultdict(list)
    for event in events:
        by_job[event.job_id].append(event)
    assert len(by_job) == jobs
    names = {evs[0].data.bucket_name for evs in by_job.values()}
    assert names == {bucket_name("t", n) for n in range(40, 40 + jobs)}

    for evs in by_job.values():
        assert [e.type for e in evs] == STEPS
        assert len({e.data.bucket_name for e in evs}) == 1
        signed, created = evs[2].data, evs[3].data
        assert signed.tx_hash == created.tx_hash  # type: ignore[union-attr]
        state = None
        for event in evs:
            state = apply(state, event)
        assert state is not None and state.status is JobStatus.COMPLETED
        assert state.tx_hash == created.tx_hash  # type: ignore[union-attr]


def test_the_executors_fold_leaves_nothing_unfinished() -> None:
    ledger = PartitionLedger()
    new_jobs = 0
    for offset, (_key, value) in enumerate(generate("t", 0, WAVE + 1)):
        new_jobs += ledger.observe(decode(value), offset)
    assert new_jobs == WAVE + 1
    assert ledger.unfinished == {} and ledger.signed == {}
    assert len(ledger.recent.jobs) == WAVE + 1
    assert set(ledger.recent.owners) == {bucket_name("t", n) for n in range(WAVE + 1)}
