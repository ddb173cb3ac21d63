"""Executor snapshots with real Kafka, Postgres and anvil: a restart reads only what came after
the snapshot; a deleted or corrupted snapshot is rebuilt from the log; SIGKILLs at random
moments while snapshots are being written lose no job and create no bucket twice."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import BucketRequested, new_event
from shared.kafka import Appender
from tests.support.evm_stack import EvmStack, bucket_id, submit, wait_all_terminal
from tests.support.stack import Stack, unique_name

JSON_LOGS = {"LOG_FORMAT": "json"}
RESTORED = "partition restored from its snapshot"
NO_SNAPSHOT = "no snapshot; folding the partition from offset 0"
REFUSED = "snapshot refused; folding the partition from offset 0"


async def append_request(stack: Stack, name: str) -> str:
    job = uuid.uuid4()
    appender = Appender(stack.settings)
    try:
        event = new_event(BucketRequested(job_id=job, bucket_name=name), "/tests/snapshots")
        await appender.append(stack.settings.bucket_events_topic, event)
    finally:
        await appender.stop()
    return str(job)


def db(stack: Stack) -> psycopg.Connection[Any]:
    url = stack.settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True)


def snapshot_positions(stack: Stack) -> dict[int, int]:
    with db(stack) as conn:
        rows = conn.execute(
            "SELECT partition, position FROM executor_snapshots WHERE topic = %s",
            (stack.settings.bucket_events_topic,),
        ).fetchall()
    return {p: pos for p, pos in rows}


async def log_ends(stack: Stack) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        topic = stack.settings.bucket_events_topic
        parts = [TopicPartition(topic, p) for p in range(stack.settings.topic_partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()


def executor_log(stack: Stack, since: int) -> list[dict[str, Any]]:
    """The executor's JSON log lines after byte `since` of its log file."""
    raw = (stack.log_dir / "executor.log").read_bytes()[since:]
    lines = []
    for line in raw.splitlines():
        if line.startswith(b"{"):
            lines.append(orjson.loads(line))
    return lines


def log_size(stack: Stack) -> int:
    path = stack.log_dir / "executor.log"
    return path.stat().st_size if path.exists() else 0


async def snapshots_cover_the_log(stack: Stack) -> None:
    """Wait until every partition's snapshot is at the log's end (written every 0.5 s)."""
    ends = await log_ends(stack)
    deadline = time.monotonic() + 30
    while snapshot_positions(stack) != ends:
        assert time.monotonic() < deadline, (snapshot_positions(stack), ends)
        await asyncio.sleep(0.3)


async def restart_executor(stack: Stack) -> int:
    """Stop it cleanly (it writes its snapshots), start it again; the log offset of the run."""
    assert stack.stop("executor") == {"executor": 0}
    mark = log_size(stack)
    stack.start("executor", env=JSON_LOGS)
    return mark


