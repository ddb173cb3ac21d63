"""Many concurrent lookups answered by one query: the 409 check of a busy API.

Requests that arrive while a lookup is in flight wait and are answered together by the next
one, so a loaded worker spends one round trip (and one pass through the database layer) on a
whole batch instead of one per request. A batch is always queried after each of its requests
arrived, so an answer is never older than the request it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(
        self,
        fetch: Callable[[Collection[K]], Awaitable[Mapping[K, V]]],
        max_batch: int = 500,
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            wanted = [(k, f) for k, f in batch if not f.done()]  # skip abandoned requests
            if not wanted:
                continue
            try:
                found = await self._fetch({k for k, _ in wanted})
            except asyncio.CancelledError:
                for _, future in wanted:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in wanted:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in wanted:
                if not future.done():
                    future.set_result(found.get(key))
