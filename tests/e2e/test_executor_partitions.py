"""A partition added to the event topic while the executor runs (as an operator's
`kafka-topics.sh --alter` would) is taken over by the executors' group without a restart: the
group rebalances onto it once the executor's metadata refresh (KAFKA_METADATA_REFRESH_S)
shows it, and its jobs run to completion: one requested as soon as the partition exists
(usually before the rebalance, then folded at assignment) and one once it is live. A job whose
create was in flight across the rebalance completes with its one transaction, and every job's
events stay in its request's partition. Real Kafka, Postgres and anvil (the chain witnesses
one CreateBucket per name). With the refresh at an hour the executor is never assigned the
new partition and the test fails at that wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from shared.events import CONTENT_TYPE_HEADER, BucketRequested, encode, new_event
from shared.kafka import partition_for
from shared.settings import Settings
from tests.support.evm_stack import EvmStack, bucket_id, submit
from tests.support.stack import Stack, read_events, unique_name

pytestmark = pytest.mark.slow

BEFORE, AFTER = 3, 4  # the topic's partitions before and after the operator adds one
ADDED = AFTER - 1
REFRESH_S = 1.0


def name_where(wanted: Any, prefix: str) -> str:
    """A fresh bucket name for which `wanted(name)` holds."""
    while True:
        name = unique_name(prefix)
        if wanted(name):
            return name


async def append_request(settings: Settings, name: str, partition: int) -> str:
    """A `BucketRequested` for `name` on `partition` (where its key's hash puts it now), by a
    producer that sees the partition."""
    event = new_event(BucketRequested(job_id=uuid.uuid4(), bucket_name=name), "/tests/partitions")
    deadline = time.monotonic() + 30
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            if partition in await producer.partitions_for(settings.bucket_events_topic):
                await producer.send_and_wait(
                    settings.bucket_events_topic,
                    encode(event),
                    key=name.encode(),
                    partition=partition,
                    headers=[CONTENT_TYPE_HEADER],
                )
                return str(event.data.job_id)
        finally:
            await producer.stop()
        assert time.monotonic() < deadline, f"no producer saw partition {partition}"
        await asyncio.sleep(0.2)


def executor_log(stack: Stack) -> list[dict[str, Any]]:
    raw = (stack.log_dir / "executor.log").read_bytes()
    return [orjson.loads(line) for line in raw.splitlines() if line.startswith(b"{")]


async def wait_assigned(stack: Stack, partitions: list[int], timeout: float) -> None:
    """Until the executor logs an assignment of exactly `partitions`."""
    deadline = time.monotonic() + timeout
    while True:
        assigned = [
            r["partitions"] for r in executor_log(stack) if r["message"] == "partitions assigned"
        ]
        if partitions in assigned:
            return
        stack.assert_alive()
        assert time.monotonic() < deadline, (
            f"the executor was never assigned {partitions} (assignments: {assigned}):\n"
            + stack.logs("executor")
        )
        await asyncio.sleep(0.2)


async def outcomes(stack: Stack, job_ids: set[str], timeout: float) -> dict[str, Any]:
    """Every record of the log once each of `job_ids` has its executor's outcome event
    (BucketCreated or BucketFailed) on the topic: job id -> its records."""
    deadline = time.monotonic() + timeout
    while True:
        records: dict[str, Any] = {}
        for record in await read_events(stack.settings):
            event = orjson.loads(record.value)
            records.setdefault(event["data"]["job_id"], []).append((record.partition, event))
        ended = {
            job
            for job in job_ids
            for _, e in records.get(job, [])
            if e["type"] in ("BucketCreated", "BucketFailed")
        }
        if ended == job_ids:
            return records
        stack.assert_alive()
        assert time.monotonic() < deadline, f"no outcome for {job_ids - ended}:\n" + stack.logs(
            "executor"
        )
        await asyncio.sleep(0.5)


async def test_the_executor_takes_over_a_partition_added_while_it_runs(
    evm_stack_factory: Any,
) -> None:
    evm: EvmStack = evm_stack_factory(
        block_time=None,
        topic_partitions=BEFORE,
        kafka_metadata_refresh_s=REFRESH_S,
        executor_snapshot_interval_s=0.5,
        log_format="json",
    )
    stack, settings = evm.stack, evm.stack.settings
    topic = settings.bucket_events_topic
    # on the new partition once it exists; one that moves from its old partition to another
    grown = name_where(lambda n: partition_for(n, AFTER) == ADDED, "grown")
    live = name_where(lambda n: partition_for(n, AFTER) == ADDED, "grown-live")
    held = name_where(lambda n: partition_for(n, BEFORE) != partition_for(n, AFTER), "held")
    async with stack.client() as client:
        (before,) = await submit(client, [unique_name("before")])
        assert (await stack.wait_terminal(client, before))["status"] == "completed"
        await wait_assigned(stack, list(range(BEFORE)), timeout=5)

        # A create in flight (signed, recorded, not mined) while the partition is added.
        evm.chain.set_automine(False)
        (held_job,) = await submit(client, [held])
        deadline = time.monotonic() + 30
        while (await client.get(f"/buckets/jobs/{held_job}")).json()["tx_hash"] is None:
            assert time.monotonic() < deadline, stack.logs("executor")
            await asyncio.sleep(0.1)

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await admin.create_partitions({topic: NewPartitions(AFTER)})
        finally:
            await admin.close()
        # In the new partition as soon as it exists.
        grown_job = await append_request(settings, grown, ADDED)
        await wait_assigned(stack, list(range(AFTER)), timeout=30)
        evm.chain.set_automine(True)
        evm.chain.mine()
        # Live on the new partition: a request after the rebalance runs as it arrives.
        live_job = await append_request(settings, live, ADDED)
        records = await outcomes(stack, {grown_job, live_job, held_job}, timeout=60)
        for job in (before, held_job, grown_job, live_job):
            assert (await stack.wait_terminal(client, job))["status"] == "completed", job

    assert [e["type"] for _, e in records[grown_job]] == [
        "BucketRequested",
        "BucketProcessing",
        "BucketTransactionSigned",
        "BucketCreated",
    ], records[grown_job]
    created = evm.create_logs()
    for name in (grown, live, held):
        assert created[bucket_id(name)] == 1, name
    assert sum(created.values()) == 4  # `before` too, and nothing signed twice
    signed = [e for _, e in records[held_job] if e["type"] == "BucketTransactionSigned"]
    assert len(signed) == 1, signed  # followed across the rebalance, not signed again
    # Each job's events stay in its request's partition: the held job's outcome too, though
    # its name hashes elsewhere now (the executor's ledger of that partition folds the job).
    for job, partition in (
        (grown_job, ADDED),
        (live_job, ADDED),
        (held_job, partition_for(held, BEFORE)),
    ):
        assert {p for p, _ in records[job]} == {partition}, records[job]
