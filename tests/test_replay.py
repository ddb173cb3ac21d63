"""Throwing bucket_jobs away and folding the log again rebuilds exactly the live table."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from sqlalchemy import text

from services.executor.backends.simulated import SimulatedChain
from shared.db import make_engine
from tests.stack import REPO, Stack, settings_env, unique_name

pytestmark = pytest.mark.slow


async def table(stack: Stack) -> list[tuple[object, ...]]:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT * FROM bucket_jobs ORDER BY id"))
            return [tuple(r) for r in rows]
    finally:
        await engine.dispose()


async def damage(stack: Stack) -> None:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM bucket_jobs WHERE bucket_name LIKE 'replay-%'"))
            await conn.execute(text("UPDATE bucket_jobs SET status = 'queued', tx_hash = NULL"))
    finally:
        await engine.dispose()


async def test_replay_from_offset_zero_reproduces_the_live_table(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    chain = await SimulatedChain.open(stack.settings)
    try:
        doomed = unique_name("doomed")
        await chain.inject_fault(doomed, "insufficient_funds", 1)
    finally:
        await chain.close()
    names = [unique_name("replay") for _ in range(12)] + [doomed]
    names += names[:3]  # duplicates: failed with bucket_exists
    posted = await asyncio.gather(
        *(client.post("/buckets", json={"bucket_name": n}) for n in names)
    )
    ids = [r.json()["job_id"] for r in posted]
    jobs = await asyncio.gather(*(stack.wait_terminal(client, j) for j in ids))
    assert {j["status"] for j in jobs} == {"completed", "failed"}

    assert stack.stop("projector") == {"projector": 0}
    live = await table(stack)
    assert len(live) == len(names)
    await damage(stack)  # so a replay that rebuilt nothing could not pass
    assert await table(stack) != live
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "replay",
        cwd=REPO,
        env=settings_env(stack.settings),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(replay.communicate(), 120)
    assert replay.returncode == 0, stderr.decode()
    assert await table(stack) == live

    stack.start("projector")
    after = await stack.wait_terminal(
        client,
        (await client.post("/buckets", json={"bucket_name": unique_name("after")})).json()[
            "job_id"
        ],
    )
    assert after["status"] == "completed"
