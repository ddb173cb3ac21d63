"""A long log of finished jobs, written fast: what an executor must get through before it can
take a new job.

Each job is four events as the evm backend writes them: `BucketRequested`, `BucketProcessing`
(attempt 1), `BucketTransactionSigned` (its create), `BucketCreated`; every name unique, jobs
interleaved in waves of `WAVE` as a busy gateway writes them. Each event type is built once by
`shared.events` (`new_event`, `encode`) around sentinel values, and each job's records are that
encoding with the sentinels replaced (job id, name, event id, nonce, hashes): the same bytes
`encode` would write for those values, at a fraction of its cost, which is what lets a bench
fill millions of events in a minute. tests/bench/test_finished_log.py decodes and folds them.

The signed transaction's bytes are a fixed blob of a realistic size, not a real signature:
an executor re-broadcasts only unfinished jobs' transactions, and every job here is finished.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from localinfra.dev_keys import DEV_ACCOUNTS
from shared.events import (
    CONTENT_TYPE_HEADER,
    BucketCreated,
    BucketProcessing,
    BucketRequested,
    BucketTransactionSigned,
    EventData,
    encode,
    new_event,
)
from shared.kafka import partition_for
from shared.settings import Settings

EVENTS_PER_JOB = 4
WAVE = 1000  # jobs in flight at once in the generated log
SOURCE = "/akave-gateway/bench"
SIGNER = DEV_ACCOUNTS[0][0]  # an address only: public test data (localinfra/dev_keys.py)
CHAIN_ID = 31337
# An EIP-1559 create is about 180 signed bytes; the blob only has to look like one in size.
RAW_TRANSACTION = "0x" + "02f8b1" + "ab" * 177

_JOB = uuid.UUID("0badc0de-0000-4000-8000-00000000a11d")
_EVENT = "0badc0de-0000-4000-8000-0000000e7e17"
_NAME_WIDTH = 10
_NAME = "Z" * _NAME_WIDTH  # replaced by the job's number; the prefix stays
_NONCE = 7_777_777_777
_HASH = "0x" + "c0ffee" * 10 + "beef"
_CREATED_AT = 1_767_225_600
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bucket_name(prefix: str, number: int) -> str:
    return f"{prefix}-{number:0{_NAME_WIDTH}d}"


def _templates(prefix: str) -> list[bytes]:
    """One encoded event per step of a job, around the sentinels."""
    name = f"{prefix}-{_NAME}"
    steps: list[EventData] = [
        BucketRequested(job_id=_JOB, bucket_name=name),
        BucketProcessing(job_id=_JOB, bucket_name=name, attempt=1),
        BucketTransactionSigned(
            job_id=_JOB, bucket_name=name, attempt=1, kind="create", signer=SIGNER,
            chain_id=CHAIN_ID, nonce=_NONCE, tx_hash=_HASH, raw_transaction=RAW_TRANSACTION,
            max_fee_per_gas=2_000_000_000, max_priority_fee_per_gas=1_000_000_000, gas=300_000,
        ),
        BucketCreated(
            job_id=_JOB, bucket_name=name, tx_hash=_HASH, bucket_id=_HASH[2:],
            bucket_created_at=_CREATED_AT, block_number=_NONCE,
        ),
    ]  # fmt: skip
    out = []
    for data in steps:
        event = new_event(data, SOURCE, time=T0).model_copy(update={"id": _EVENT})
        encoded = encode(event)
        assert encoded.count(_EVENT.encode()) == 1, "the event id sentinel must be unique"
        out.append(encoded)
    return out


def generate(prefix: str, first: int, jobs: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of jobs `first` .. `first + jobs - 1`: each job's four events in order,
    jobs interleaved in waves. Names are `bucket_name(prefix, number)`, unique per number."""
    templates = _templates(prefix)
    job_sentinel = str(_JOB).encode()
    event_sentinel = _EVENT.encode()
    name_sentinel = _NAME.encode()
    nonce_sentinel = str(_NONCE).encode()
    hash_sentinel = _HASH[2:].encode()
    for start in range(first, first + jobs, WAVE):
        wave = range(start, min(start + WAVE, first + jobs))
        per_job = []
        for number in wave:
            per_job.append(
                (
                    str(uuid.uuid4()).encode(),
                    f"{number:0{_NAME_WIDTH}d}".encode(),
                    str(number).encode(),
                    f"{number:064x}".encode(),
                )
            )
        for template in templates:
            for job_id, digits, nonce, tx_hash in per_job:
                value = (
                    template.replace(job_sentinel, job_id)
                    .replace(name_sentinel, digits)
                    .replace(nonce_sentinel, nonce)
                    .replace(hash_sentinel, tx_hash)
                    .replace(event_sentinel, str(uuid.uuid4()).encode())
                )
                yield f"{prefix}-".encode() + digits, value


async def produce(settings: Settings, prefix: str, first: int, jobs: int) -> float:
    """Append the jobs with hand-made batches, each name on the partition Kafka's default
    partitioner gives it (so the gateway's own later events for a name follow these);
    returns the seconds it took."""
    topic = settings.bucket_events_topic
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks=1,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        count = len(await producer.partitions_for(topic))
        batches = {p: producer.create_batch() for p in range(count)}
        sent = []
        headers = [CONTENT_TYPE_HEADER]
        for key, value in generate(prefix, first, jobs):
            p = partition_for(key.decode(), count)
            while batches[p].append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
            if len(sent) >= 64:  # bound what waits for acknowledgement
                await asyncio.gather(*sent)
                sent.clear()
        for p, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.monotonic() - started
