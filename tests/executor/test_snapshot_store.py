"""The executor's snapshots and finished-job index in real Postgres: written together or not
at all, never moved back, first owner wins, dropped per partition, looked up by index."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from services.executor.ledger import Finished, PartitionLedger
from services.executor.snapshot import Encoded, encode
from services.executor.snapshot_store import SnapshotStore
from services.executor.snapshotting import Snapshots
from shared import metrics
from shared.db import make_engine
from shared.settings import Settings
from tests.executor.test_ledger import requested


@pytest.fixture
async def engine(base_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(base_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> SnapshotStore:
    return SnapshotStore(engine, f"snapshots-{uuid.uuid4().hex[:8]}")  # a topic of its own


def one_unfinished(name: str = "open-one") -> PartitionLedger:
    ledger = PartitionLedger()
    ledger.observe(requested(uuid.uuid4(), name), offset=0)
    return ledger


async def count(engine: AsyncEngine, table: str, topic: str) -> int:
    async with engine.connect() as conn:
        query = text(f"SELECT count(*) FROM {table} WHERE topic = :t")
        return int((await conn.execute(query, {"t": topic})).scalar_one())


async def test_a_snapshot_and_its_index_rows_are_written_and_read_back(
    store: SnapshotStore,
) -> None:
    done, owner = uuid.uuid4(), uuid.uuid4()
    encoded = encode(one_unfinished(), 40)
    assert await store.save(2, 40, encoded, Finished({done: "a", owner: "b"}, {"b": owner}))
    stored = await store.load(2)
    assert stored is not None
    assert (stored.position, stored.version, stored.checksum, stored.jobs) == (
        40,
        encoded.version,
        encoded.checksum,
        1,
    )
    assert stored.payload == encoded.payload
    assert await store.load(1) is None
    assert await store.finished_among([done, owner, uuid.uuid4()]) == {done, owner}
    assert await store.owners_of(["a", "b"]) == {"b": owner}


async def test_a_failed_save_writes_nothing_of_the_snapshot_or_its_index(
    engine: AsyncEngine, store: SnapshotStore
) -> None:
    done = uuid.uuid4()
    good = encode(one_unfinished(), 10)
    bad = Encoded(good.payload, "f" * 65, good.jobs)  # the checksum column refuses 65 chars
    assert await store.save(0, 10, bad, Finished({done: "a"}, {"a": done})) is False
    assert await store.load(0) is None
    assert await count(engine, "executor_finished", store.topic) == 0
    assert await count(engine, "executor_owners", store.topic) == 0


async def test_a_snapshot_is_never_replaced_by_one_at_an_earlier_position(
    store: SnapshotStore,
) -> None:
    late, early = encode(one_unfinished("late"), 90), encode(one_unfinished("early"), 50)
    assert await store.save(0, 90, late, Finished())
    assert await store.save(0, 50, early, Finished())  # an executor that lost the partition
    stored = await store.load(0)
    assert stored is not None and (stored.position, stored.payload) == (90, late.payload)


async def test_the_first_owner_written_keeps_the_name(store: SnapshotStore) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await store.save(0, 5, encode(PartitionLedger(), 5), Finished({first: "n"}, {"n": first}))
    await store.save(0, 9, encode(PartitionLedger(), 9), Finished({second: "n"}, {"n": second}))
    assert await store.owners_of(["n"]) == {"n": first}


async def test_drop_deletes_an_index_larger_than_its_chunk(
    engine: AsyncEngine, store: SnapshotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.executor.snapshot_store.DROP_CHUNK", 7)
    jobs = {uuid.uuid4(): f"n{i}" for i in range(30)}
    owners = {name: job for job, name in jobs.items()}
    await store.save(0, 5, encode(PartitionLedger(), 5), Finished(jobs, owners))
    await store.drop(0)
    assert await count(engine, "executor_finished", store.topic) == 0
    assert await count(engine, "executor_owners", store.topic) == 0


async def test_drop_removes_one_partitions_snapshot_and_index_rows_only(
    engine: AsyncEngine, store: SnapshotStore
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await store.save(0, 5, encode(PartitionLedger(), 5), Finished({a: "x"}, {"x": a}))
    await store.save(1, 7, encode(PartitionLedger(), 7), Finished({b: "y"}, {"y": b}))
    await store.drop(0)
    assert await store.load(0) is None and await store.load(1) is not None
    assert await store.finished_among([a, b]) == {b}
    assert await store.owners_of(["x", "y"]) == {"y": b}
    await store.drop()
    assert await count(engine, "executor_snapshots", store.topic) == 0
    assert await count(engine, "executor_finished", store.topic) == 0


def snapshots(store: SnapshotStore) -> tuple[Snapshots, CollectorRegistry]:
    registry = CollectorRegistry()
    return (
        Snapshots(
            store,
            metrics.counter(metrics.EXECUTOR_SNAPSHOTS, registry),
            metrics.gauge(metrics.EXECUTOR_SNAPSHOT_POSITION, registry),
        ),
        registry,
    )


def refused(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("akave_executor_snapshots_total", {"outcome": "refused"}) or 0


async def test_restore_gives_the_snapshots_ledger_and_position(store: SnapshotStore) -> None:
    taker, _ = snapshots(store)
    ledger = one_unfinished()
    assert await taker.take(0, ledger, 12)
    restored, position = await taker.restore(0, end=20)
    assert position == 12 and restored.unfinished == ledger.unfinished


@pytest.mark.parametrize("damage", ["payload", "version", "ahead"])
async def test_a_refused_snapshot_is_dropped_with_its_index_and_the_fold_starts_at_zero(
    engine: AsyncEngine, store: SnapshotStore, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    taker, registry = snapshots(store)
    done = uuid.uuid4()
    ledger = one_unfinished()
    ledger.recent = Finished({done: "d"}, {"d": done})
    assert await taker.take(0, ledger, 12)
    if damage == "payload":
        sql = "UPDATE executor_snapshots SET payload = :p WHERE topic = :t"
        params: dict[str, object] = {"p": json.dumps({"jobs": "garbage"}).encode()}
    elif damage == "version":
        sql, params = "UPDATE executor_snapshots SET version = version + 1 WHERE topic = :t", {}
    else:
        sql, params = "SELECT 1 WHERE :t = :t", {}  # the log is shorter than the snapshot
    async with engine.begin() as conn:
        await conn.execute(text(sql), {"t": store.topic, **params})
    restored, position = await taker.restore(0, end=12 if damage != "ahead" else 11)
    assert (position, restored.unfinished) == (0, {})
    assert refused(registry) == 1
    assert await store.load(0) is None and await store.finished_among([done]) == set()
    reasons = [r.reason for r in caplog.records if r.getMessage().startswith("snapshot refused")]  # type: ignore[attr-defined]
    expected = {"payload": "checksum", "version": "newer than", "ahead": "past the log's end"}
    assert len(reasons) == 1 and expected[damage] in reasons[0]


async def test_a_missing_snapshot_drops_the_partitions_index_rows(store: SnapshotStore) -> None:
    taker, registry = snapshots(store)
    done = uuid.uuid4()
    await store.save(0, 5, encode(PartitionLedger(), 5), Finished({done: "x"}, {"x": done}))
    async with store._engine.begin() as conn:  # the operator deleted the snapshot row only
        await conn.execute(
            text("DELETE FROM executor_snapshots WHERE topic = :t"), {"t": store.topic}
        )
    assert await taker.restore(0, end=30) == (PartitionLedger(), 0)
    assert await store.finished_among([done]) == set() and refused(registry) == 0


@pytest.mark.parametrize("table", ["executor_owners", "executor_finished"])
async def test_the_index_lookups_are_index_scans_on_a_large_index(
    engine: AsyncEngine, store: SnapshotStore, table: str
) -> None:
    """200k rows, analysed: the store's own queries are answered from the primary key (the
    plans at 10M rows are in docs/operations.md, "Executor snapshots")."""
    rows = 200_000
    async with engine.begin() as conn:
        if table == "executor_owners":
            await conn.execute(
                text(
                    "INSERT INTO executor_owners (topic, bucket_name, job_id, partition) "
                    "SELECT :t, 'name-' || i, gen_random_uuid(), i % 3 "
                    "FROM generate_series(1, :n) i"
                ),
                {"t": store.topic, "n": rows},
            )
        else:
            await conn.execute(
                text(
                    "INSERT INTO executor_finished (topic, job_id, partition) "
                    "SELECT :t, gen_random_uuid(), i % 3 FROM generate_series(1, :n) i"
                ),
                {"t": store.topic, "n": rows},
            )
        await conn.execute(text(f"ANALYZE {table}"))
        query = (
            store.owners_query(["name-17", "name-90001"])
            if table == "executor_owners"
            else store.finished_query([uuid.uuid4(), uuid.uuid4()])
        )
        sql = str(
            query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        plan = (await conn.execute(text("EXPLAIN (FORMAT JSON) " + sql))).scalar_one()
    nodes = []

    def walk(node: dict[str, object]) -> None:
        nodes.append(node["Node Type"])
        for child in node.get("Plans", []):  # type: ignore[attr-defined]
            walk(child)

    walk(plan[0]["Plan"])
    assert "Seq Scan" not in nodes and any("Index" in str(n) for n in nodes), nodes
    try:
        if table == "executor_owners":
            assert len(await store.owners_of(["name-17", "name-90001", "name-x"])) == 2
    finally:
        await store.drop()
