"""The live-status watch shares one poller among all streams, on the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from services.api.errors import TooManyStreams
from services.api.live import JobWatch
from services.api.read_model import ReadModel
from services.api.schemas import Job
from shared.db import make_engine
from shared.fold import JobStatus
from shared.settings import Settings


async def test_many_streams_cost_one_query_per_interval_and_see_each_change(
    base_settings: Settings,
) -> None:
    engine = make_engine(base_settings, pool_size=2)
    reads = ReadModel(engine, engine, base_settings.bucket_events_topic, 2.0)
    watch = JobWatch(reads, 0.05, max_streams=40)
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(5)]
    names = {job_id: f"watch-{job_id.hex[:12]}" for job_id in ids}
    try:
        async with engine.begin() as conn:
            for job_id in ids:
                await conn.execute(
                    text(
                        "INSERT INTO bucket_jobs (id, bucket_name, status, attempts, created_at,"
                        " updated_at) VALUES (:id, :name, 'queued', 0, :now, :now)"
                    ),
                    {"id": job_id, "name": names[job_id], "now": now},
                )
        jobs = [
            Job(
                job_id=j,
                bucket_name=names[j],
                status=JobStatus.QUEUED,
                tx_hash=None,
                error=None,
                error_code=None,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            for j in ids
        ]
        followers = [watch.follow(job) for job in jobs for _ in range(8)]  # 40 streams
        with pytest.raises(TooManyStreams):
            watch.follow(jobs[0])
        assert watch.open_streams == 40

        await asyncio.sleep(0.5)
        assert 3 <= watch.polls <= 12  # ~10 intervals, whatever the number of streams

        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE bucket_jobs SET status = 'processing', attempts = 1, "
                    "updated_at = now() WHERE id = :id"
                ),
                {"id": ids[0]},
            )
        await asyncio.sleep(0.3)
        changed = [f for f in followers if f.job_id == ids[0]]
        for follower in changed:
            change = follower.changes.get_nowait()
            assert change.status == JobStatus.PROCESSING and change.attempts == 1
            assert follower.changes.empty()  # once, although several polls saw it
        assert all(f.changes.empty() for f in followers if f.job_id != ids[0])

        for follower in followers:
            watch.unfollow(follower)
        await asyncio.sleep(0.2)
        idle = watch.polls
        await asyncio.sleep(0.3)
        assert watch.polls == idle  # no streams, no queries
    finally:
        await watch.close()
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM bucket_jobs WHERE id = ANY(:ids)"), {"ids": ids})
        await engine.dispose()


async def test_the_live_list_of_changes_shares_the_one_query_and_hands_on_each_state_once(
    base_settings: Settings,
) -> None:
    engine = make_engine(base_settings, pool_size=2)
    reads = ReadModel(engine, engine, base_settings.bucket_events_topic, 2.0)
    watch = JobWatch(reads, 0.05, max_streams=10)
    job_id = uuid.uuid4()
    name = f"feed-{job_id.hex[:12]}"
    try:
        feeds = [watch.follow_changes() for _ in range(3)]
        await asyncio.sleep(0.3)
        idle = watch.polls
        assert 3 <= idle <= 8  # one query per interval for all three lists
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO bucket_jobs (id, bucket_name, status, attempts, created_at,"
                    " updated_at) VALUES (:id, :name, 'queued', 0, now(), now())"
                ),
                {"id": job_id, "name": name},
            )
        await asyncio.sleep(0.3)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE bucket_jobs SET status = 'completed', updated_at = now() WHERE id = :id"
                ),
                {"id": job_id},
            )
        await asyncio.sleep(0.3)
        for feed in feeds:
            seen = []
            while not feed.changes.empty():
                change = feed.changes.get_nowait()
                if change.job_id == job_id:
                    seen.append(change.status)
            assert seen == [JobStatus.QUEUED, JobStatus.COMPLETED]  # each state once
        for feed in feeds:
            watch.unfollow(feed)
        await asyncio.sleep(0.2)
        stopped = watch.polls
        await asyncio.sleep(0.3)
        assert watch.polls == stopped
    finally:
        await watch.close()
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM bucket_jobs WHERE id = :id"), {"id": job_id})
        await engine.dispose()
