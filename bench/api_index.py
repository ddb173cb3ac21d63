"""The API's lookups in `bucket_jobs` against a large table: the 409 check and the job by id.

    python -m bench.api_index [--rows 100000 1000000 10000000]

For each size, fills `bucket_jobs` of a scratch database (on the machine's PostgreSQL, or
`DATABASE_URL`'s server; dropped at the end) with that many jobs (`fill_sql`: 93% completed,
5% failed with `bucket_exists` beside a completed job of the same name, 2% open), plus 2,000
failed jobs of one name (`failures_sql`), analyses it, and prints the EXPLAIN ANALYZE of the
API's own statements: `read_model.owners_query` (the 409 check) for an owned name, a name never
created, the name with 2,000 failed jobs and a coalesced batch of 500 names, and
`read_model.job_query`. Each as a custom plan (values inlined) and as the generic plan of the
prepared statement, which is what the API's connections run once psycopg has prepared a
statement (after 5 uses) and Postgres has settled on its generic plan. Then the median latency
of 200 calls of the API's own `ReadModel.owner_of` (an owned name, a free one) and
`ReadModel.job`, and of 20 batches of 500 concurrent `owner_of` calls (coalesced into one
query each), and how the lookups' prepared statements were planned (`pg_prepared_statements`).
O(log n): the latency should barely move with the size.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Select, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.index_run import run_sizes
from services.api.read_model import ReadModel, job_query, owners_query
from shared.db import make_engine
from shared.settings import Settings

BATCH = 500  # the Coalescer's max_batch: the most names one 409 query asks
FAILURES = 2_000  # failed jobs of one name never created (`failures_sql`)
FAILING = "failing-name"


def fill_sql(first: int, last: int, prefix: str = "name") -> str:
    """An INSERT of jobs `first`..`last`. Job i is `{prefix}-i`: completed, except every 20th,
    a failed `bucket_exists` job of the previous (completed) name, and the 1st and 2nd of
    every 100, open (processing, queued). Random job ids, 10 ms apart from 2026-01-01."""
    assert isinstance(first, int) and isinstance(last, int) and prefix.isidentifier()
    return f"""
        INSERT INTO bucket_jobs (id, bucket_name, status, tx_hash, error, error_code,
                                 attempts, created_at, updated_at, completed_at)
        SELECT gen_random_uuid(),
               '{prefix}-' || CASE WHEN i % 20 = 0 THEN i - 1 ELSE i END,
               s.status,
               CASE WHEN s.status = 'completed' THEN '0x' || md5(i::text) || md5((-i)::text) END,
               CASE WHEN s.status = 'failed' THEN 'bucket already created' END,
               CASE WHEN s.status = 'failed' THEN 'bucket_exists' END,
               1, t.at, t.at + interval '2 s',
               CASE WHEN s.status = 'completed' THEN t.at + interval '2 s' END
        FROM generate_series({first}, {last}) i,
             LATERAL (SELECT CASE WHEN i % 20 = 0 THEN 'failed'
                                  WHEN i % 100 = 1 THEN 'processing'
                                  WHEN i % 100 = 2 THEN 'queued'
                                  ELSE 'completed' END AS status) s,
             LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '10 ms' AS at) t
    """


def failures_sql(name: str, count: int) -> str:
    """An INSERT of `count` failed jobs of `name` and none completed: a client asking again
    and again for a name whose creates fail (a bucket of another owner on the chain)."""
    assert re.fullmatch(r"[a-z0-9-]+", name) and isinstance(count, int)
    return f"""
        INSERT INTO bucket_jobs (id, bucket_name, status, error, error_code, attempts,
                                 created_at, updated_at)
        SELECT gen_random_uuid(), '{name}', 'failed', 'bucket already on chain',
               'bucket_already_on_chain', 3, t.at, t.at + interval '30 s'
        FROM generate_series(1, {count}) i,
             LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '1 min' AS at) t
    """


def owned_name(i: int, size: int, prefix: str = "name") -> str:
    """A name of `fill_sql(1, size)` that a completed job owns, spread over the table."""
    n = 3 + (i * 7919) % (size - 10)
    while n % 20 == 0 or n % 100 in (1, 2):  # no such name; open jobs
        n += 1
    return f"{prefix}-{n}"


def explain_statements(query: Select[Any], generic: bool, options: str) -> list[str]:
    """The statements that EXPLAIN `query` as the API's driver sends it, the last one giving
    the plan: a custom plan with the values inlined, or (`generic`) the generic plan of the
    statement prepared with its parameters, as a connection runs it once Postgres settled on
    that (PREPARE, force_generic_plan; `explain` puts the session back)."""
    dialect = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
    if not generic:
        inlined = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        return [f"EXPLAIN ({options}) {inlined}"]
    numbered = psycopg_dialect.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    compiled = query.compile(dialect=numbered, compile_kwargs={"render_postcompile": True})
    values = [compiled.params[name] for name in compiled.positiontup or []]
    arguments = sql.SQL(", ").join(sql.Literal(v) for v in values).as_string(None)
    return [
        f"PREPARE api_lookup AS {compiled.string}",
        "SET plan_cache_mode = force_generic_plan",
        f"EXPLAIN ({options}) EXECUTE api_lookup({arguments})",
    ]


def explain(conn: psycopg.Connection[Any], query: Select[Any], generic: bool, options: str) -> Any:
    """The plan's rows of `explain_statements` run on `conn`."""
    *setup, last = explain_statements(query, generic, options)
    try:
        for statement in setup:
            conn.execute(statement.encode())
        return conn.execute(last.encode()).fetchall()
    finally:
        if setup:
            conn.execute(b"DEALLOCATE api_lookup")
            conn.execute(b"RESET plan_cache_mode")


