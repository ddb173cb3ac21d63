"""Concurrency by key with order per key, and offsets committed only below unfinished work.

Jobs for different bucket names run at once; a job for a name starts only after the previous
job for that name has ended, so one name's jobs run in log order. The committable offset of a
partition is its lowest unfinished job (or everything consumed when none is left).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class OffsetTracker:
    def __init__(self) -> None:
        self._unfinished: set[int] = set()
        self._consumed: int | None = None

    def consumed(self, offset: int) -> None:
        self._consumed = offset + 1 if self._consumed is None else max(self._consumed, offset + 1)

    def started(self, offset: int) -> None:
        self._unfinished.add(offset)

    def finished(self, offset: int) -> None:
        self._unfinished.discard(offset)

    @property
    def position(self) -> int:
        """The offset after the last record consumed (0 before any)."""
        return self._consumed or 0

    @property
    def in_flight(self) -> int:
        return len(self._unfinished)

    def committable(self) -> int | None:
        """The offset to commit: nothing below it is unfinished."""
        if self._unfinished:
            return min(self._unfinished)
        return self._consumed


class KeyedScheduler:
    def __init__(self) -> None:
        self._by_key: dict[str, list[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self,
        key: str,
        work: Callable[[], Coroutine[Any, Any, None]],
        on_done: Callable[[asyncio.Task[None]], None] | None = None,
    ) -> asyncio.Task[None]:
        """Run `work` once every earlier job of `key` has ended (however it ended).

        It waits for all of them, not just the latest: cancelling a job that is still waiting
        must not let the next one overtake the job that is running.
        """
        earlier = list(self._by_key.get(key, ()))

        async def in_order() -> None:
            if earlier:
                await asyncio.wait(earlier)
            await work()

        task = asyncio.create_task(in_order(), name=f"job:{key}")
        self._by_key.setdefault(key, []).append(task)
        self._tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            same_key = self._by_key[key]
            same_key.remove(done)
            if not same_key:
                del self._by_key[key]
            if on_done is not None:
                on_done(done)

        task.add_done_callback(forget)
        return task

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def cancel(self, tasks: set[asyncio.Task[None]] | None = None) -> None:
        """Cancel `tasks` (default: all) and wait until they are gone."""
        doomed = set(self._tasks) if tasks is None else tasks
        for task in doomed:
            task.cancel()
        if doomed:
            await asyncio.wait(doomed)
