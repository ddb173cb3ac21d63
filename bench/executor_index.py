"""The executor's ownership and finished-job lookups against a large index.

    python -m bench.executor_index [--rows 100000 1000000 10000000]

For each size, fills `executor_owners` and `executor_finished` of a scratch database (on the
machine's PostgreSQL, or `DATABASE_URL`'s server; dropped at the end) with that many rows,
analyses them, and prints the EXPLAIN ANALYZE of the executor's own queries
(`SnapshotStore.owners_query` / `finished_query`, a batch of 2 keys) and the median latency of
200 lookups. O(log n): the latency should barely move from the smallest size to the largest.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from bench.index_run import run_sizes
from services.executor.snapshot_store import SnapshotStore
from shared.db import make_engine
from shared.settings import Settings

TOPIC = "bench.bucket-events"


async def measure(settings: Settings, sizes: Sequence[int]) -> None:
    engine = make_engine(settings)
    store = SnapshotStore(engine, TOPIC)
    filled = 0
    try:
        for size in sizes:
            started = time.monotonic()
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                await conn.execute(
                    text(
                        "INSERT INTO executor_owners (topic, bucket_name, job_id, partition) "
                        "SELECT :t, 'name-' || i, gen_random_uuid(), i % 6 "
                        "FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) i"
                    ),
                    {"t": TOPIC, "a": filled + 1, "b": size},
                )
                await conn.execute(
                    text(
                        "INSERT INTO executor_finished (topic, job_id, partition) "
                        "SELECT :t, gen_random_uuid(), i % 6 "
                        "FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) i"
                    ),
                    {"t": TOPIC, "a": filled + 1, "b": size},
                )
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                await conn.execute(text("ANALYZE executor_owners"))
                await conn.execute(text("ANALYZE executor_finished"))
            filled = size
            print(f"\n== {size:,} rows each (filled in {time.monotonic() - started:.0f} s)")
            names = [f"name-{size // 3}", f"name-{size}"]
            for label, query in (
                ("owners", store.owners_query(names)),
                ("finished", store.finished_query([uuid.uuid4(), uuid.uuid4()])),
            ):
                sql = str(
                    query.compile(
                        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
                        compile_kwargs={"literal_binds": True},
                    )
                )
                async with engine.connect() as conn:
                    plan = await conn.execute(text("EXPLAIN ANALYZE " + sql))
                    print(f"-- {label}:\n" + "\n".join(f"   {row[0]}" for row in plan))
            took = []
            for i in range(200):
                start = time.perf_counter()
                await store.owners_of([f"name-{1 + (i * 7919) % size}"])
                took.append((time.perf_counter() - start) * 1000)
            print(f"   owners_of, median of 200 lookups: {statistics.median(took):.2f} ms")
    finally:
        await engine.dispose()


def main() -> None:
    run_sizes(__doc__, measure)


if __name__ == "__main__":
    main()