async def median_ms(call: Callable[[int], Awaitable[object]], times: int) -> float:
    took = []
    for i in range(times):
        start = time.perf_counter()
        await call(i)
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took)


async def prepared(conn: AsyncConnection) -> list[Sequence[Any]]:
    """This session's prepared statements on bucket_jobs: how often each was planned how."""
    rows = await conn.execute(
        text(
            "SELECT generic_plans, custom_plans, left(s, 40) || ' … ' || right(s, 50) "
            "FROM (SELECT generic_plans, custom_plans, regexp_replace(statement, '\\s+', ' ', "
            "'g') AS s FROM pg_prepared_statements) p WHERE s LIKE '%FROM bucket_jobs%' "
            "ORDER BY generic_plans + custom_plans DESC"
        )
    )
    return list(rows)


async def fill(settings: Settings, filled: int, size: int) -> None:
    """Jobs `filled + 1`..`size` (and, into an empty table, the failing name's), analysed."""
    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
            await conn.execute(text(fill_sql(filled + 1, size)))
            if not filled:
                await conn.execute(text(failures_sql(FAILING, FAILURES)))
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
            await conn.execute(text("ANALYZE bucket_jobs"))
    finally:
        await engine.dispose()


def print_plans(settings: Settings, size: int, job_id: uuid.UUID) -> None:
    lookups: list[tuple[str, Select[Any]]] = [
        ("409 check, one owned name", owners_query([owned_name(1, size)])),
        ("409 check, a name never created", owners_query([f"new-{uuid.uuid4().hex}"])),
        (f"409 check, a name with {FAILURES:,} failed jobs", owners_query([FAILING])),
        (
            f"409 check, a coalesced batch of {BATCH} names",
            owners_query([owned_name(i, size) for i in range(BATCH)]),
        ),
        ("job by id", job_query(job_id)),
    ]
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        for label, query in lookups:
            for generic in (False, True):
                rows = explain(conn, query, generic, "ANALYZE, BUFFERS")
                print(f"-- {label} ({'generic' if generic else 'custom'} plan):")
                for (line,) in rows:
                    print(f"   {line if len(line) < 160 else line[:157] + '...'}")


async def print_latency(settings: Settings, size: int, ids: list[uuid.UUID]) -> None:
    """Through the API's own ReadModel, on a pool of fresh connections (so the prepared
    statements' counts are this size's)."""
    engine = make_engine(settings)
    reads = ReadModel(engine, engine, settings.bucket_events_topic, timeout_s=60)

    async def owner(i: int) -> object:
        return await reads.owner_of(owned_name(i, size))

    async def free(i: int) -> object:
        return await reads.owner_of(f"free-{i}-{size}")

    async def job(i: int) -> object:
        return await reads.job(ids[i % len(ids)])

    async def coalesced(i: int) -> object:
        names = [owned_name(i * BATCH + k, size) for k in range(BATCH)]
        return await asyncio.gather(*(reads.owner_of(n) for n in names))

    try:
        print(f"   owner_of, owned name, median of 200: {await median_ms(owner, 200):.2f} ms")
        print(f"   owner_of, free name, median of 200: {await median_ms(free, 200):.2f} ms")
        print(f"   job, median of 200: {await median_ms(job, 200):.2f} ms")
        print(
            f"   {BATCH} concurrent owner_of (one coalesced query), median of 20: "
            f"{await median_ms(coalesced, 20):.2f} ms"
        )
        async with engine.connect() as conn:
            for generic_plans, custom_plans, statement in await prepared(conn):
                print(f"   prepared: {generic_plans} generic, {custom_plans} custom: {statement}")
    finally:
        await engine.dispose()


async def measure(settings: Settings, sizes: Sequence[int]) -> None:
    filled = 0
    for size in sizes:
        started = time.monotonic()
        await fill(settings, filled, size)
        filled = size
        print(f"\n== {size:,} rows in bucket_jobs (filled in {time.monotonic() - started:.0f} s)")
        engine = make_engine(settings)
        try:
            async with engine.connect() as conn:
                query = text("SELECT id FROM bucket_jobs TABLESAMPLE SYSTEM (1) LIMIT 200")
                ids = list((await conn.execute(query)).scalars())
        finally:
            await engine.dispose()
        print_plans(settings, size, ids[0])
        await print_latency(settings, size, ids)


def main() -> None:
    run_sizes(__doc__, measure)


if __name__ == "__main__":
    main()
