"""The lookups in `bucket_jobs` on a large analysed table (real Postgres): the API's 409 check
and the projector's owner lookup read the unique index of completed names, one entry per
name asked, and the API's job lookup reads
the primary key; as custom plans and as the generic plans the API's prepared statements run
(the plans at 10M rows are in docs/operations.md, "The API's lookups at scale"). And both
answer right on that table."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Select

from bench.api_index import BATCH, explain, failures_sql, fill_sql, owned_name
from services.api.read_model import ReadModel, job_query, owners_query
from services.projector.store import completed_owners_query
from shared.db import make_engine
from shared.settings import Settings
from tests.conftest import own_database

ROWS = 200_000
PREFIX = "plans"
FAILING = "plans-failing"  # 2,000 failed jobs, never created
UNIQUE_NAMES = "uq_bucket_jobs_completed_name"


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def filled(postgres_server: str | None) -> Iterator[str]:
    """A migrated database whose `bucket_jobs` holds ROWS jobs plus FAILING's, analysed."""
    with own_database(postgres_server, f"akave_gw_plans_{uuid.uuid4().hex[:10]}") as url:
        with psycopg.connect(plain(url), autocommit=True) as conn:
            conn.execute(fill_sql(1, ROWS, PREFIX).encode())
            conn.execute(failures_sql(FAILING, 2_000).encode())
            conn.execute(b"ANALYZE bucket_jobs")
        try:
            yield url
        finally:  # the rows go too when DATABASE_URL names a database others use
            with psycopg.connect(plain(url), autocommit=True) as conn:
                conn.execute(b"DELETE FROM bucket_jobs WHERE bucket_name LIKE 'plans-%'")


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def planned(url: str, query: Select[Any], generic: bool) -> list[dict[str, Any]]:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        ((plan,),) = explain(conn, query, generic, "ANALYZE, FORMAT JSON")
    return list(nodes(plan[0]["Plan"]))


def owned(i: int) -> str:
    return owned_name(i, ROWS, PREFIX)


OWNER_LOOKUPS: dict[str, Callable[[], list[str]]] = {
    "owned": lambda: [owned(1)],
    "never-created": lambda: [f"{PREFIX}-new-{uuid.uuid4().hex}"],
    "many-failed-jobs": lambda: [FAILING],
    "coalesced-batch": lambda: [owned(i) for i in range(BATCH)],
}


OWNER_QUERIES: dict[str, Callable[[list[str]], Select[Any]]] = {
    "api": owners_query,  # the 409 check
    "projector": completed_owners_query,  # a create's owner when it folds a batch
}


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("lookup", list(OWNER_LOOKUPS))
@pytest.mark.parametrize("reader", list(OWNER_QUERIES))
def test_the_owner_lookups_read_one_entry_per_name_of_the_unique_index(
    filled: str, reader: str, lookup: str, generic: bool
) -> None:
    names = OWNER_LOOKUPS[lookup]()
    found = planned(filled, OWNER_QUERIES[reader](names), generic)
    assert "Seq Scan" not in [n["Node Type"] for n in found], found
    assert {n["Index Name"] for n in found if "Index Name" in n} == {UNIQUE_NAMES}, found
    assert max(n["Actual Rows"] for n in found) <= len(names), found


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_the_job_lookup_reads_the_primary_key(filled: str, generic: bool) -> None:
    with psycopg.connect(plain(filled), autocommit=True) as conn:
        row = conn.execute(b"SELECT id FROM bucket_jobs OFFSET 77777 LIMIT 1").fetchone()
    assert row is not None
    found = planned(filled, job_query(row[0]), generic)
    assert "Seq Scan" not in [n["Node Type"] for n in found], found
    assert {n["Index Name"] for n in found if "Index Name" in n} == {"bucket_jobs_pkey"}, found


async def test_the_lookups_answer_right_on_the_large_table(
    filled: str, base_settings: Settings
) -> None:
    engine = make_engine(base_settings.model_copy(update={"database_url": filled}))
    reads = ReadModel(engine, engine, "plans.bucket-events", timeout_s=30)
    try:
        # job 19 completed the name; job 20 failed with bucket_exists under the same name
        owner = await reads.owner_of(f"{PREFIX}-19")
        assert owner is not None and owner.status.value == "completed", owner
        md5 = hashlib.md5
        assert owner.tx_hash == "0x" + md5(b"19").hexdigest() + md5(b"-19").hexdigest()
        for nobody in (f"{PREFIX}-101", f"{PREFIX}-102", FAILING, f"{PREFIX}-new"):
            assert await reads.owner_of(nobody) is None, nobody  # processing, queued, failed
        batch = [owned(i) for i in range(BATCH)]
        owners = await asyncio.gather(*(reads.owner_of(n) for n in batch))  # one query
        assert [o.bucket_name if o else None for o in owners] == batch
        assert {o.status.value for o in owners if o} == {"completed"}
        job = await reads.job(owner.job_id)
        assert job == owner
        assert await reads.job(uuid.uuid4()) is None
    finally:
        await engine.dispose()
