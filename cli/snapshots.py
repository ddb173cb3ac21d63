"""`akave-gateway snapshots list | drop`: the executor's partition snapshots.

Dropping is always safe: an executor that finds no snapshot for a partition it is assigned
folds that partition from offset 0 (and writes a new one). A running executor keeps its
memory and writes its next snapshot as usual; the drop takes effect at its next start or
rebalance.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.executor.snapshot_store import SnapshotStore
from shared.db import make_engine
from shared.models import ExecutorSnapshot
from shared.settings import Settings


def list_command(settings: Settings) -> int:
    async def read() -> list[tuple[int, int, int, int, str]]:
        engine = make_engine(settings, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(
                        ExecutorSnapshot.partition,
                        ExecutorSnapshot.position,
                        ExecutorSnapshot.jobs,
                        ExecutorSnapshot.version,
                        ExecutorSnapshot.taken_at,
                    )
                    .where(ExecutorSnapshot.topic == settings.bucket_events_topic)
                    .order_by(ExecutorSnapshot.partition)
                )
                return [(p, pos, jobs, v, t.isoformat()) for p, pos, jobs, v, t in rows]
        finally:
            await engine.dispose()

    rows = asyncio.run(read())
    print(f"topic {settings.bucket_events_topic}: {len(rows)} snapshot(s)")
    print(f"{'partition':>9} {'position':>12} {'unfinished':>10} {'version':>7}  taken at")
    for partition, position, jobs, version, taken_at in rows:
        print(f"{partition:>9} {position:>12} {jobs:>10} {version:>7}  {taken_at}")
    return 0


def drop_command(settings: Settings, partition: int | None) -> int:
    async def drop() -> None:
        engine = make_engine(settings, pool_size=1)
        try:
            await SnapshotStore(engine, settings.bucket_events_topic).drop(partition)
        finally:
            await engine.dispose()

    asyncio.run(drop())
    which = "every partition" if partition is None else f"partition {partition}"
    print(
        f"dropped the snapshot of {which} of {settings.bucket_events_topic} with its index; "
        "executors fold it from offset 0 at their next start or rebalance"
    )
    return 0