async def wait_logged(stack: Stack, since: int, message: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        found = [r for r in executor_log(stack, since) if r["message"] == message]
        if len(found) >= count:
            return found
        stack.assert_alive()
        assert time.monotonic() < deadline, f"never logged {message!r}:\n{stack.logs('executor')}"
        await asyncio.sleep(0.2)


async def test_restarts_read_past_the_snapshot_and_a_dropped_or_corrupted_one_is_rebuilt(
    evm_stack_factory: Any,
) -> None:
    evm: EvmStack = evm_stack_factory(block_time=None, executor_snapshot_interval_s=0.5)
    stack = evm.stack
    partitions = stack.settings.topic_partitions
    first = [unique_name("snap") for _ in range(12)]
    async with stack.client() as client:
        ids = await submit(client, first)
        await wait_all_terminal(stack, client, ids, timeout=60)

        async def duplicate_fails_and_new_completes() -> None:
            """The executor knows the name's owner (from its index now, not memory): a second
            request of a created name, appended behind the API's 409 check as a race between
            two POSTs would, fails; a new name runs."""
            dup = await append_request(stack, first[3])
            (new,) = await submit(client, [unique_name("snap-new")])
            assert (await stack.wait_terminal(client, dup))["error_code"] == "bucket_exists"
            assert (await stack.wait_terminal(client, new))["status"] == "completed"
            # The executor's own answer, not only the projector's fold: it refused the name
            # (BucketFailed), it did not adopt the bucket as this job's (BucketCreated).
            outcomes = [
                e
                for e in await evm.events()
                if e["data"]["job_id"] == dup and e["type"] in ("BucketCreated", "BucketFailed")
            ]
            assert [(e["type"], e["data"].get("error_code")) for e in outcomes] == [
                ("BucketFailed", "bucket_exists")
            ], outcomes

        # 1. A clean restart: each partition restored at the log's end, nothing to read again.
        mark = await restart_executor(stack)
        restored = await wait_logged(
            stack, mark, "partition restored from its snapshot", partitions
        )
        assert {r["partition"] for r in restored} == set(range(partitions))
        assert all(r["to_read"] == 0 for r in restored), restored
        await duplicate_fails_and_new_completes()

        # 2. Dropped with the CLI: folded from offset 0, and a snapshot is written again.
        stack.stop("executor")
        drop = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "snapshots", "drop",
            env=stack_env(stack), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await drop.communicate()
        assert drop.returncode == 0 and b"dropped the snapshot of every partition" in out
        assert snapshot_positions(stack) == {}
        mark = log_size(stack)
        stack.start("executor", env=JSON_LOGS)
        await wait_logged(
            stack, mark, "no snapshot; folding the partition from offset 0", partitions
        )
        await duplicate_fails_and_new_completes()
        ends = await log_ends(stack)
        deadline = time.monotonic() + 30
        while snapshot_positions(stack) != ends:
            assert time.monotonic() < deadline, (snapshot_positions(stack), ends)
            await asyncio.sleep(0.3)

        # 3. Corrupted in place: refused with the reason, folded from offset 0.
        stack.stop("executor")
        with db(stack) as conn:
            conn.execute(
                "UPDATE executor_snapshots SET payload = substring(payload from 2) "
                "WHERE topic = %s",
                (stack.settings.bucket_events_topic,),
            )
        mark = log_size(stack)
        stack.start("executor", env=JSON_LOGS)
        refused = await wait_logged(stack, mark, REFUSED, partitions)
        assert all("checksum" in r["reason"] for r in refused), refused
        await duplicate_fails_and_new_completes()

    logs = evm.create_logs()
    assert all(logs[bucket_id(n)] == 1 for n in first)
    assert sum(logs.values()) == len(first) + 3  # one new name per round


def stack_env(stack: Stack) -> dict[str, str]:
    from tests.support.stack import settings_env

    return settings_env(stack.settings)


async def test_sigkills_while_snapshots_are_written_lose_no_job_and_run_none_twice(
    evm_stack_factory: Any,
) -> None:
    """Snapshots every 0.1 s and every 20 records: each kill, at a random moment, very likely
    interrupts one being written (an interrupted write's transaction never commits).
    MAX_ATTEMPTS is the default 3: a job killed while it waits for its key's slot has written
    no `BucketProcessing`, so the kills spend no attempt of the jobs in the queue."""
    evm: EvmStack = evm_stack_factory(
        block_time=1.0,
        executor_snapshot_interval_s=0.1,
        executor_snapshot_records=20,
    )
    stack = evm.stack
    names = [unique_name("snapkill") for _ in range(150)]
    rng = random.Random()
    async with stack.client() as client:
        ids = await submit(client, names)
        for _ in range(3):
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            stack.kill("executor")
            stack.start("executor", env=JSON_LOGS)
        jobs = await wait_all_terminal(stack, client, ids, timeout=120)

    failed = [(j["bucket_name"], j.get("error_code"), j.get("error")) for j in jobs.values()
              if j["status"] != "completed"]  # fmt: skip
    assert failed == [], failed[:5]
    logs = evm.create_logs()
    assert [n for n in names if logs[bucket_id(n)] != 1] == []
    assert sum(logs.values()) == len(names)
    restored = [r for r in executor_log(stack, 0) if r["message"] == RESTORED]
    assert restored, "no restart used a snapshot"
    events = await evm.events()
    outcomes = Counter(
        e["data"]["job_id"] for e in events if e["type"] in ("BucketCreated", "BucketFailed")
    )
    # No job was run to an outcome twice (a rerun would append a second outcome).
    assert [j for j, n in outcomes.items() if n != 1] == []
