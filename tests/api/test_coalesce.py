"""Concurrent owner lookups share queries, and no answer predates the request it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from services.api.coalesce import Coalescer


class Table:
    """A stand-in for the query: records each batch, answers from a dict that tests change."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.batches: list[set[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, keys: Collection[str]) -> dict[str, int]:
        snapshot = dict(self.rows)  # what the query sees: the table when it starts
        self.batches.append(set(keys))
        await self.gate.wait()
        return {k: snapshot[k] for k in keys if k in snapshot}


async def test_concurrent_lookups_share_a_query_and_each_gets_its_own_answer() -> None:
    table = Table()
    table.rows = {f"n{i}": i for i in range(0, 100, 2)}
    lookups = Coalescer(table.fetch)
    answers = await asyncio.gather(*(lookups.get(f"n{i}") for i in range(100)))
    assert answers == [i if i % 2 == 0 else None for i in range(100)]
    assert len(table.batches) == 1  # 100 lookups made before the first query: one query
    assert set().union(*table.batches) == {f"n{i}" for i in range(100)}


async def test_a_lookup_made_during_a_query_waits_for_the_next_one() -> None:
    table = Table()
    lookups = Coalescer(table.fetch)
    table.gate.clear()
    first = asyncio.create_task(lookups.get("a"))
    while not table.batches:
        await asyncio.sleep(0)
    table.rows["a"] = 1  # committed after the first query started
    second = asyncio.create_task(lookups.get("a"))
    table.gate.set()
    assert await first is None
    assert await second == 1  # not the older answer of the query in flight
    assert table.batches == [{"a"}, {"a"}]


async def test_a_failed_query_fails_its_batch_only() -> None:
    calls = 0

    async def flaky(keys: Collection[str]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return dict.fromkeys(keys, 7)

    lookups = Coalescer(flaky)
    with pytest.raises(ConnectionError):
        await lookups.get("a")
    assert await lookups.get("b") == 7


async def test_an_abandoned_lookup_is_not_queried() -> None:
    table = Table()
    lookups = Coalescer(table.fetch)
    table.gate.clear()
    first = asyncio.create_task(lookups.get("a"))
    while not table.batches:
        await asyncio.sleep(0)
    gone = asyncio.create_task(lookups.get("gone"))
    kept = asyncio.create_task(lookups.get("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    table.gate.set()
    await first
    assert await kept is None
    assert table.batches == [{"a"}, {"kept"}]
