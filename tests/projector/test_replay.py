"""Rebuilding the read model while the gateway runs, and events the database refuses.

The replay builds a shadow copy from offset 0 and swaps it in; the API and the live projector
keep working throughout. Every test runs the real services and the real `replay` command.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.projector.replay.rebuild import REPLAY_LOCK
from services.projector.replay.shadow import SHADOW_SCHEMA
from shared.db import make_engine
from shared.dead_letter import CONSUMER, ERROR, ORIGIN_OFFSET, ORIGIN_PARTITION
from shared.error_codes import BUCKET_EXISTS
from shared.errors import MalformedEvent, UnknownEventType
from shared.events import (
    CONTENT_TYPE_HEADER,
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    EventData,
    decode,
    encode,
    new_event,
)
from shared.fold import JobState, JobStatus, apply
from shared.kafka import Appender
from tests.support.stack import REPO, Stack, read_events, settings_env, unique_name

pytestmark = pytest.mark.slow
STACK_SETTINGS = {"read_your_writes_timeout_s": 10.0}
Offset = tuple[int, int]


# Helpers ---------------------------------------------------------------------------------------


async def query(stack: Stack, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def table(stack: Stack) -> list[tuple[Any, ...]]:
    return await query(
        stack,
        "SELECT id, bucket_name, status, tx_hash, error, error_code, attempts, created_at, "
        "updated_at, completed_at FROM bucket_jobs ORDER BY id",
    )


async def table_oid(stack: Stack) -> int:
    return int((await query(stack, "SELECT 'bucket_jobs'::regclass::oid"))[0][0])


async def index_names(stack: Stack) -> set[str]:
    rows = await query(
        stack,
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename IN ('bucket_jobs', 'projector_checkpoints')",
    )
    return {r[0] for r in rows}


async def fresh_fold(stack: Stack, refused: set[Offset]) -> list[tuple[Any, ...]]:
    """The table a projector would build from this log, folded here from scratch; the events
    at `refused` are the ones the test wrote knowing the database cannot store them."""
    jobs: dict[uuid.UUID, JobState] = {}
    owners: dict[str, uuid.UUID] = {}
    for record in await read_events(stack.settings):
        if (record.partition, record.offset) in refused:
            continue
        try:
            event = decode(record.value)
        except (MalformedEvent, UnknownEventType):
            continue
        after = apply(jobs.get(event.job_id), event, owners.get(event.data.bucket_name))
        if after is None:
            continue
        jobs[after.job_id] = after
        if after.status is JobStatus.COMPLETED:
            owners[after.bucket_name] = after.job_id
    return [
        (
            j.job_id, j.bucket_name, j.status.value, j.tx_hash, j.error, j.error_code,
            j.attempts, j.created_at, j.updated_at, j.completed_at,
        )
        for j in sorted(jobs.values(), key=lambda j: j.job_id)
    ]  # fmt: skip


async def wait_projected(stack: Stack, timeout: float = 60) -> None:
    """Until the live checkpoints reach the topic's current end offsets."""
    ends: dict[int, int] = {}
    for record in await read_events(stack.settings):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    deadline = time.monotonic() + timeout
    while True:
        rows = await query(
            stack,
            "SELECT partition, next_offset FROM projector_checkpoints WHERE topic = :t",
            t=stack.settings.bucket_events_topic,
        )
        reached = dict(rows)  # type: ignore[arg-type]
        if all(reached.get(p, 0) >= end for p, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"projector stuck at {reached}, log ends {ends}"
        await asyncio.sleep(0.1)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def start_replay(stack: Stack, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "replay",
        *args,
        cwd=REPO,
        env=settings_env(stack.settings),
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode(errors="replace")


async def holds_replay_lock(stack: Stack) -> bool:
    rows = await query(
        stack,
        "SELECT count(*) FROM pg_locks, (SELECT hashtextextended(:k, 0) AS h) key "
        "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        "AND classid::bigint = (key.h >> 32) & 4294967295 "
        "AND objid::bigint = key.h & 4294967295",
        k=REPLAY_LOCK,
    )
    return int(rows[0][0]) > 0


async def shadow_exists(stack: Stack) -> bool:
    rows = await query(
        stack, "SELECT count(*) FROM pg_namespace WHERE nspname = :s", s=SHADOW_SCHEMA
    )
    return int(rows[0][0]) > 0


async def append(stack: Stack, data: EventData) -> Offset:
    appender = Appender(stack.settings)
    try:
        event = new_event(data, "/tests/hand-written")
        return await appender.send(
            stack.settings.bucket_events_topic,
            encode(event),
            data.bucket_name.encode(),
            [CONTENT_TYPE_HEADER],
        )
    finally:
        await appender.stop()


# Events the database refuses --------------------------------------------------------------------

REFUSED: set[Offset] = set()  # shared with the replay tests below: they fold the same log


async def test_events_the_database_refuses_are_parked_and_the_projector_carries_on(
    stack: Stack,
) -> None:
    # Without an executor, no job event but ours reaches the log, so the outcome is exact.
    assert stack.stop("executor") == {"executor": 0}
    too_long_name = "a" * 300  # a valid event (names up to 1024), but the column holds 255
    long_job, nul_job, code_job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    nul_name, code_name = unique_name("nul"), unique_name("code")
    refused = [await append(stack, BucketRequested(job_id=long_job, bucket_name=too_long_name))]
    await append(stack, BucketRequested(job_id=nul_job, bucket_name=nul_name))
    refused.append(
        await append(
            stack,
            BucketFailed(
                job_id=nul_job, bucket_name=nul_name, error="disk\x00full",
                error_code="backend_error", attempts=1,
            ),
        )
    )  # fmt: skip
    await append(stack, BucketProcessing(job_id=nul_job, bucket_name=nul_name, attempt=1))
    await append(stack, BucketRequested(job_id=code_job, bucket_name=code_name))
    refused.append(
        await append(
            stack,
            BucketFailed(
                job_id=code_job, bucket_name=code_name, error="x", error_code="e" * 150,
                attempts=1,
            ),
        )
    )  # fmt: skip
    await append(stack, BucketProcessing(job_id=code_job, bucket_name=code_name, attempt=2))
    REFUSED.update(refused)

    await wait_projected(stack)
    rows = {r[0]: r for r in await table(stack)}
    assert long_job not in rows
    # The refused failure did not apply; the event after it did.
    assert rows[nul_job][2:7] == ("processing", None, None, None, 1)
    assert rows[code_job][2:7] == ("processing", None, None, None, 2)

    parked = [
        {k: v.decode() for k, v in r.headers}
        for r in await read_events(stack.settings, stack.settings.dead_letter_topic)
    ]
    by_projector = {
        (int(h[ORIGIN_PARTITION]), int(h[ORIGIN_OFFSET])): h[ERROR]
        for h in parked
        if h[CONSUMER] == "projector"
    }
    assert set(by_projector) == set(refused)
    assert all(e.startswith("cannot be applied:") for e in by_projector.values())
    assert "too long" in by_projector[refused[0]] and "NUL" in by_projector[refused[1]]
    assert "projection batch failed" not in stack.logs("projector", tail=10_000)
    stack.start("executor")


# Replay ---------------------------------------------------------------------------------------


async def test_replay_swaps_in_a_rebuild_while_reads_and_new_jobs_go_on(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    first = [
        (await client.post("/buckets", json={"bucket_name": unique_name("before")})).json()
        for _ in range(12)
    ]
    for job in first:
        await stack.wait_terminal(client, job["job_id"])
    await wait_projected(stack)
    before_rows = await table(stack)
    before_oid, before_indexes = await table_oid(stack), await index_names(stack)

    failures: list[str] = []
    created: list[str] = []
    reads = 0
    replaying = True

    async def traffic() -> None:
        nonlocal reads
        known = [j["job_id"] for j in first]
        while replaying:
            posted = await client.post("/buckets", json={"bucket_name": unique_name("during")})
            if posted.status_code != 202:
                failures.append(f"POST {posted.status_code} {posted.text}")
                continue
            created.append(posted.json()["job_id"])
            for path in (
                f"/buckets/jobs/{posted.json()['job_id']}",
                f"/buckets/jobs/{random.choice(known)}",
                "/buckets?limit=5",
            ):
                got = await client.get(path)
                reads += 1
                if got.status_code != 200:
                    failures.append(f"GET {path} {got.status_code} {got.text}")
            known.append(posted.json()["job_id"])

    load = asyncio.create_task(traffic())
    await asyncio.sleep(0.5)
    code, stderr = await finish(await start_replay(stack, "--no-progress"))
    replaying = False
    await load
    assert code == 0, stderr
    assert "replay finished" in stderr and "replay progress" in stderr
    assert failures == []
    assert len(created) >= 3 and reads >= 9

    # The tables were swapped, under the names Alembic gave their indexes.
    assert await table_oid(stack) != before_oid
    assert await index_names(stack) == before_indexes
    assert not await shadow_exists(stack)

    # The live projector carried on from the rebuilt checkpoints, and so do jobs made after.
    after = (await client.post("/buckets", json={"bucket_name": unique_name("after")})).json()
    for job_id in [*created, after["job_id"]]:
        assert (await stack.wait_terminal(client, job_id))["status"] == "completed"
    await wait_projected(stack)
    assert "projection batch failed" not in stack.logs("projector", tail=10_000)

    rebuilt = await table(stack)
    assert rebuilt == await fresh_fold(stack, REFUSED)
    old_ids = {r[0] for r in before_rows}
    assert [r for r in rebuilt if r[0] in old_ids] == before_rows


async def wait_quiet(stack: Stack, quiet_s: float = 3.0, timeout: float = 90) -> None:
    """Until the topic has not grown for `quiet_s` (the executor is done with what it read)."""
    deadline = time.monotonic() + timeout
    seen = len(await read_events(stack.settings))
    while True:
        await asyncio.sleep(quiet_s)
        now = len(await read_events(stack.settings))
        if now == seen:
            return
        assert time.monotonic() < deadline, "the log kept growing"
        seen = now


async def test_replay_in_tiny_batches_equals_the_live_table_with_repeats_and_taken_names(
    stack: Stack,
) -> None:
    """The bulk phase forgets finished jobs after every 3-record batch: a request repeated
    after its job failed, late events, and a second creation of a name still come out as the
    live projector folded them."""
    owner, loser, repeated = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    name, other = unique_name("contest"), unique_name("repeat")
    hashes = iter("0x" + f"{i:x}" * 64 for i in range(1, 4))
    for data in [
        BucketRequested(job_id=owner, bucket_name=name),
        BucketRequested(job_id=loser, bucket_name=name),
        BucketCreated(job_id=owner, bucket_name=name, tx_hash=next(hashes)),
        BucketCreated(job_id=loser, bucket_name=name, tx_hash=next(hashes)),
        BucketRequested(job_id=repeated, bucket_name=other),
        BucketFailed(
            job_id=repeated, bucket_name=other, error="no", error_code="backend_error", attempts=1
        ),
        BucketRequested(job_id=repeated, bucket_name=other),
        BucketCreated(job_id=repeated, bucket_name=other, tx_hash=next(hashes)),
        BucketProcessing(job_id=repeated, bucket_name=other, attempt=2),
    ]:
        await append(stack, data)
    await wait_quiet(stack)
    await wait_projected(stack)
    live = await table(stack)
    rows = {r[0]: r for r in live}
    assert (rows[owner][2], rows[loser][2], rows[loser][5]) == (
        "completed",
        "failed",
        BUCKET_EXISTS,
    )
    assert rows[repeated][2] == "failed"

    proc = await start_replay(stack, "--no-progress", "--workers", "1", "--batch-records", "3")
    code, stderr = await finish(proc)
    assert code == 0, stderr
    await wait_projected(stack)
    assert await table(stack) == live == await fresh_fold(stack, REFUSED)


async def test_second_replay_at_the_same_time_is_refused(stack: Stack) -> None:
    first = await start_replay(stack, "--no-progress")
    try:
        await wait_for(lambda: holds_replay_lock(stack), "the first replay's lock")
        first.send_signal(signal.SIGSTOP)  # hold it mid-way while the second one starts
        code, stderr = await finish(await start_replay(stack, "--no-progress"), 60)
        assert code == 3
        assert "another replay is already running" in stderr
    finally:
        first.send_signal(signal.SIGCONT)
    code, stderr = await finish(first)
    assert code == 0, stderr


async def test_replay_killed_mid_way_leaves_the_live_table_and_the_next_one_works(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await wait_projected(stack)
    live, oid = await table(stack), await table_oid(stack)
    proc = await start_replay(stack, "--no-progress")
    await wait_for(lambda: shadow_exists(stack), "the shadow schema")
    proc.send_signal(signal.SIGSTOP)
    proc.kill()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert await shadow_exists(stack)  # killed before its swap
    assert await table(stack) == live and await table_oid(stack) == oid

    code, stderr = await finish(await start_replay(stack, "--keep-old"))
    assert code == 0, stderr
    assert not await shadow_exists(stack) and await table_oid(stack) != oid
    kept = await query(
        stack,
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = :oid",
        oid=oid,
    )
    assert kept and kept[0][0].startswith("akave_replaced_")  # --keep-old kept the old table
    job = (await client.post("/buckets", json={"bucket_name": unique_name("next")})).json()
    assert (await stack.wait_terminal(client, job["job_id"]))["status"] == "completed"
    await wait_projected(stack)
    assert await table(stack) == await fresh_fold(stack, REFUSED)
